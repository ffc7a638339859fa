"""The fixed-effect worker's decisions, without Ray: options, polish, threshold, variances."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from raymix import LBFGS, FixedEffect
from raymix.coordinates.fixed_effect_fit import (
    Objective,
    fit_fixed_effect,
    lbfgs_options,
    linear_scores,
    wants_polish,
)
from raymix.solvers.glm import GLMLoss
from raymix.solvers.owlqn import LBFGSOptions


def problem(n=600, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.array([1.0, 3.0, 0.5, 2.0, 0.01])
    beta = np.array([0.8, -0.3, 1.5, 0.2, 0.0])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ beta + 0.4)))).astype(float)
    w = rng.uniform(0.5, 2.0, n)
    return X, y, w


def objective_of(loss: GLMLoss) -> Objective:
    return Objective(loss.value_grad, loss.hessian, loss.n_params, loss.column_stats())


def spec(**fields) -> FixedEffect:
    return FixedEffect(name="global", feature_bag="g", **fields)


def test_options_are_the_recipe_solver_fields():
    solver = LBFGS(max_iter=7, history=3, tolerance=1e-9, gtol=1e-4)
    assert lbfgs_options(solver) == LBFGSOptions(max_iter=7, history=3, tolerance=1e-9, gtol=1e-4)


@pytest.mark.parametrize(
    "fields, converged, n_params, expected",
    [
        ({}, True, 6, True),
        ({}, False, 6, False),  # never past max_iter
        ({"l1": 0.5}, True, 6, False),  # not smooth
        ({"solver": LBFGS(polish=False)}, True, 6, False),
        ({"solver": LBFGS(polish_max_params=5)}, True, 6, False),  # too many parameters
        ({}, True, 0, False),
    ],
)
def test_polish_only_a_converged_smooth_small_fit(fields, converged, n_params, expected):
    assert wants_polish(spec(**fields), converged, n_params) is expected


def test_fit_is_scikit_learns_logistic_regression():
    X, y, w = problem()
    l2 = 2.0
    loss = GLMLoss(X, y, weights=w)
    fit = fit_fixed_effect(spec(l2=l2, sparsity_threshold=0), objective_of(loss), None)
    ref = LogisticRegression(C=1 / l2, tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(fit.theta[:-1], ref.coef_[0], atol=1e-6)
    assert fit.theta[-1] == pytest.approx(ref.intercept_[0], abs=1e-6)
    summary = fit.summary
    assert summary.converged and summary.newton_steps > 0
    assert summary.replayed_evaluations == 0 and fit.variances is None
    np.testing.assert_allclose(
        linear_scores(X, fit.theta, True), X @ fit.theta[:-1] + fit.theta[-1], rtol=1e-12
    )


def test_threshold_zeroes_small_values_and_keeps_the_others():
    X, y, w = problem()
    loss = GLMLoss(X, y, weights=w)
    whole = fit_fixed_effect(spec(sparsity_threshold=0), objective_of(loss), None).theta
    cut = 0.25
    kept = fit_fixed_effect(spec(sparsity_threshold=cut), objective_of(loss), None).theta
    small = np.abs(whole) <= cut
    assert small.any() and not small.all()
    np.testing.assert_array_equal(kept[small], 0.0)
    np.testing.assert_array_equal(kept[~small], whole[~small])


@pytest.mark.parametrize("mode", ["simple", "full"])
def test_variances_are_those_of_the_penalized_hessian(mode):
    X, y, w = problem()
    l2 = 0.5
    loss = GLMLoss(X, y, weights=w)
    fit = fit_fixed_effect(spec(l2=l2, variance=mode), objective_of(loss), None)
    penalized = np.array([1, 1, 1, 1, 1, 0.0])  # the intercept (last) is not penalized
    H = loss.hessian(fit.theta) + np.diag(l2 * penalized)
    expected = 1 / np.diag(H) if mode == "simple" else np.diag(np.linalg.inv(H))
    np.testing.assert_allclose(fit.variances, expected, rtol=1e-8)


def test_no_intercept_and_l1():
    X, y, w = problem()
    loss = GLMLoss(X, y, weights=w, fit_intercept=False)
    fit = fit_fixed_effect(spec(fit_intercept=False, l1=30.0), objective_of(loss), None)
    assert fit.theta.shape == (5,) and fit.summary.newton_steps == 0  # L1: no polish
    assert (fit.theta == 0).any()  # OWL-QN zeroes some coefficients


def test_a_prior_is_the_explicit_posterior_mode_and_its_variances():
    from scipy.optimize import minimize

    from raymix.solvers.prior import Prior

    X, y, w = problem()
    loss = GLMLoss(X, y, weights=w)
    # a prior on features 0, 2 and the intercept; features 1, 3, 4 keep the ridge l2
    prior = Prior(np.array([0, 2]), np.array([0.3, 0.5, 1.0]), np.array([4.0, 2.0, 9.0]))
    l2 = 1.5
    fit = fit_fixed_effect(spec(l2=l2, sparsity_threshold=0, variance="full"), objective_of(loss), None, prior=prior)  # fmt: skip
    mu = np.array([0.5, 0, 1.0, 0, 0, 0.3])  # theta order: coef..., intercept last
    P = np.array([2.0, l2, 9.0, l2, l2, 4.0])

    def f(theta):
        value, grad = loss.value_grad(theta)
        r = theta - mu
        return value + 0.5 * r @ (P * r), grad + P * r

    best = minimize(f, np.zeros(6), jac=True, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})  # fmt: skip
    np.testing.assert_allclose(fit.theta, best.x, atol=1e-7)
    assert fit.summary.newton_steps > 0  # polished on the prior's objective
    np.testing.assert_allclose(fit.variances, np.diag(np.linalg.inv(loss.hessian(fit.theta) + np.diag(P))), rtol=1e-8)  # fmt: skip
