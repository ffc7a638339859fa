"""The exact linear mixed model against closed forms, statsmodels' MixedLM and planted sets."""

import warnings

import numpy as np
import pytest

from raymix.errors import FitError
from raymix.solvers.mixed_linear import Factor, fit_linear_mixed, one_way_anova_ml

MixedLM = pytest.importorskip("statsmodels.regression.mixed_linear_model").MixedLM


def crossed(seed, a=25, b=20, rows=600, sigmas=(1.2, 0.7), sigma_e=1.0, slope_sigma=None):
    """Rows of a crossed design: factor 1 with ``a`` levels, factor 2 with ``b``, two fixed
    effects (intercept, x); with ``slope_sigma`` factor 1 also has a random slope on x."""
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, a, rows), rng.integers(0, b, rows)
    x = rng.normal(size=rows)
    u1, u2 = rng.normal(0, sigmas[0], a), rng.normal(0, sigmas[1], b)
    y = 1.0 + 0.5 * x + u1[g1] + u2[g2] + rng.normal(0, sigma_e, rows)
    if slope_sigma is not None:
        y += rng.normal(0, slope_sigma, a)[g1] * x
    return y, np.column_stack([np.ones(rows), x]), g1, g2, x


def dummies(codes):
    return (codes[:, None] == np.arange(codes.max() + 1)).astype(float)


