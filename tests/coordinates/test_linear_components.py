"""Linear ``l2="auto"``: the residual and random-effect variances of the coordinate descent
(an in-process fixed effect and random effects) against maximum likelihood and REML: the
exact dense reference (:mod:`raymix.solvers.mixed_linear`), statsmodels' MixedLM and the
closed forms of the balanced one-way ANOVA."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix import Columns, FixedEffect, RandomEffect
from raymix.coordinates.fixed_effect import FixedEffectCoordinate
from raymix.coordinates.inputs import build_source
from raymix.coordinates.random_effect import RandomEffectCoordinate
from raymix.descent import descend, load, recenter
from raymix.recipe.spec import Data
from raymix.solvers.glm import GLMLoss
from raymix.solvers.mixed_linear import Factor, fit_linear_mixed, one_way_anova_ml
from raymix.solvers.variance_components import ResidualVariance

from .test_fixed_effect import OneWorker, rows_of
from .test_random_effect import LocalHolders


class LinearWorker(OneWorker):
    """The in-process fixed-effect worker, on the linear loss."""

    def start(self, spec, train, validation):
        self.spec_intercept = spec.fit_intercept
        self.rows = rows_of(train)
        self.loss = GLMLoss(self.rows.X, self.rows.label, weights=self.rows.weight, task="linear")
        self.requests = 0


def write(directory, y, x, levels: dict):
    directory.mkdir(parents=True, exist_ok=True)
    n = y.size
    columns = {"uid": np.arange(n), "response": y, "weight": np.ones(n), "x": x}
    columns |= {f"{k}_id": v for k, v in levels.items()}
    pq.write_table(pa.table(columns), directory / "part-0.parquet")
    return Data(train=str(directory))


def descent(data, factors, passes, slope=True, variance=None, built=None, method="ml"):
    """The fixed effect (intercept, and ``x`` with ``slope``) and one intercept-only linear
    random effect per factor with ``l2="auto"`` (``method``: "ml" or "reml"); returns (fixed coefficients ``[w, b]``, per
    factor its last estimates, the descent's state)."""
    bag = ("x",) if slope else None
    fixed = FixedEffect(name="fe", feature_bag=bag, task="linear", l2=0.0, variance=variance)
    fe = FixedEffectCoordinate(
        fixed,
        build_source(data, Columns(), split="train", bag=bag, task="linear"),
        None,
        None,
        LinearWorker(),
        residual := ResidualVariance(method=method),
    )
    holders = LocalHolders(2)
    res = [
        RandomEffectCoordinate(
            RandomEffect(
                name=k,
                entity=f"{k}_id",
                task="linear",
                l2="auto",
                regularize_intercept=True,
                variance=variance,
            ),
            build_source(data, Columns(), split="train", bag=None, entity=f"{k}_id", task="linear"),
            None,
            None,
            pool=holders,
            seed=0,
            residual=residual,
        )
        for k in factors
    ]
    coordinates = [fe, *res]
    state = load(coordinates)
    descend(coordinates, state, passes=passes, metric="rmse")
    if built is not None:  # the caller's list gets the coordinates
        built.extend(coordinates)
    return fe.theta, [c.components for c in res], state


def test_one_factor_balanced_is_the_closed_form_ml(tmp_path):
    rng = np.random.default_rng(3)
    a, n = 25, 8
    y = 2.0 + rng.normal(0, 0.7, a)[:, None] + rng.normal(0, 1.0, (a, n))
    codes = np.repeat(np.arange(a), n)
    data = write(tmp_path, y.ravel(), np.zeros(a * n), {"g": codes})
    theta, (est,), _ = descent(data, ["g"], passes=60, slope=False)
    mu, sigma_a2, sigma_e2 = one_way_anova_ml(y)
    assert theta[0] == pytest.approx(mu, rel=1e-6)
    assert est.sigma_e2 == pytest.approx(sigma_e2, rel=1e-6)
    assert est.sigma2 == pytest.approx(sigma_a2, rel=1e-6)


def planted_crossed(seed, n=2000, levels=(30, 20), sigmas=(0.8, 0.5), sigma_e=1.0):
    rng = np.random.default_rng(seed)
    codes = [rng.integers(0, q, n) for q in levels]
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + rng.normal(0, sigma_e, n)
    for c, q, s in zip(codes, levels, sigmas, strict=True):
        y += rng.normal(0, s, q)[c]
    return y, x, codes


def statsmodels_ml(y, x, codes):
    """MixedLM (ML) with crossed intercepts: one group, a variance component per factor;
    ``(sigma_e^2, sigma^2 per factor, [intercept, slope], log-likelihood)``."""
    import pandas as pd
    from statsmodels.regression.mixed_linear_model import MixedLM

    frame = pd.DataFrame({"y": y, "x": x} | {f"f{k}": c for k, c in enumerate(codes)})
    fit = MixedLM.from_formula(
        "y ~ x",
        groups=np.zeros(y.size),
        vc_formula={f"f{k}": f"0 + C(f{k})" for k in range(len(codes))},
        re_formula="0",
        data=frame,
    ).fit(reml=False, method="lbfgs")
    return fit.scale, np.asarray(fit.vcomp) * fit.scale, np.asarray(fit.fe_params), fit.llf


def test_crossed_agrees_with_the_exact_ml(tmp_path):
    """Two crossed factors (30 x 20 levels, 6000 rows): sigma_e^2, both sigma^2, the slope
    and the intercept to 1e-3 of lmer's ML (the exact reference; the intercept only with the
    random intercepts' mean moved into it: 0.8% off after 60 passes without, see
    :func:`raymix.descent.recenter`). MixedLM witnesses the reference: its log-likelihood is no
    higher (its optimizer stops up to 2% off in sigma_a^2 on this flat likelihood, so its
    estimates are compared with the reference's at the tolerance it reaches)."""
    y, x, codes = planted_crossed(0, n=6000)
    data = write(tmp_path, y, x, {"a": codes[0], "b": codes[1]})
    theta, est, _ = descent(data, ["a", "b"], passes=60)
    ref = fit_linear_mixed(y, np.column_stack([np.ones(y.size), x]), [Factor(c) for c in codes])
    assert ref.converged
    for e, s in zip(est, ref.sigma2, strict=True):
        assert e.sigma_e2 == pytest.approx(ref.sigma_e2, rel=1e-3)
        assert e.sigma2 == pytest.approx(s, rel=1e-3)
    assert theta[0] == pytest.approx(ref.beta[1], rel=1e-3)  # the slope (theta: [w, b])
    assert theta[1] == pytest.approx(ref.beta[0], rel=1e-3)
    scale, vcomp, beta, llf = statsmodels_ml(y, x, codes)
    assert llf <= -ref.deviance / 2 + 1e-9
    assert scale == pytest.approx(ref.sigma_e2, rel=1e-5)
    np.testing.assert_allclose(vcomp, ref.sigma2, rtol=0.03)
    np.testing.assert_allclose(beta, ref.beta, rtol=1e-5)


def test_one_factor_unbalanced_agrees_with_mixedlm(tmp_path):
    rng = np.random.default_rng(5)
    q, n = 40, 1500
    codes = rng.integers(0, q, n) ** 2 % q  # unbalanced: some levels far more rows
    x = rng.normal(size=n)
    y = -0.5 + 2.0 * x + rng.normal(0, 0.6, q)[codes] + rng.normal(0, 1.5, n)
    data = write(tmp_path, y, x, {"g": codes})
    theta, (est,), _ = descent(data, ["g"], passes=60)
    import pandas as pd
    from statsmodels.regression.mixed_linear_model import MixedLM

    frame = pd.DataFrame({"y": y, "x": x})
    fit = MixedLM.from_formula("y ~ x", groups=codes, data=frame).fit(reml=False)
    scale, sigma2, beta = fit.scale, float(fit.cov_re.iloc[0, 0]), np.asarray(fit.fe_params)
    ref = fit_linear_mixed(y, np.column_stack([np.ones(n), x]), [Factor(codes)])
    assert est.sigma_e2 == pytest.approx(scale, rel=1e-3)
    assert est.sigma2 == pytest.approx(sigma2, rel=1e-3)
    np.testing.assert_allclose(theta[::-1], beta, rtol=1e-3)
    # one factor: the entity blocks are exact, what is left is the 60 passes' convergence
    assert est.sigma2 == pytest.approx(ref.sigma2[0], rel=1e-4)
    assert est.sigma_e2 == pytest.approx(ref.sigma_e2, rel=1e-5)


def test_planted_crossed_sets_are_unbiased_within_sampling_error(tmp_path):
    """Over seeds, the mean estimate of each variance is within 3 standard errors of the
    planted value (ML's own bias, ~1/levels, is well inside that here)."""
    planted = np.array([1.0, 0.8**2, 0.5**2])
    estimates = []
    for seed in range(6):
        y, x, codes = planted_crossed(seed + 10, n=2000)
        data = write(tmp_path / str(seed), y, x, {"a": codes[0], "b": codes[1]})
        _, est, _ = descent(data, ["a", "b"], passes=25)
        estimates.append([est[1].sigma_e2, est[0].sigma2, est[1].sigma2])
    estimates = np.array(estimates)
    mean = estimates.mean(axis=0)
    error = estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(np.abs(mean - planted) < 3 * error + 1e-12), (mean, error)
    assert np.all(np.abs(mean - planted) / planted < 0.25)


def test_variances_are_scaled_by_the_residual_variance(tmp_path):
    """The written variances of a linear model are sigma_e^2 times the solver's: for one
    factor a random intercept's is lmer's conditional variance (``ranef(condVar=TRUE)``)."""
    from raymix.data.avro.models import read_models

    rng = np.random.default_rng(8)
    q, n = 20, 600
    codes = rng.integers(0, q, n)
    x = rng.normal(size=n)
    y = 1.0 + x + rng.normal(0, 0.7, q)[codes] + rng.normal(0, 2.0, n)
    data = write(tmp_path / "data", y, x, {"g": codes})
    built: list = []
    _, (est,), _ = descent(data, ["g"], passes=60, variance="simple", built=built)
    fe, re = built
    (record,) = read_models(fe.write_models(tmp_path / "fe")[0])
    written = {v["name"]: v["value"] for v in record["variances"]}
    solver = np.asarray(fe.variances)  # [w, b], relative to sigma_e^2
    assert written["(INTERCEPT)"] == pytest.approx(est.sigma_e2 * solver[-1], rel=1e-12)
    ref = fit_linear_mixed(y, np.column_stack([np.ones(n), x]), [Factor(codes)])
    models = [m for m in re.snapshot() if m is not None]
    variances = np.concatenate([m.variances[m.intercept_slots] for m in models])
    ids = np.concatenate([h[1].train.entities[h[1].train.has_model] for h in re.pool.state["g"]])
    expected = ref.conditional_variances[0][ids.astype(np.int64), 0]
    np.testing.assert_allclose(variances, expected, rtol=1e-4)


def test_one_factor_balanced_reml_is_the_closed_form(tmp_path):
    """REML through the coordinate descent (the fixed intercept's coupling fitted in the
    buckets) is the balanced one-way ANOVA's REML: sigma_e^2 = MSE, sigma^2 = (MSA-MSE)/n."""
    rng = np.random.default_rng(3)
    a, n = 25, 8
    y = 2.0 + rng.normal(0, 0.7, a)[:, None] + rng.normal(0, 1.0, (a, n))
    codes = np.repeat(np.arange(a), n)
    data = write(tmp_path, y.ravel(), np.zeros(a * n), {"g": codes})
    theta, (est,), _ = descent(data, ["g"], passes=60, slope=False, method="reml")
    mu, sigma_a2, sigma_e2 = one_way_anova_ml(y, method="reml")
    assert theta[0] == pytest.approx(mu, rel=1e-6)
    assert est.sigma_e2 == pytest.approx(sigma_e2, rel=1e-6)
    assert est.sigma2 == pytest.approx(sigma_a2, rel=1e-6)
    assert abs(est.sigma2 - one_way_anova_ml(y)[1]) > 1e-2 * sigma_a2  # not ML's


def test_one_factor_unbalanced_reml_agrees_with_mixedlm(tmp_path):
    rng = np.random.default_rng(5)
    q, n = 40, 1500
    codes = rng.integers(0, q, n) ** 2 % q
    x = rng.normal(size=n)
    y = -0.5 + 2.0 * x + rng.normal(0, 0.6, q)[codes] + rng.normal(0, 1.5, n)
    data = write(tmp_path, y, x, {"g": codes})
    theta, (est,), _ = descent(data, ["g"], passes=60, method="reml")
    import pandas as pd
    from statsmodels.regression.mixed_linear_model import MixedLM

    frame = pd.DataFrame({"y": y, "x": x})
    fit = MixedLM.from_formula("y ~ x", groups=codes, data=frame).fit(reml=True)
    assert est.sigma_e2 == pytest.approx(fit.scale, rel=1e-3)
    assert est.sigma2 == pytest.approx(float(fit.cov_re.iloc[0, 0]), rel=1e-3)
    np.testing.assert_allclose(theta[::-1], np.asarray(fit.fe_params), rtol=1e-3)


def test_crossed_reml_agrees_with_the_exact_reml(tmp_path):
    """Two crossed factors (30 x 20 levels, 6000 rows) by REML: sigma_e^2 and both sigma^2
    to 1e-3 of the exact dense REML (lmer's REML=TRUE), which differs from ML's."""
    y, x, codes = planted_crossed(0, n=6000)
    data = write(tmp_path, y, x, {"a": codes[0], "b": codes[1]})
    theta, est, _ = descent(data, ["a", "b"], passes=60, method="reml")
    X = np.column_stack([np.ones(y.size), x])
    ref = fit_linear_mixed(y, X, [Factor(c) for c in codes], method="reml")
    ml = fit_linear_mixed(y, X, [Factor(c) for c in codes])
    assert ref.converged
    for e, s, s_ml in zip(est, ref.sigma2, ml.sigma2, strict=True):
        assert e.sigma_e2 == pytest.approx(ref.sigma_e2, rel=1e-3)
        assert e.sigma2 == pytest.approx(s, rel=1e-3)
        assert abs(s - s_ml) > 5e-3 * s  # REML is another answer (ML would fail the 1e-3)
    np.testing.assert_allclose(theta[::-1], ref.beta, rtol=1e-3)


def test_recentering_moves_the_random_intercepts_mean_without_changing_a_prediction(tmp_path):
    """:func:`raymix.descent.recenter` on a fitted crossed model pushed off its optimum along
    the unidentified direction (+0.5 on every random intercept of a factor, -0.5 on the fixed
    one): it moves the mean back (0.5 and what the fit left), every training prediction stays
    the same to 1e-12, and the penalty is lower."""
    y, x, codes = planted_crossed(1, n=3000)
    data = write(tmp_path, y, x, {"a": codes[0], "b": codes[1]})
    built: list = []
    _, _, state = descent(data, ["a", "b"], passes=3, built=built)
    fe, re_a, _ = built
    before = state.train.total()
    left = re_a.intercept_mean()
    for c, by in ((re_a, 0.5), (fe, -0.5)):
        train, val = state.train, state.validation
        out = c.shift_intercepts(by, train.total() - train.scores[c.name], val.total())
        train.scores[c.name], val.scores[c.name] = out.train, out.validation
    np.testing.assert_allclose(state.train.total(), before, rtol=0, atol=1e-12)

    def penalty():
        return sum(float(np.sum(m.intercepts**2)) for m in re_a.pool.snapshot("a"))

    pushed = penalty()
    moved = recenter(re_a, built, state, frozenset())
    assert moved == pytest.approx(0.5 + left, abs=1e-12)
    assert re_a.intercept_mean() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(state.train.total(), before, rtol=0, atol=1e-12)
    assert penalty() < pushed
    assert recenter(re_a, built, state, frozenset({"fe"})) == 0.0  # a locked fixed effect


def test_no_recentering_where_a_shift_would_change_predictions(tmp_path):
    y, x, codes = planted_crossed(2, n=600)
    data = write(tmp_path, y, x, {"a": codes[0], "b": codes[1]})
    built: list = []
    descent(data, ["a"], passes=1, built=built)
    re_a = built[1]
    assert re_a.intercept_mean() is not None
    for change in ({"min_samples": 30}, {"regularize_intercept": False}, {"l1": 0.1}):
        re_a.spec = re_a.spec.model_copy(update=change)
        assert re_a.intercept_mean() is None, change
        re_a.spec = re_a.spec.model_copy(update={k: RandomEffect.model_fields[k].default for k in change})  # fmt: skip


def marginal(coordinates, state):
    """The fixed effect's marginal variances (theta order ``[w, b]``, times sigma_e^2) at the
    ridges of the random effects' last fits."""
    from raymix.coordinates.marginal_variance import fitted_penalty, marginal_variances

    fe, *res = coordinates
    infos = {s.coordinate: s.info for s in state.steps}
    penalties = {r.name: fitted_penalty(r.spec, infos[r.name]) for r in res}
    found = marginal_variances(fe, res, penalties)
    assert not isinstance(found, str), found
    return found.variances * fe.residual.sigma_e2, found.sweeps


def test_one_factor_fixed_effect_variances_are_lmers_vcov(tmp_path):
    """One factor, unbalanced: the marginal fixed-effect standard errors equal lmer's
    (``sqrt(diag(vcov))``: the exact dense reference) to 1e-3, and MixedLM's ``bse_fe`` to
    1e-2 (its errors include the variance parameters' information, ~0.3% apart here); the
    conditional ones (the fixed effect's Hessian) are far smaller for the intercept."""
    rng = np.random.default_rng(5)
    q, n = 40, 1500
    codes = rng.integers(0, q, n) ** 2 % q
    x = rng.normal(size=n) + rng.normal(0, 0.5, q)[codes]  # a slope that varies between levels
    y = -0.5 + 2.0 * x + rng.normal(0, 0.6, q)[codes] + rng.normal(0, 1.5, n)
    data = write(tmp_path, y, x, {"g": codes})
    built: list = []
    _, (est,), state = descent(data, ["g"], passes=60, variance="full", built=built)
    variances, sweeps = marginal(built, state)
    assert sweeps == 1
    ref = fit_linear_mixed(y, np.column_stack([np.ones(n), x]), [Factor(codes)])
    np.testing.assert_allclose(np.sqrt(variances[::-1]), ref.beta_se, rtol=1e-3)
    import pandas as pd
    from statsmodels.regression.mixed_linear_model import MixedLM

    fit = MixedLM.from_formula("y ~ x", groups=codes, data=pd.DataFrame({"y": y, "x": x})).fit(reml=False)  # fmt: skip
    np.testing.assert_allclose(np.sqrt(variances[::-1]), np.asarray(fit.bse_fe), rtol=1e-2)
    conditional = np.asarray(built[0].variances) * est.sigma_e2
    assert conditional[-1] < 0.2 * variances[-1]  # the intercept's, given the random effect


def test_crossed_fixed_effect_variances_are_lmers_vcov(tmp_path):
    """Two crossed factors (30 x 20 levels): backfitting the design columns over both gives
    lmer's fixed-effect standard errors (ML and REML) to 1e-3."""
    y, x, codes = planted_crossed(0, n=6000)
    data = write(tmp_path, y, x, {"a": codes[0], "b": codes[1]})
    X = np.column_stack([np.ones(y.size), x])
    for method in ("ml", "reml"):
        built: list = []
        _, _, state = descent(data, ["a", "b"], passes=60, variance="full", built=built, method=method)  # fmt: skip
        variances, sweeps = marginal(built, state)
        assert sweeps > 1
        ref = fit_linear_mixed(y, X, [Factor(c) for c in codes], method=method)
        np.testing.assert_allclose(np.sqrt(variances[::-1]), ref.beta_se, rtol=1e-3)


def test_a_rank_deficient_design_keeps_no_marginal_variances(tmp_path):
    """A fixed effect without a ridge whose design has a repeated column has no identified
    coefficients: the marginal precision is singular and the reason is given, instead of
    variances from a singular inverse (found on movieLens' one-hot features with l2=0)."""
    from raymix.coordinates.marginal_variance import marginal_variances

    rng = np.random.default_rng(4)
    codes = rng.integers(0, 20, 600)
    x = rng.normal(size=600)
    y = x + rng.normal(0, 0.7, 20)[codes] + rng.normal(size=600)
    data = write(tmp_path, y, x, {"g": codes, "twice": 2 * x})  # column twice_id = 2x
    bag = ("x", "twice_id")
    residual = ResidualVariance()
    fe = FixedEffectCoordinate(
        FixedEffect(name="fe", feature_bag=bag, task="linear", l2=0.0, variance="full"),
        build_source(data, Columns(), split="train", bag=bag, task="linear"),
        None, None, LinearWorker(), residual,
    )  # fmt: skip
    re = RandomEffectCoordinate(
        RandomEffect(name="g", entity="g_id", task="linear", l2=2.0, regularize_intercept=True),
        build_source(data, Columns(), split="train", bag=None, entity="g_id", task="linear"),
        None, None, pool=LocalHolders(2), seed=0, residual=residual,
    )  # fmt: skip
    state = load([fe, re])
    descend([fe, re], state, passes=3, metric="rmse")
    found = marginal_variances(fe, [re], {"g": (2.0, None)})
    assert found == "the design is rank deficient (give the fixed effect an l2, or drop a column)"
    ridge = fe.spec.model_copy(update={"l2": 1.0})
    fe.spec = ridge
    assert not isinstance(marginal_variances(fe, [re], {"g": (2.0, None)}), str)
