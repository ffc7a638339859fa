"""Per-feature random-effect variances of a linear model (lme4's ``(1 + x || g)``), by EM.

A linear random effect with one variance per coefficient slot: the intercept's ``s_0^2``
and feature ``j``'s ``s_j^2`` (diagonal, independent), with the residual variance
``sigma_e^2``. Each entity's fit is the penalized least squares with the diagonal ridge
``l2_k = sigma_e^2 / s_k^2`` (an :class:`~raymix.solvers.prior.EntityPriors` of mean 0 and
precision ``l2_k``: :func:`feature_priors`). The EM M-step (:func:`next_feature_l2s`) is the
vector form of :func:`raymix.solvers.variance_components.next_linear_l2`::

    sigma_e^2 = (RSS + sum_k l2_k S_k + others) / n,
    s_k^2     = (S_k + sigma_e^2 V_k) / m_k,        l2_k = sigma_e^2 / s_k^2,

with ``S_k = sum_e theta_ek^2`` over the ``m_k`` entities that have slot ``k`` and ``V_k``
the sum of their relative posterior variances (``variance="full"``: ``diag H^-1`` of the
unscaled objective, so ``sigma_e^2 V_k`` is the sum of ``Var(theta_ek | y)``): the sum over
entities of ``E[theta_k^2 | y] = theta_k^2 + Var(theta_k | y)``. Its fixed point is the ML
of the model (one factor, fixed effects known): checked against
:mod:`raymix.solvers.mixed_linear`'s exact fit with ``per_feature`` factors.

Slot 0 is the intercept, slot ``1 + j`` feature ``j``. A slot no entity has keeps its
``l2``; the intercept slot without ``regularize_intercept`` is not estimated (l2 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raymix.solvers.layout import entity_intercept_slots, entity_variance_ptr
from raymix.solvers.prior import EntityPriors

__all__ = [
    "FeatureMoments",
    "FeatureStep",
    "feature_moments",
    "feature_priors",
    "next_feature_l2s",
    "solve_l2s",
]


@dataclass(frozen=True)
class FeatureMoments:
    """Per slot (``(1 + dim,)``): ``squares`` ``S_k``, ``variances`` ``V_k``, ``counts``
    ``m_k``; the weighted ``rss`` of the whole model and its ``rows`` (weight > 0)."""

    squares: np.ndarray
    variances: np.ndarray
    counts: np.ndarray
    rss: float
    rows: int

    def __add__(self, other: FeatureMoments) -> FeatureMoments:
        return FeatureMoments(
            self.squares + other.squares,
            self.variances + other.variances,
            self.counts + other.counts,
            self.rss + other.rss,
            self.rows + other.rows,
        )


def feature_moments(
    models, dim: int, regularize_intercept: bool, residuals: np.ndarray, weights: np.ndarray
) -> FeatureMoments:
    """The :class:`FeatureMoments` of ``models`` (fitted with ``variance="full"``) over
    ``dim`` features, and of the rows' ``residuals`` (label - offset - score)."""
    rss, rows = float(np.sum(weights * residuals**2)), int(np.count_nonzero(weights > 0))
    squares, variances = np.zeros(1 + dim), np.zeros(1 + dim)
    counts = np.zeros(1 + dim, np.int64)
    if models is None or models.n_entities == 0:
        return FeatureMoments(squares, variances, counts, rss, rows)
    if models.variances is None:
        raise ValueError("feature_moments needs models fitted with variance='full'")
    slot = 1 + np.asarray(models.coef_index, np.int64)
    is_coef = np.ones(models.variances.size, bool)
    is_coef[entity_intercept_slots(models.coef_ptr)] = False
    squares += np.bincount(slot, models.coef_value**2, 1 + dim)
    variances += np.bincount(slot, models.variances[is_coef], 1 + dim)
    counts += np.bincount(slot, minlength=1 + dim)
    if regularize_intercept:
        squares[0] = float(np.sum(models.intercepts**2))
        variances[0] = float(np.sum(models.variances[~is_coef]))
        counts[0] = models.n_entities
    return FeatureMoments(squares, variances, counts, rss, rows)


