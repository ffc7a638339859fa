"""Where the intercept sits in the solvers' parameter vectors: the one place that says so.

- The fixed effect (:mod:`raymix.solvers.glm`, GDMix's fixed-effect order): ``theta =
  [coef (d,), b]``, the intercept **last** (:data:`GLM_INTERCEPT`); without an intercept
  ``theta = coef``. Its variances come in the same order.
- A random effect's entity (:mod:`raymix.solvers.entity`, GDMix's per-entity order):
  ``theta_e = [b, w]``, the intercept **first** (:data:`ENTITY_INTERCEPT`), and so an
  entity's slice of ``EntityModels.variances`` is ``[var(b), var(w)...]``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ENTITY_INTERCEPT",
    "GLM_INTERCEPT",
    "entity_intercept_slots",
    "entity_variance_ptr",
    "glm_coef_intercept",
    "glm_penalized",
    "glm_theta",
]

#: position of the intercept in the fixed effect's theta (with fit_intercept)
GLM_INTERCEPT = -1
#: position of the intercept in an entity's theta and in its slice of the variances
ENTITY_INTERCEPT = 0


def glm_theta(coef, intercept: float, fit_intercept: bool) -> np.ndarray:
    """The fixed effect's theta from ``coef (d,)`` and the intercept (dropped without one)."""
    if fit_intercept:
        return np.concatenate([coef, [intercept]])
    return np.asarray(coef, dtype=np.float64)


def glm_coef_intercept(theta: np.ndarray, fit_intercept: bool) -> tuple[np.ndarray, float]:
    """``(coef, intercept)`` of the fixed effect's theta (a view of ``theta``; 0.0 without an
    intercept)."""
    if fit_intercept:
        return theta[:GLM_INTERCEPT], float(theta[GLM_INTERCEPT])
    return theta, 0.0


def glm_penalized(n_params: int, fit_intercept: bool, regularize_intercept: bool) -> np.ndarray:
    """1.0 for each entry of the fixed effect's theta that the penalties cover, else 0.0: all
    but an intercept that is not regularized."""
    penalized = np.ones(n_params)
    if fit_intercept and not regularize_intercept and n_params:
        penalized[GLM_INTERCEPT] = 0.0
    return penalized


def entity_variance_ptr(coef_ptr: np.ndarray) -> np.ndarray:
    """Where each entity's slice of the variances starts (and the last one ends): one slot
    per coefficient and one for the intercept, entity ``k`` at ``ptr[k]:ptr[k+1]``."""
    return coef_ptr + np.arange(coef_ptr.size)


def entity_intercept_slots(coef_ptr: np.ndarray) -> np.ndarray:
    """Where each entity's ``var(b)`` sits in the variances."""
    return entity_variance_ptr(coef_ptr)[:-1] + ENTITY_INTERCEPT
