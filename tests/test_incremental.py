"""Incremental training end to end: day 1, then day 2 with ``raymix fit --prior`` day 1's
output, against one fit on days 1 + 2 (linear: the Bayesian identity); a bad prior fails in
one line naming its file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raymix import Data, RandomEffect, Recipe
from raymix.data.avro.models import model_record, read_models, write_models
from raymix.datasets.daily import generate_days
from raymix.errors import DataError

SOLVER = {"tolerance": 1e-12, "max_iter": 200}


def recipe_of(root: Path, train, out: Path, **coordinate) -> Recipe:
    spec = dict(name="per-user", entity="user_id", feature_bag="per_user", task="linear",
                l2=4.0, regularize_intercept=True, sparsity_threshold=0.0, solver=SOLVER,
                variance="covariance")  # fmt: skip
    spec.update(coordinate)
    return Recipe(
        data=Data(
            train=train,
            metadata=str(root / "metadata/tensor_metadata.json"),
            feature_lists=str(root / "featureList"),
        ),  # fmt: skip
        coordinates=[RandomEffect(**spec)],
        metric="rmse",
        checkpoint=False,
        output=str(out),
    )


def models_of(out: Path) -> dict[str, dict[tuple[str, str], float]]:
    return {
        r["modelId"]: {(m["name"], m["term"]): m["value"] for m in r["means"]}
        for r in read_models(out / "per-user" / "models")
    }


def test_day_two_with_the_prior_of_day_one_is_the_fit_on_both_days(tmp_path, ray_session):
    from raymix.run import fit

    root = tmp_path / "days"
    generate_days(root, days=2, rows=3000, update_rows=600, users=150, new_users=10,
                  active_fraction=0.2, global_features=2, entity_features=2, task="linear",
                  validation_fraction=0.0)  # fmt: skip
    day1, day2 = (str(root / f"day-{d}" / "train") for d in (1, 2))
    fit(recipe_of(root, day1, tmp_path / "d1"))
    fit(recipe_of(root, (day1, day2), tmp_path / "both"))
    recipe_file = tmp_path / "day2.py"
    recipe = recipe_of(root, day2, tmp_path / "d2")
    recipe_file.write_text(
        "from raymix.recipe.load import validate_recipe\n"
        f"recipe = validate_recipe({recipe.model_dump(mode='json')!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "raymix", "fit", str(recipe_file), "--quiet",
         "--prior", str(tmp_path / "d1")],
        capture_output=True, text=True, timeout=900, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    one, both, two = models_of(tmp_path / "d1"), models_of(tmp_path / "both"), models_of(tmp_path / "d2")  # fmt: skip
    assert set(two) == set(both)  # every user: refit or carried
    refit = [u for u in two if two[u] != one.get(u)]
    assert len(refit) >= 30
    worst = max(abs(two[u][k] - both[u][k]) for u in refit for k in both[u])
    assert worst < 1e-6
    for u in set(two) - set(refit):  # carried unchanged: no rows on day 2
        assert two[u] == one[u]
    assert any((tmp_path / "d2" / "per-user" / "models").glob("*.covariance.arrow"))


def test_a_prior_without_variances_fails_naming_its_file(tmp_path, ray_session):
    from raymix.run import fit

    root = tmp_path / "days"
    generate_days(root, days=1, rows=400, users=20, global_features=1, entity_features=2,
                  task="linear")  # fmt: skip
    bad = tmp_path / "old" / "per-user" / "models" / "part-00000.avro"
    bad.parent.mkdir(parents=True)
    write_models(bad, [model_record("3", 0.1, np.array([0]), np.array([1.0]), None, "linear")])
    recipe = recipe_of(root, str(root / "day-1" / "train"), tmp_path / "out")
    with pytest.raises(DataError, match="has no variances") as info:
        fit(recipe.with_prior(str(tmp_path / "old")))
    assert "part-00000.avro" in str(info.value) and "\n" not in str(info.value)