def statsmodels_crossed(y, X, components, reml=False):
    """MixedLM with every row in one group and one variance component per design block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MixedLM(y, X, groups=np.zeros(y.size, int), exog_vc={k: {0: Z} for k, Z in components.items()})  # fmt: skip
        return model.fit(reml=reml)


@pytest.mark.parametrize("method", ["ml", "reml"])
@pytest.mark.parametrize("seed", [0, 1])
def test_balanced_one_way_anova_closed_form(method, seed):
    rng = np.random.default_rng(seed)
    a, n = 40, 6
    y = 3.0 + rng.normal(0, 0.8, (a, 1)) + rng.normal(0, 1.3, (a, n))
    fit = fit_linear_mixed(y.ravel(), None, [Factor(np.repeat(np.arange(a), n))], method=method)
    mu, sigma_a2, sigma_e2 = one_way_anova_ml(y, method)
    assert fit.converged
    assert fit.beta[0] == pytest.approx(mu, rel=1e-6)
    assert fit.sigma2[0] == pytest.approx(sigma_a2, rel=1e-6)
    assert fit.sigma_e2 == pytest.approx(sigma_e2, rel=1e-6)


def test_one_factor_matches_statsmodels_ml():
    y, X, g1, _, _ = crossed(3)
    fit = fit_linear_mixed(y, X, [Factor(g1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MixedLM(y, X, groups=g1).fit(reml=False)
    assert fit.sigma_e2 == pytest.approx(ref.scale, rel=1e-3)
    assert fit.sigma2[0] == pytest.approx(float(np.asarray(ref.cov_re)[0, 0]), rel=1e-3)
    np.testing.assert_allclose(fit.beta, ref.fe_params, rtol=1e-3)
    np.testing.assert_allclose(fit.beta_se, ref.bse_fe, rtol=1e-3)
    # the conditional means are MixedLM's random effects
    blups = np.array([np.asarray(ref.random_effects[k])[0] for k in sorted(ref.random_effects)])
    np.testing.assert_allclose(fit.blups[0][:, 0], blups, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crossed_design_matches_statsmodels(seed, reml):
    y, X, g1, g2, _ = crossed(seed)
    fit = fit_linear_mixed(y, X, [Factor(g1), Factor(g2)], method="reml" if reml else "ml")
    ref = statsmodels_crossed(y, X, {"a": dummies(g1), "b": dummies(g2)}, reml=reml)
    assert fit.sigma_e2 == pytest.approx(ref.scale, rel=1e-3)
    np.testing.assert_allclose([fit.sigma2[0], fit.sigma2[1]], ref.vcomp, rtol=1e-3)
    np.testing.assert_allclose(fit.beta, ref.fe_params, rtol=1e-3)
    assert -fit.deviance / 2 == pytest.approx(ref.llf, rel=1e-6)


def test_fixed_effect_errors_and_conditional_variances_are_the_gls_ones():
    """vcov(beta) = sigma_e^2 (X' V^-1 X)^-1 and Var(u | y) = Lambda - Lambda Z' V^-1 Z Lambda
    (times sigma_e^2), written densely from the estimated components."""
    y, X, g1, g2, _ = crossed(4, a=12, b=9, rows=200)
    fit = fit_linear_mixed(y, X, [Factor(g1), Factor(g2)])
    Z = np.hstack([dummies(g1), dummies(g2)])
    lam = np.concatenate([np.full(12, fit.sigma2[0]), np.full(9, fit.sigma2[1])])
    V = fit.sigma_e2 * np.eye(y.size) + (Z * lam) @ Z.T
    Vi = np.linalg.inv(V)
    np.testing.assert_allclose(fit.beta_se, np.sqrt(np.diag(np.linalg.inv(X.T @ Vi @ X))), rtol=1e-8)  # fmt: skip
    cond = lam - np.einsum("ij,jk,ki->i", (Z * lam).T, Vi, Z * lam)
    got = np.concatenate([fit.conditional_variances[0][:, 0], fit.conditional_variances[1][:, 0]])
    np.testing.assert_allclose(got, cond, rtol=1e-8)


def test_per_feature_variances_match_statsmodels():
    """(1 + x || g) + (1 | h): independent intercept and slope variances of g."""
    y, X, g1, g2, x = crossed(5, slope_sigma=0.4, rows=800)
    Z = np.column_stack([np.ones_like(x), x])
    fit = fit_linear_mixed(y, X, [Factor(g1, Z, per_feature=True), Factor(g2)])
    ref = statsmodels_crossed(
        y, X, {"a": dummies(g1), "a_x": dummies(g1) * x[:, None], "b": dummies(g2)}
    )
    np.testing.assert_allclose([*fit.sigma2[0], fit.sigma2[1]], ref.vcomp, rtol=1e-3)
    assert fit.sigma_e2 == pytest.approx(ref.scale, rel=1e-3)
    np.testing.assert_allclose(fit.beta, ref.fe_params, rtol=1e-3)


def test_planted_crossed_sets_are_unbiased_within_sampling_error():
    """Over 12 seeds the ML estimates centre on the planted values: each mean is within 3
    standard errors of it (ML's own bias, ``-sigma^2/q``, is well inside)."""
    planted = np.array([1.0**2, 0.6**2, 0.8**2])  # sigma_1^2, sigma_2^2, sigma_e^2
    estimates = []
    for seed in range(12):
        y, X, g1, g2, _ = crossed(100 + seed, a=60, b=50, rows=1500, sigmas=(1.0, 0.6), sigma_e=0.8)  # fmt: skip
        fit = fit_linear_mixed(y, X, [Factor(g1), Factor(g2)])
        estimates.append([fit.sigma2[0], fit.sigma2[1], fit.sigma_e2])
    estimates = np.array(estimates)
    mean, se = estimates.mean(0), estimates.std(0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(np.abs(mean - planted) < 3 * se), (mean, se)


def test_per_feature_option_recovers_different_planted_sigmas():
    estimates = []
    for seed in range(8):
        y, X, g1, g2, x = crossed(200 + seed, a=80, b=30, rows=2000, sigmas=(1.0, 0.5), slope_sigma=0.3)  # fmt: skip
        Z = np.column_stack([np.ones_like(x), x])
        fit = fit_linear_mixed(y, X, [Factor(g1, Z, per_feature=True), Factor(g2)])
        estimates.append(fit.sigma2[0])
        shared = fit_linear_mixed(y, X, [Factor(g1, Z), Factor(g2)])
        assert 0.3**2 < shared.sigma2[0] < 1.0  # one variance for both: in between
    estimates = np.array(estimates)
    mean, se = estimates.mean(0), estimates.std(0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(np.abs(mean - [1.0, 0.09]) < 3 * se + 0.02), (mean, se)


def test_a_variance_of_zero_is_found_at_the_boundary():
    rng = np.random.default_rng(7)
    a, n = 30, 5
    y = rng.normal(0, 1.0, (a, n))  # no group effect: ML's estimate is 0 when MSA < MSE
    while one_way_anova_ml(y)[1] > 0:
        y = rng.normal(0, 1.0, (a, n))
    fit = fit_linear_mixed(y.ravel(), None, [Factor(np.repeat(np.arange(a), n))])
    assert fit.sigma2[0] < 1e-8
    assert fit.sigma_e2 == pytest.approx(one_way_anova_ml(y)[2], rel=1e-6)


def test_weights_are_precisions_of_the_rows():
    """Row ``i`` has variance ``sigma_e^2 / w_i``: weights three times larger give a
    ``sigma_e^2`` three times larger and the same random-effect variances."""
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(20), 4)
    y = rng.normal(0, 1, 20)[g] + rng.normal(0, 1, g.size)
    w = rng.uniform(0.5, 2.0, g.size)
    fit = fit_linear_mixed(y, None, [Factor(g)], weights=w)
    scaled = fit_linear_mixed(y, None, [Factor(g)], weights=3 * w)
    assert scaled.sigma_e2 == pytest.approx(3 * fit.sigma_e2, rel=1e-6)
    assert scaled.sigma2[0] == pytest.approx(fit.sigma2[0], rel=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(FitError):
        fit_linear_mixed(np.zeros(3), None, [])
    with pytest.raises(Exception, match="method"):
        fit_linear_mixed(np.zeros(3), None, [Factor(np.zeros(3, int))], method="bayes")
