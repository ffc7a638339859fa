"""``Recipe.variance_method="reml"`` through ``raymix.fit`` on Ray's bucket actors: the
variance components equal statsmodels' MixedLM(reml=True); the summary, the terminal table
and the report say which method; the recipe refuses REML where it does not apply."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import raymix
from raymix import Data, FixedEffect, RandomEffect, Recipe
from raymix.report import table
from raymix.result import FitResult


def one_factor(seed: int = 7):
    rng = np.random.default_rng(seed)
    q, n = 40, 1200
    user = rng.integers(0, q, n) ** 2 % q  # unbalanced
    x = rng.normal(size=n)
    y = 0.3 + 1.5 * x + rng.normal(0, 0.7, q)[user] + rng.normal(0, 1.2, n)
    return pd.DataFrame({"x": x, "user": user, "response": y})


def recipe(df, out, method="reml", **random):
    return Recipe(
        name="reml",
        data=Data(train=df),
        coordinates=[
            FixedEffect(name="global", feature_bag=["x"], task="linear", l2=0.0),
            RandomEffect(
                **{"name": "per-user", "entity": "user", "task": "linear", "l2": "auto"}
                | {"regularize_intercept": True}
                | random
            ),
        ],
        passes=60,
        metric="rmse",
        output=str(out),
        variance_method=method,
    )


@pytest.mark.ray
def test_reml_fit_agrees_with_mixedlm_and_says_so(ray_session, tmp_path):
    from statsmodels.regression.mixed_linear_model import MixedLM

    df = one_factor()
    model = raymix.fit(recipe(df, tmp_path / "out"))
    summary = json.loads((model.output / "summary.json").read_text())
    assert summary["variance_method"] == "reml"
    components = summary["variance_components"]
    ref = MixedLM.from_formula("response ~ x", groups=df["user"], data=df).fit(reml=True)
    assert components["residual"]["variance"] == pytest.approx(ref.scale, rel=1e-3)
    assert components["per-user"]["variance"] == pytest.approx(
        float(ref.cov_re.iloc[0, 0]), rel=1e-3
    )
    ml = MixedLM.from_formula("response ~ x", groups=df["user"], data=df).fit(reml=False)
    assert abs(float(ml.cov_re.iloc[0, 0]) - components["per-user"]["variance"]) > 1e-2 * ref.scale
    assert "lmer(REML = TRUE)" in (model.output / "report.html").read_text()


@pytest.mark.ray
def test_the_written_fixed_effect_variances_are_lmers_vcov(ray_session, tmp_path):
    """The fixed effect's written variances are marginal over the random effect (the design
    columns fitted by the bucket actors): lmer's ``diag(vcov)`` to 1e-3, ML and REML (the
    exact dense reference; MixedLM's ``bse_fe`` squared witnesses it to 1e-2: its standard
    errors come from the observed information of the fixed effects and the variance
    parameters together, 0.6% off lmer's for the slope here)."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    from raymix.data.avro.models import read_models
    from raymix.solvers.mixed_linear import Factor, fit_linear_mixed

    df = one_factor()
    df["x"] += np.random.default_rng(1).normal(0, 0.5, 40)[df["user"]]
    for method in ("ml", "reml"):
        spec = recipe(df, tmp_path / method, method=method)
        fixed = spec.coordinates[0].model_copy(update={"variance": "full"})
        model = raymix.fit(spec.model_copy(update={"coordinates": [fixed, spec.coordinates[1]]}))
        summary = json.loads((model.output / "summary.json").read_text())
        assert summary["fixed_effect_variances"] == {"coordinate": "global", "kind": "marginal", "sweeps": 1}  # fmt: skip
        (record,) = read_models(str(model.output / "global" / "models"))
        written = {v["name"]: v["value"] for v in record["variances"]}
        got = np.array([written["(INTERCEPT)"], written["x"]])
        X = np.column_stack([np.ones(len(df)), df["x"]])
        exact = fit_linear_mixed(df["response"].to_numpy(), X, [Factor(df["user"].to_numpy())], method=method)  # fmt: skip
        np.testing.assert_allclose(got, exact.beta_se**2, rtol=1e-3)
        ref = MixedLM.from_formula("response ~ x", groups=df["user"], data=df).fit(reml=method == "reml")  # fmt: skip
        np.testing.assert_allclose(got, np.asarray(ref.bse_fe) ** 2, rtol=1e-2)


