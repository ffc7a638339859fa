"""The example ``raymix fit`` runs when it is given no recipe: it needs nothing outside the
package.

A synthetic GLMix data set (:mod:`raymix.datasets.synthetic`: 200,000 rows, 2,000 users, 500
items, planted coefficients) is generated once into the user's cache directory
(``$RAYMIX_CACHE_DIR``, else ``$XDG_CACHE_HOME/raymix``, else ``~/.cache/raymix``) and fitted
with the recipe of ``recipes/synthetic_glmix.py`` (global + per-user + per-item) on a local
Ray, into ``out/example``; ``raymix fit`` prints the planted model's validation AUC beside
the fit's. MovieLens is the next step (``raymix data movielens``: it may not be
redistributed, so it is downloaded from GroupLens).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from raymix.recipe.spec import Data, FixedEffect, RandomEffect, Recipe

#: the generator's sizes: small enough for a laptop's first minute
ROWS, USERS, ITEMS = 200_000, 2_000, 500
#: the planted prior's precision, 1 / (0.5 / sqrt(10 + 1))^2 (as recipes/synthetic_glmix.py)
ENTITY_L2 = 44.0
OUTPUT = "out/example"


def example_data(progress: Callable[[str], None] | None = None) -> Path:
    """The example data set's directory, generated on first use (a finished generation has
    a ``summary.json``; an unfinished one is replaced)."""
    from raymix.datasets.download import cache_dir
    from raymix.datasets.synthetic import generate_synthetic

    say = progress or (lambda message: None)
    root = cache_dir() / "example-synthetic"
    if (root / "summary.json").is_file():
        say(f"using the example data in {root}")
        return root
    say(f"generating the example data ({ROWS:,} synthetic rows) in {root}")
    generate_synthetic(
        root, rows=ROWS, users=USERS, items=ITEMS, overwrite=root.exists(), progress=progress
    )
    return root


def example_recipe(root: str | Path, output: str = OUTPUT) -> Recipe:
    """The example's recipe over the data in ``root``."""
    root = Path(root)
    return Recipe(
        name="example-synthetic-glmix",
        data=Data(
            train=str(root / "train"),
            validation=str(root / "validation"),
            metadata=str(root / "metadata" / "tensor_metadata.json"),
            feature_lists=str(root / "featureList"),
        ),
        coordinates=[
            FixedEffect(name="global", feature_bag="global", l2=1.0, solver="lbfgs"),
            RandomEffect(
                name="per-user",
                entity="user_id",
                feature_bag="per_user",
                l2=ENTITY_L2,
                regularize_intercept=True,
            ),
            RandomEffect(
                name="per-item",
                entity="item_id",
                feature_bag="per_item",
                l2=ENTITY_L2,
                regularize_intercept=True,
            ),
        ],
        passes=1,
        output=output,
    )
