"""A search space over recipe fields, keyed by dotted recipe paths, and how to apply a point.

A space file (``tune/NAME.py``) defines ``space`` and, optionally, the search settings::

    from ray import tune

    space = {
        "coordinates.global.l2": tune.loguniform(1e-3, 1e3),   # coordinates by name
        "coordinates.per-user.l2": tune.loguniform(1e-3, 1e3),
        "passes": tune.choice([1, 2, 3]),
    }
    metric = "auc"            # a validation metric: auc | logloss | rmse (default: the recipe's)
    mode = "max"              # default: max for auc, min otherwise
    num_samples = 32          # trials (with searcher "grid": repeats of the grid)
    searcher = "optuna"       # random | grid | optuna (TPE; needs raymix[tune])
    scheduler = "asha"        # asha (early stopping across passes) | None
    max_concurrent = 2        # trials at a time (default: one per core)

Keys follow ``raymix fit --set``: ``coordinates.NAME.FIELD`` or any top-level field. Every
value a domain can take is checked against the recipe before anything starts.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from raymix.errors import RecipeError
from raymix.recipe.checked import CheckedSpec, checked, one_of
from raymix.recipe.load import apply_override, validate_recipe
from raymix.recipe.spec import Recipe

SEARCHERS = ("random", "grid", "optuna")
SCHEDULERS = ("asha", None)
METRICS = {"auc": "max", "logloss": "min", "rmse": "min"}
_SETTINGS = ("metric", "mode", "num_samples", "searcher", "scheduler", "max_concurrent")

# Fields a trial may change without touching the resident rows (see PreparedRecipe).
RECIPE_HOT = frozenset({"name", "passes", "early_stopping", "metric", "output", "checkpoint"})
COORDINATE_HOT = frozenset(
    {"l2", "l1", "regularize_intercept", "sparsity_threshold", "variance", "solver", "locked"}
)


class SearchSpace(CheckedSpec):
    """What to search and how. ``space`` maps dotted recipe paths to Tune domains or values.

    ``SearchSpace(space, searcher="random")``: the space may be given by position. A wrong
    setting raises RecipeError: ``searcher must be one of [...]. Got 'bayes' instead.``
    """

    space: Annotated[dict[str, Any], checked(bool, "a non-empty dict of dotted recipe paths")]
    metric: Annotated[str, one_of(*METRICS)] | None = None
    mode: Annotated[str, one_of("max", "min")] | None = None
    num_samples: Annotated[int, Field(ge=1)] = 16
    searcher: Annotated[str, one_of(*SEARCHERS)] = "optuna"
    scheduler: Annotated[str | None, one_of(*SCHEDULERS)] = "asha"
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    source: str | None = None  # the space file, named in messages

    def __init__(self, space: dict[str, Any] | None = None, /, **settings: Any) -> None:
        if space is not None:
            settings["space"] = space
        super().__init__(**settings)

    @classmethod
    def problem(cls, field: str, message: str, data: dict[str, Any]) -> RecipeError:
        where = f"{data['source']}: " if data.get("source") else ""
        sep = " " if message.startswith("must") else ": "
        return RecipeError(f"{where}{field}{sep}{message}")

    def resolved_metric(self, recipe: Recipe) -> tuple[str, str]:
        metric = self.metric or recipe.metric
        return metric, self.mode or METRICS[metric]

    def candidates(self, key: str) -> list:
        """Values to check a domain with: its categories, its bounds, or one sample."""
        return candidate_values(self.space[key])


def load_space(path: str | Path) -> SearchSpace:
    """Read a space file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"search space file not found: {path}")
    try:
        namespace = runpy.run_path(str(path))
    except Exception as exc:
        raise RecipeError(f"{path}: error while running the search space: {exc!r}") from None
    if "space" not in namespace:
        raise RecipeError(f"{path}: the file must define a dict named 'space'")
    settings = {k: namespace[k] for k in _SETTINGS if k in namespace}
    return SearchSpace(space=namespace["space"], **settings, source=str(path))


def candidate_values(domain) -> list:
    from ray.tune.search.sample import Categorical, Domain, Float, Integer

    if isinstance(domain, dict) and set(domain) == {"grid_search"}:
        return list(domain["grid_search"])
    if isinstance(domain, Categorical):
        return list(domain.categories)
    if isinstance(domain, Float | Integer):
        return [domain.lower, domain.upper - (1 if isinstance(domain, Integer) else 0)]
    if isinstance(domain, Domain):
        return [domain.sample()]
    return [domain]


def describe(value) -> str:
    """A stable text of a domain (Tune's repr holds a memory address): type and fields."""
    from ray.tune.search.sample import Domain, Sampler

    if isinstance(value, Domain | Sampler):
        fields = ", ".join(f"{k}={describe(v)}" for k, v in sorted(vars(value).items()))
        return f"{type(value).__name__}({fields})"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(describe(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    return repr(plain(value))


def plain(value):
    """A JSON-able Python value (numpy scalars from the searchers become int/float/bool)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def apply_config(recipe: Recipe, config: dict) -> Recipe:
    """The recipe with every ``dotted.path: value`` of ``config`` applied (as ``--set`` does)."""
    raw = recipe.model_dump(mode="json")
    for key, value in config.items():
        raw = apply_override(raw, f"{key}={json.dumps(plain(value))}", what="")
    return validate_recipe(raw, source="search space")


def check_searcher(space: SearchSpace, installed=None) -> None:
    """Fail before Ray starts (and before ``search.json`` is written) when the searcher's
    package is missing; ``installed(name)`` says whether a package is (default: importable)."""
    import importlib.util

    found = installed or (lambda name: importlib.util.find_spec(name) is not None)
    if space.searcher == "optuna" and not found("optuna"):
        raise RecipeError(
            "searcher 'optuna' needs Optuna: pip install 'raymix[tune]' (or use searcher 'random')",
            field="searcher",
        )


def check_space(recipe: Recipe, space: SearchSpace) -> None:
    """Fail before anything starts if a key is unknown or a value the recipe rejects."""
    for key in space.space:
        for value in space.candidates(key):
            try:
                apply_config(recipe, {key: value})
            except RecipeError as exc:
                where = f"{space.source}: " if space.source else ""
                raise RecipeError(f"{where}space key '{key}' = {value!r}: {exc.message}") from None


def max_passes(recipe: Recipe, space: SearchSpace) -> int:
    if "passes" in space.space:
        return max(int(v) for v in space.candidates("passes"))
    return recipe.passes


def needs_new_data(old: Recipe, new: Recipe) -> str | None:
    """Why ``new`` cannot reuse rows loaded for ``old`` (None when it can)."""
    a, b = old.model_dump(), new.model_dump()
    for key in a:
        if key not in RECIPE_HOT and key != "coordinates" and a[key] != b[key]:
            return _first_difference(a[key], b[key], key)
    if [c["name"] for c in a["coordinates"]] != [c["name"] for c in b["coordinates"]]:
        return "coordinates"
    for ca, cb in zip(a["coordinates"], b["coordinates"], strict=True):
        for key in sorted(ca.keys() | cb.keys()):
            if key not in COORDINATE_HOT and ca.get(key) != cb.get(key):
                return _first_difference(
                    ca.get(key), cb.get(key), f"coordinates.{ca['name']}.{key}"
                )
    return None


def _first_difference(a, b, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    return path
