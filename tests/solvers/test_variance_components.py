"""l2="auto": the random-effect variance estimated by Laplace EM recovers the planted one."""

import numpy as np
import pytest
import scipy.sparse as sp

from raymix.solvers.entity import EntityProblem, fit_entities
from raymix.solvers.variance_components import next_l2, prior_moments, solve_l2


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