@dataclass(frozen=True)
class FeatureStep:
    """An EM step's result: the next ``l2s`` per slot and the estimates they came from
    (``sigma2`` NaN for slots no entity has); ``penalty``: ``sum_k l2_k S_k`` at the
    step's ``l2s`` (what the other random effects' ``sigma_e^2`` needs)."""

    l2s: np.ndarray
    sigma_e2: float
    sigma2: np.ndarray
    penalty: float


def next_feature_l2s(moments: FeatureMoments, l2s: np.ndarray, others: float = 0.0) -> FeatureStep:
    """The M-step of the module docstring at the fit's ``l2s`` (``others``: the other
    random effects' penalties). Slots without entities, or whose estimate is not > 0,
    keep their ``l2``."""
    m, l2s = moments, np.asarray(l2s, np.float64)
    penalty = float(l2s @ m.squares)
    if m.rows == 0:
        return FeatureStep(l2s, float("nan"), np.full(l2s.size, np.nan), penalty)
    sigma_e2 = (m.rss + penalty + others) / m.rows
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma2 = np.where(m.counts > 0, (m.squares + sigma_e2 * m.variances) / m.counts, np.nan)
        ok = (sigma2 > 0) & (sigma_e2 > 0)
        new = np.where(ok, sigma_e2 / np.where(ok, sigma2, 1.0), l2s)
    return FeatureStep(new, float(sigma_e2), sigma2, penalty)


def feature_priors(problem, l2s: np.ndarray) -> EntityPriors:
    """The diagonal ridge ``l2s`` (per slot) as an :class:`EntityPriors` of mean 0 over the
    features each entity's rows have, for ``fit_entities(prior=...)``; the intercept's
    precision is ``l2s[0]``."""
    l2s = np.asarray(l2s, np.float64)
    ptr = np.asarray(problem.entity_ptr, np.int64)
    E, X = ptr.size - 1, problem.X.tocsr()
    entity_of_nz = np.repeat(np.repeat(np.arange(E), np.diff(ptr)), np.diff(X.indptr))
    dim = X.shape[1]
    keys = np.unique(entity_of_nz * (dim + 1) + X.indices)
    entity, feature = keys // (dim + 1), keys % (dim + 1)
    coef_ptr = np.concatenate([[0], np.cumsum(np.bincount(entity, minlength=E))])
    var_ptr = entity_variance_ptr(coef_ptr)
    precision = np.empty(int(var_ptr[-1]))
    precision[entity_intercept_slots(coef_ptr)] = l2s[0]
    is_coef = np.ones(precision.size, bool)
    is_coef[entity_intercept_slots(coef_ptr)] = False
    precision[is_coef] = l2s[1 + feature]
    return EntityPriors(
        coef_ptr=coef_ptr,
        coef_index=feature,
        mean=np.zeros(precision.size),
        precision=precision,
        has_intercept=np.ones(E, bool),
    )


def solve_l2s(em_step, start: np.ndarray, tol: float = 1e-7, max_iter: int = 300):
    """The fixed point of ``em_step`` (``l2s -> next l2s``, :func:`next_feature_l2s` over a
    refit) from ``start``, on ``log l2``, accelerated by SQUAREM (Varadhan & Roland 2008:
    two EM steps extrapolated along their difference, then one EM step from there; plain EM
    over variance components creeps). Returns ``(l2s, EM steps)``: converged when no
    ``log l2`` moves by more than ``tol`` in an EM step."""

    def step(u: np.ndarray) -> np.ndarray:
        return np.log(np.asarray(em_step(np.exp(u)), np.float64))

    u, calls = np.log(np.asarray(start, np.float64)), 0
    while calls < max_iter:
        u1 = step(u)
        calls += 1
        r = u1 - u
        if np.max(np.abs(r), initial=0.0) < tol:
            return np.exp(u1), calls
        u2 = step(u1)
        calls += 1
        v = u2 - 2.0 * u1 + u
        nv = float(np.linalg.norm(v))
        alpha = -1.0 if nv == 0 else min(-1.0, -float(np.linalg.norm(r)) / nv)
        jump = np.clip(u - 2.0 * alpha * r + alpha * alpha * v, u - 5.0, u + 5.0)
        u = jump if np.all(np.isfinite(jump)) else u2
    return np.exp(u), calls
