"""l2="auto": the random-effect variance estimated by Laplace EM recovers the planted one."""

import numpy as np
import pytest
import scipy.sparse as sp

from raymix.solvers.entity import EntityProblem, fit_entities
from raymix.solvers.variance_components import (
    linear_moments,
    next_l2,
    next_linear_l2,
    prior_moments,
    shift_variance,
    solve_l2,
)


def planted(sigma2: float, entities=300, rows=60, dim=2, seed=0) -> EntityProblem:
    """Logistic rows of entities whose intercept and slopes are N(0, sigma2) draws."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, np.sqrt(sigma2), size=(entities, dim + 1))
    X = rng.normal(size=(entities * rows, dim))
    e = np.repeat(np.arange(entities), rows)
    logit = theta[e, 0] + np.einsum("ij,ij->i", X, theta[e, 1:])
    y = (rng.random(e.size) < 1 / (1 + np.exp(-logit))).astype(float)
    return EntityProblem(np.arange(entities + 1) * rows, sp.csr_matrix(X), y)


def em_step(problem, regularize_intercept=True):
    def step(l2):
        models = fit_entities(
            problem, l2=l2, regularize_intercept=regularize_intercept, variance="full"
        )
        return next_l2([prior_moments(models, regularize_intercept)], l2)

    return step


@pytest.mark.parametrize("sigma2", [0.1, 1.0])
def test_estimated_variance_is_near_the_planted_one(sigma2):
    # 900 draws: ~5% sampling error; 300 binary rows per entity keep Laplace's bias small
    l2, steps = solve_l2(em_step(planted(sigma2, rows=300)), 1.0)
    assert 1 / l2 == pytest.approx(sigma2, rel=0.15)
    assert steps <= 12


def test_few_rows_per_entity_underestimate_the_variance_as_laplace_does():
    small = 1 / solve_l2(em_step(planted(1.0, rows=60)), 1.0)[0]
    large = 1 / solve_l2(em_step(planted(1.0, rows=1000)), 1.0)[0]
    assert 0.6 < small < large < 1.1


def test_solution_is_a_fixed_point_of_the_em_step():
    step = em_step(planted(0.3, entities=100))
    l2, _ = solve_l2(step, 5.0, tol=1e-6)
    assert step(l2) == pytest.approx(l2, rel=1e-5)


def test_moments_cover_only_penalized_coefficients():
    problem = planted(0.5, entities=20, rows=30)
    models = fit_entities(problem, l2=2.0, variance="full")
    with_b = prior_moments(models, True)
    without_b = prior_moments(models, False)
    assert with_b[1] == without_b[1] + 20 and with_b[0] > without_b[0]
    assert next_l2([(0.0, 0)], 3.0) == 3.0


def test_shift_variance_of_the_mean_intercepts():
    assert shift_variance(5.0, []) == 0.0  # one factor: no shift
    assert shift_variance(5.0, [0.0]) == pytest.approx(1 / 5.0)  # beside free intercepts
    # two factors: the shift s, -s has precision D_a + D_b, seen alike by both
    assert shift_variance(4.0, [12.0]) == pytest.approx(1 / 16.0)
    assert shift_variance(12.0, [4.0]) == pytest.approx(1 / 16.0)
    # three: the conditional variance of a Gaussian N(0, D^-1) given sum s_k = 0
    D = np.array([2.0, 3.0, 7.0])
    cov = np.diag(1 / D) - np.outer(1 / D, 1 / D) / np.sum(1 / D)
    assert shift_variance(D[1], [D[0], D[2]]) == pytest.approx(cov[1, 1])


def test_linear_em_on_one_factor_is_the_closed_form_ml():
    """A balanced one-way design, random intercepts around a known mean (no fixed effect):
    the fixed point of next_linear_l2 is the ML of the one-way model with mu known."""
    rng = np.random.default_rng(0)
    a, n = 30, 6
    y = rng.normal(0, 0.8, a)[:, None] + rng.normal(0, 1.0, (a, n))
    problem = EntityProblem(np.arange(a + 1) * n, sp.csr_matrix((a * n, 1)), y.ravel())

    def step(l2):
        models = fit_entities(
            problem, task="linear", l2=l2, regularize_intercept=True, variance="full"
        )
        residuals = y.ravel() - np.repeat(models.intercepts, n)
        moments = linear_moments(models, True, residuals, np.ones(a * n))
        return next_linear_l2(moments, l2)

    l2, _ = solve_l2(lambda l2: step(l2).l2, tol=1e-10, max_iter=200)
    last = step(l2)
    # mu = 0 known: sigma_e^2 = within mean square, sigma_a^2 = mean(ybar^2) - sigma_e^2 / n
    within = float(((y - y.mean(axis=1, keepdims=True)) ** 2).sum()) / (a * (n - 1))
    assert last.sigma_e2 == pytest.approx(within, rel=1e-8)
    assert last.sigma2 == pytest.approx(float((y.mean(axis=1) ** 2).mean()) - within / n, rel=1e-8)
    assert last.l2 == pytest.approx(last.sigma_e2 / last.sigma2, rel=1e-12)
