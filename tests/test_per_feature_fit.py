"""``l2_per_feature`` through ``raymix.fit`` on Ray's bucket actors: summary.json's variance
components list the intercept and each feature, equal to the exact ML of the model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import raymix
from raymix import Data, FixedEffect, RandomEffect, Recipe
from raymix.solvers.mixed_linear import Factor, fit_linear_mixed

pytestmark = [pytest.mark.ray]


def test_per_feature_variances_in_the_summary(ray_session, tmp_path):
    rng = np.random.default_rng(5)
    a, n = 60, 10
    g = np.repeat(np.arange(a), n)
    age = rng.normal(0, 1.5, a * n)
    u = rng.normal(size=(a, 2)) * [0.9, 0.3]
    y = 0.4 * age + u[g, 0] + u[g, 1] * age + rng.normal(0, 0.6, a * n)
    df = pd.DataFrame({"age": age, "user": g, "response": y})
    recipe = Recipe(
        name="per-feature",
        data=Data(train=df),
        coordinates=[
            FixedEffect(name="global", feature_bag=["age"], task="linear", l2=0.0),
            RandomEffect(
                name="per-user",
                entity="user",
                feature_bag=["age"],
                task="linear",
                l2="auto",
                regularize_intercept=True,
                l2_per_feature=True,
            ),  # fmt: skip
        ],
        passes=30,
        metric="rmse",
        output=str(tmp_path / "out"),
    )
    model = raymix.fit(recipe)
    summary = json.loads((model.output / "summary.json").read_text())
    components = summary["variance_components"]
    assert list(components) == ["per-user (Intercept)", "per-user age", "residual"]
    ones = np.ones(y.size)
    ref = fit_linear_mixed(
        y, np.column_stack([ones, age]), [Factor(g, np.column_stack([ones, age]), per_feature=True)]
    )  # fmt: skip
    got = [components["per-user (Intercept)"]["variance"], components["per-user age"]["variance"]]
    np.testing.assert_allclose(got, ref.sigma2[0], rtol=1e-3)
    assert components["residual"]["variance"] == pytest.approx(ref.sigma_e2, rel=1e-3)
