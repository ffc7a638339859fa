"""Where the intercept sits: last in the fixed effect's theta, first in an entity's."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from raymix.solvers import layout
from raymix.solvers.entity import EntityProblem, fit_entities
from raymix.solvers.glm import fit_glm


def test_glm_theta_round_trips_with_the_intercept_last():
    coef = np.array([1.0, 2.0])
    theta = layout.glm_theta(coef, 3.0, True)
    np.testing.assert_array_equal(theta, [1.0, 2.0, 3.0])
    assert theta[layout.GLM_INTERCEPT] == 3.0
    got, b = layout.glm_coef_intercept(theta, True)
    np.testing.assert_array_equal(got, coef)
    assert b == 3.0 and type(b) is float
    np.testing.assert_array_equal(layout.glm_theta(coef, 0.0, False), coef)
    got, b = layout.glm_coef_intercept(coef, False)
    assert got is coef and b == 0.0


def test_the_fixed_effect_fits_in_that_order():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))
    y = X @ [1.0, -2.0] + 5.0 + 0.01 * rng.standard_normal(200)
    fit = fit_glm(X, y, task="linear")
    assert abs(fit.theta[layout.GLM_INTERCEPT] - 5.0) < 0.01
    np.testing.assert_array_equal(fit.theta, layout.glm_theta(fit.coef, fit.intercept, True))


def test_only_an_unregularized_intercept_is_left_unpenalized():
    np.testing.assert_array_equal(layout.glm_penalized(3, True, False), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(layout.glm_penalized(3, True, True), np.ones(3))
    np.testing.assert_array_equal(layout.glm_penalized(3, False, False), np.ones(3))
    assert layout.glm_penalized(0, True, False).size == 0


def test_entity_variances_hold_var_b_first():
    coef_ptr = np.array([0, 2, 2, 5])
    np.testing.assert_array_equal(layout.entity_variance_ptr(coef_ptr), [0, 3, 4, 8])
    np.testing.assert_array_equal(layout.entity_intercept_slots(coef_ptr), [0, 3, 4])
    # the solver agrees: with the slopes held fixed at 0 by a huge l2, var(b) is 1 / sum(w p(1-p))
    X = sp.csr_matrix(np.array([[1.0], [0.0], [1.0], [1.0]]))
    problem = EntityProblem(np.array([0, 2, 4]), X, np.array([1.0, 0.0, 1.0, 0.0]))
    models = fit_entities(problem, l2=1e12, variance="simple", tol=1e-12)
    var_b = models.variances[models.intercept_slots]
    np.testing.assert_array_equal(
        models.intercept_slots, layout.entity_intercept_slots(models.coef_ptr)
    )
    p = 1 / (1 + np.exp(-models.intercepts))
    np.testing.assert_allclose(var_b, 1 / (2 * p * (1 - p)), rtol=1e-6)