def test_the_table_names_the_method():
    steps = [
        {"pass": 1, "coordinate": "per-user", "metrics": {"rmse": 0.8}, "seconds": 0.1,
         "l2": 4.0, "sigma2": 0.5, "sigma_e2": 2.0, "variance_method": "reml"},
    ]  # fmt: skip
    result = FitResult(output=None, steps=steps, final={}, timings={}, best_pass=1, files={})
    assert "variance components (l2=auto, REML)" in table(result)


@pytest.mark.parametrize(
    "random, said",
    [
        ({"l2": 1.0}, "needs a linear random effect with l2='auto'"),
        ({"l2_per_feature": True, "feature_bag": ["x"]}, "not available with l2_per_feature"),
    ],
)
def test_reml_is_refused_where_it_does_not_apply(tmp_path, random, said):
    with pytest.raises(ValueError, match=said):
        recipe(one_factor(), tmp_path / "out", **random)


def test_ml_is_the_default(tmp_path):
    assert recipe(one_factor(), tmp_path, method="ml").variance_method == "ml"
    raw = recipe(one_factor(), tmp_path).model_dump()
    raw.pop("variance_method")
    assert Recipe.model_validate(raw).variance_method == "ml"


@pytest.mark.ray
@pytest.mark.parametrize("crossed", [False, True], ids=["one-factor", "crossed"])
def test_a_run_resumed_after_its_last_fixed_effect_fit_writes_the_same_models(ray_session, tmp_path, monkeypatch, crossed):  # fmt: skip
    """Stopped right after the last pass's fixed-effect fit, --resume refits only the random
    effects: the fixed effect's variances come back from the checkpoint, and sigma_e^2, the
    l2 estimates and (crossed) the other factor's penalty from the steps, so the written
    models and summary equal the uninterrupted run's bit for bit (before: no fixed-effect
    variances, and random-effect models apart: ~1e-9 for one factor, their EM started from
    l2=1; crossed, the first factor's PWRSS missed the other's penalty)."""
    import raymix.run
    from raymix.data.avro.models import read_models

    df = one_factor()
    if crossed:
        rng = np.random.default_rng(2)
        df["item"] = rng.integers(0, 25, len(df))
        df["response"] += rng.normal(0, 0.5, 25)[df["item"]]
    spec = recipe(df, tmp_path / "out", method="ml")
    fixed = spec.coordinates[0].model_copy(update={"variance": "full"})
    randoms = [spec.coordinates[1]]
    if crossed:
        randoms.append(randoms[0].model_copy(update={"name": "per-item", "entity": "item"}))
    spec = spec.model_copy(update={"coordinates": [fixed, *randoms], "passes": 4})
    message = raymix.run.step_message

    def stop_after_the_last_fixed_effect(step, passes):
        if step.coordinate == "global" and step.pass_index == passes - 1:
            raise KeyboardInterrupt
        return message(step, passes)

    monkeypatch.setattr(raymix.run, "step_message", stop_after_the_last_fixed_effect)
    with pytest.raises(KeyboardInterrupt):
        raymix.fit(spec)
    monkeypatch.setattr(raymix.run, "step_message", message)
    resumed = raymix.run.fit(spec, resume=True)
    whole = raymix.fit(spec.model_copy(update={"output": str(tmp_path / "whole")}))

    def written(out):
        (record,) = read_models(str(out / "global" / "models"))
        summary = json.loads((out / "summary.json").read_text())
        return record["variances"], summary["fixed_effect_variances"]

    assert written(resumed.output) == written(whole.output)
    assert written(whole.output)[1]["kind"] == "marginal"

    def per_user(out):  # the random effect's last fit starts from the restored l2 estimate
        return sorted((r["modelId"], r["means"], r["variances"]) for r in read_models(str(out / "per-user" / "models")))  # fmt: skip

    assert per_user(resumed.output) == per_user(whole.output)
    if crossed:
        assert written(whole.output)[1]["sweeps"] > 1
        items = [sorted(map(str, read_models(str(out / "per-item" / "models")))) for out in (resumed.output, whole.output)]  # fmt: skip
        assert items[0] == items[1]
