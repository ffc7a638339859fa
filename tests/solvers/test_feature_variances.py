"""Per-feature linear random-effect variances by EM against the exact mixed model."""

import numpy as np
import pytest
import scipy.sparse as sp

from raymix.solvers.entity import EntityProblem, fit_entities
from raymix.solvers.feature_variances import (
    feature_moments,
    feature_priors,
    next_feature_l2s,
    solve_l2s,
)
from raymix.solvers.mixed_linear import Factor, fit_linear_mixed


def planted(seed, a=60, n=15, sigmas=(1.0, 0.3, 1.5), sigma_e=0.8):
    """One factor of ``a`` levels, ``n`` rows each, an intercept and two slopes with
    their own planted sigmas; no fixed effect."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(a * n, 2)) * [1.0, 2.0]
    u = rng.normal(size=(a, 3)) * sigmas
    g = np.repeat(np.arange(a), n)
    y = u[g, 0] + (u[g, 1:] * x).sum(axis=1) + rng.normal(0, sigma_e, a * n)
    return y, x, g


def one_factor(y, x, g):
    a, n = g.max() + 1, y.size // (g.max() + 1)
    return EntityProblem(np.arange(a + 1) * n, sp.csr_matrix(x), y)


def em_step(problem, y, x, g, l2s):
    """One EM step at ``l2s``: the per-slot ridge fit, its moments, the M-step."""
    models = fit_entities(
        problem, task="linear", l2=1.0, regularize_intercept=True, variance="full",
        prior=feature_priors(problem, l2s), tol=1e-12,
    )  # fmt: skip
    theta = np.zeros((g.max() + 1, x.shape[1]))
    rows = np.repeat(np.arange(g.max() + 1), np.diff(models.coef_ptr))
    theta[rows, models.coef_index] = models.coef_value
    residuals = y - models.intercepts[g] - (theta[g] * x).sum(axis=1)
    moments = feature_moments(models, x.shape[1], True, residuals, np.ones(y.size))
    return next_feature_l2s(moments, l2s), models


def em(y, x, g, iters=3000, tol=1e-11):
    problem = one_factor(y, x, g)
    l2s = np.ones(1 + x.shape[1])
    for _ in range(iters):
        step, models = em_step(problem, y, x, g, l2s)
        if np.max(np.abs(np.log(step.l2s / l2s))) < tol:
            return step, models
        l2s = step.l2s
    return step, models


@pytest.mark.parametrize("seed", [0, 1])
def test_em_fixed_point_is_the_exact_per_feature_ml(seed):
    y, x, g = planted(seed)
    step, models = em(y, x, g)
    ref = fit_linear_mixed(
        y, np.zeros((y.size, 0)), [Factor(g, np.column_stack([np.ones(y.size), x]), per_feature=True)]
    )  # fmt: skip
    assert ref.converged
    assert step.sigma_e2 == pytest.approx(ref.sigma_e2, rel=1e-6)
    np.testing.assert_allclose(step.sigma2, ref.sigma2[0], rtol=1e-5)
    np.testing.assert_allclose(models.intercepts, ref.blups[0][:, 0], rtol=1e-5, atol=1e-8)


def test_per_feature_recovers_different_planted_sigmas_over_seeds():
    planted_sigmas = np.array([1.0, 0.3, 1.5])
    estimates = np.array([np.sqrt(em(*planted(s, a=120), tol=1e-8)[0].sigma2) for s in range(6)])
    mean, se = estimates.mean(axis=0), estimates.std(axis=0, ddof=1) / np.sqrt(len(estimates))
    assert np.all(np.abs(mean - planted_sigmas) < 4 * se + 0.03)


def test_moments_skip_slots_no_entity_has_and_keep_their_l2():
    y, x, g = planted(2, a=10, n=8)
    x[:, 1] = 0.0
    problem = EntityProblem(np.arange(11) * 8, sp.csr_matrix(x), y)
    l2s = np.array([1.0, 2.0, 3.0])
    models = fit_entities(problem, task="linear", regularize_intercept=True, variance="full", prior=feature_priors(problem, l2s))  # fmt: skip
    moments = feature_moments(models, 2, True, y, np.ones(y.size))
    assert moments.counts.tolist() == [10, 10, 0]
    step = next_feature_l2s(moments, l2s)
    assert step.l2s[2] == 3.0 and np.isnan(step.sigma2[2])
    assert step.penalty == pytest.approx(float(l2s @ moments.squares))


def test_one_shared_variance_cannot_fit_the_planted_sigmas():
    """The exact ML with one shared sigma sits between the planted ones, and the likelihood
    ratio for the per-feature model is far beyond chi2(2)'s 0.999 quantile (13.8)."""
    y, x, g = planted(0, a=120)
    Z, none = np.column_stack([np.ones(y.size), x]), np.zeros((y.size, 0))
    shared = fit_linear_mixed(y, none, [Factor(g, Z)])
    per = fit_linear_mixed(y, none, [Factor(g, Z, per_feature=True)])
    assert shared.deviance - per.deviance > 13.8
    assert 0.3**2 * 2 < shared.sigma2[0] < 1.5**2 / 1.5
    step, _ = em(y, x, g, tol=1e-8)
    np.testing.assert_allclose(np.sqrt(step.sigma2), [1.0, 0.3, 1.5], rtol=0.25)


def test_squarem_reaches_the_em_fixed_point_in_far_fewer_steps():
    y, x, g = planted(3)
    problem = one_factor(y, x, g)
    l2s, calls = solve_l2s(
        lambda l2s: em_step(problem, y, x, g, l2s)[0].l2s, np.ones(3), tol=1e-10, max_iter=500
    )
    ref = fit_linear_mixed(
        y, np.zeros((y.size, 0)), [Factor(g, np.column_stack([np.ones(y.size), x]), per_feature=True)]
    )  # fmt: skip
    np.testing.assert_allclose(l2s, ref.sigma_e2 / ref.sigma2[0], rtol=1e-6)
    plain, _ = em(y, x, g)
    np.testing.assert_allclose(l2s, plain.l2s, rtol=1e-6)
    assert calls < 100
