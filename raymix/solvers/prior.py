"""Gaussian priors on a GLM's coefficients: yesterday's model as today's regularizer.

A prior on a model with parameters ``theta = [b, w]`` (the intercept first, as an entity's
theta; :mod:`raymix.solvers.layout`) replaces the ridge term of the objective by

    (1/2) (theta - mu)' P (theta - mu),

where ``mu`` is the prior mean and ``P`` the prior precision: diagonal (Photon ML's
incremental training, ``P_kk = weight / sigma_k^2``) or full (``P = weight Sigma^-1``, the
previous fit's whole posterior). The coefficients the prior does not cover (new features, new
entities, an intercept the previous model did not have) keep the coordinate's ridge: mean 0,
precision ``l2`` (the intercept: 0, or ``l2`` with ``regularize_intercept``). Plain L2 is
the special case ``mu = 0``, ``P = l2 I``. An L1 term, if any, is added unchanged.

``weight`` multiplies the precision (Photon ML's incremental weight) and ``forgetting`` in
``[0, 1)`` inflates the variances by ``1/(1 - forgetting)`` (a forgetting factor, as in
Lambda Learner's sequential updates): ``P = weight (1 - forgetting) Sigma^-1``.

For linear regression the posterior is exact: a fit on day 1 with ``variance`` giving the
full covariance, then a fit on day 2 with that prior, lands where one fit on days 1 + 2 does.

:class:`EntityPriors` holds one prior per entity (ragged, aligned to an
:class:`~raymix.solvers.entity.EntityProblem`'s entities, as ``fit_entities`` takes it);
:class:`Prior` is one model's, the fixed effect's (``minimize_glm`` maps it onto its theta,
the intercept last, with :func:`glm_prior_terms`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raymix.errors import DataError
from raymix.solvers import checks
from raymix.solvers.layout import GLM_INTERCEPT, entity_variance_ptr

__all__ = [
    "EntityPriors",
    "Prior",
    "covariance_ptr",
    "glm_prior_terms",
    "precision_of",
]


def precision_of(variances: np.ndarray, weight: float = 1.0, forgetting: float = 0.0,
                 name: str = "variances") -> np.ndarray:  # fmt: skip
    """``weight (1 - forgetting) / variances``; a variance that is not finite and > 0 is an
    error naming ``name`` and its position."""
    checks.real("prior", "weight", weight, open_low=True)
    checks.real("prior", "forgetting", forgetting)
    if forgetting >= 1.0:
        raise checks.invalid("prior", "forgetting", "a float in the range [0.0, 1.0)", forgetting)
    v = np.asarray(variances, dtype=np.float64)
    bad = ~(np.isfinite(v) & (v > 0))
    if bad.any():
        i = checks.first_row(bad)
        raise DataError(f"a prior variance must be finite and > 0; got {float(v.flat[i])!r}",
                        row=i, column=name)  # fmt: skip
    return weight * (1.0 - forgetting) / v


def covariance_ptr(coef_ptr: np.ndarray) -> np.ndarray:
    """Where each entity's ``(1 + d) x (1 + d)`` matrix starts in a flat array of them."""
    sizes = (np.diff(coef_ptr) + 1) ** 2
    ptr = np.zeros(coef_ptr.size, np.int64)
    np.cumsum(sizes, out=ptr[1:])
    return ptr


@dataclass(frozen=True)
class Prior:
    """One model's prior over ``[b, w_index]``: ``index`` ``(d,)`` ascending feature indices;
    ``mean`` ``(1 + d,)``; ``precision`` ``(1 + d,)`` (diagonal) or ``(1 + d, 1 + d)`` (full,
    symmetric). Without ``has_intercept`` the intercept's entries are ignored."""

    index: np.ndarray
    mean: np.ndarray
    precision: np.ndarray
    has_intercept: bool = True

    def __post_init__(self):
        index = np.ascontiguousarray(self.index, dtype=np.int64)
        mean = np.ascontiguousarray(self.mean, dtype=np.float64)
        precision = np.ascontiguousarray(self.precision, dtype=np.float64)
        q = index.size + 1
        if index.ndim != 1 or (index.size and ((np.diff(index) <= 0).any() or index.min() < 0)):
            raise DataError("must be ascending feature indices >= 0", column="prior.index")
        if mean.shape != (q,):
            raise checks.shape_error("prior.mean", mean.shape, (q,))
        if precision.shape not in ((q,), (q, q)):
            raise checks.shape_error("prior.precision", precision.shape, f"({q},) or ({q}, {q})")
        checks.finite(mean, "prior.mean")
        checks.finite(precision.ravel(), "prior.precision")
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "precision", precision)

    @property
    def full(self) -> bool:
        return self.precision.ndim == 2


def glm_prior_terms(prior: Prior, n_features: int, *, l2: float, fit_intercept: bool,
                    regularize_intercept: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(mu, P)`` of the fixed effect's penalty ``(1/2)(theta - mu)' P (theta - mu)`` in its
    theta order (``[coef (n_features,), b]``, the intercept last): ``P`` of shape
    ``(n_params,)`` for a diagonal prior, ``(n_params, n_params)`` for a full one. Features
    ``>= n_features`` are dropped (a full precision is then conditioned on them being 0)."""
    n_params = n_features + int(fit_intercept)
    keep = prior.index < n_features
    # positions in theta of the prior's entries [b, w...] (-1: not in theta)
    b_pos = (n_params + GLM_INTERCEPT) if (fit_intercept and prior.has_intercept) else -1
    pos = np.concatenate([[b_pos], np.where(keep, prior.index, -1)])
    used = pos >= 0
    mu = np.zeros(n_params)
    mu[pos[used]] = prior.mean[used]
    diag = np.full(n_params, float(l2))
    if fit_intercept and not regularize_intercept:
        diag[GLM_INTERCEPT] = 0.0
    if not prior.full:
        diag[pos[used]] = prior.precision[used]
        return mu, diag
    P = np.diag(diag)
    at = pos[used]
    P[np.ix_(at, at)] = prior.precision[np.ix_(used, used)]
    return mu, P


@dataclass(frozen=True)
class EntityPriors:
    """One prior per entity, ragged (the layout of ``EntityModels``' variances).

    Entity ``k``'s prior covers features ``coef_index[coef_ptr[k]:coef_ptr[k+1]]``
    (ascending); its mean and diagonal precision are ``[b, w...]`` at
    ``variance_ptr[k]:variance_ptr[k+1]`` of ``mean`` and ``precision``; ``has_intercept[k]``
    says whether the intercept entries count. With ``full`` (optional) its precision is the
    ``(1 + d_k)^2`` row-major matrix at ``covariance_ptr(coef_ptr)[k]`` of ``full`` (and
    ``precision`` holds its diagonal). An entity with no prior has ``d_k = 0`` and
    ``has_intercept`` False.
    """

    coef_ptr: np.ndarray
    coef_index: np.ndarray
    mean: np.ndarray
    precision: np.ndarray
    has_intercept: np.ndarray
    full: np.ndarray | None = None

    def __post_init__(self):
        ptr = np.ascontiguousarray(self.coef_ptr, dtype=np.int64)
        E = ptr.size - 1
        if ptr.ndim != 1 or E < 0 or ptr[0] != 0 or (np.diff(ptr) < 0).any():
            raise DataError("must be non-decreasing from 0", column="prior.coef_ptr")
        index = np.ascontiguousarray(self.coef_index, dtype=np.int64)
        m = int(ptr[-1])
        mean = np.ascontiguousarray(self.mean, dtype=np.float64)
        precision = np.ascontiguousarray(self.precision, dtype=np.float64)
        known = np.ascontiguousarray(self.has_intercept, dtype=np.bool_)
        for name, a, size in (("coef_index", index, m), ("mean", mean, m + E),
                              ("precision", precision, m + E), ("has_intercept", known, E)):  # fmt: skip
            if a.shape != (size,):
                raise checks.shape_error(f"prior.{name}", a.shape, (size,))
        owner = np.repeat(np.arange(E), np.diff(ptr))
        if m and (index.min() < 0 or ((np.diff(index) <= 0) & (owner[1:] == owner[:-1])).any()):
            raise DataError("an entity's features must ascend (and be >= 0)", column="prior.coef_index")  # fmt: skip
        checks.finite(mean, "prior.mean")
        checks.finite(precision, "prior.precision")
        full = self.full
        if full is not None:
            full = np.ascontiguousarray(full, dtype=np.float64)
            size = int(covariance_ptr(ptr)[-1])
            if full.shape != (size,):
                raise checks.shape_error("prior.full", full.shape, (size,))
            checks.finite(full, "prior.full")
        for name, value in (("coef_ptr", ptr), ("coef_index", index), ("mean", mean),
                            ("precision", precision), ("has_intercept", known), ("full", full)):  # fmt: skip
            object.__setattr__(self, name, value)

    @property
    def n_entities(self) -> int:
        return self.coef_ptr.size - 1

    @property
    def variance_ptr(self) -> np.ndarray:
        return entity_variance_ptr(self.coef_ptr)

    def prior(self, k: int) -> Prior:
        """Entity ``k``'s prior on its own."""
        v = slice(self.variance_ptr[k], self.variance_ptr[k + 1])
        index = self.coef_index[self.coef_ptr[k] : self.coef_ptr[k + 1]]
        precision = self.precision[v]
        if self.full is not None:
            q, at = index.size + 1, covariance_ptr(self.coef_ptr)[k]
            precision = self.full[at : at + q * q].reshape(q, q)
        return Prior(index, self.mean[v], precision, bool(self.has_intercept[k]))

    @staticmethod
    def empty(n_entities: int) -> EntityPriors:
        """No prior for any of ``n_entities`` entities (each falls back to the ridge)."""
        E = int(n_entities)
        return EntityPriors(np.zeros(E + 1, np.int64), np.zeros(0, np.int64), np.zeros(E),
                            np.zeros(E), np.zeros(E, bool))  # fmt: skip

    @staticmethod
    def from_priors(priors: list[Prior | None]) -> EntityPriors:
        """Per-entity priors (``None``: none) as one ragged set; full if any is full."""
        full = any(p is not None and p.full for p in priors)
        parts = [p if p is not None else Prior(np.zeros(0), np.zeros(1), np.zeros(1), False)
                 for p in priors]  # fmt: skip
        counts = np.array([p.index.size for p in parts], np.int64)
        ptr = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])

        def diag(p: Prior) -> np.ndarray:
            return np.diag(p.precision) if p.full else p.precision

        def square(p: Prior) -> np.ndarray:
            return (p.precision if p.full else np.diag(p.precision)).ravel()

        cat = np.concatenate
        return EntityPriors(
            ptr,
            cat([np.zeros(0, np.int64)] + [p.index for p in parts]),
            cat([np.zeros(0)] + [p.mean for p in parts]),
            cat([np.zeros(0)] + [diag(p) for p in parts]),
            np.array([p.has_intercept for p in parts], bool),
            cat([np.zeros(0)] + [square(p) for p in parts]) if full else None,
        )

    def take(self, rows: np.ndarray) -> EntityPriors:
        """The priors of entities ``rows`` (``-1``: no prior), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.n_entities == 0 or not (rows >= 0).any():
            return EntityPriors.empty(rows.size)
        found = rows >= 0
        at = np.where(found, rows, 0)
        counts = np.where(found, np.diff(self.coef_ptr)[at], 0)
        ptr = np.zeros(rows.size + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        vptr, out_vptr = self.variance_ptr, entity_variance_ptr(ptr)
        source = _ragged_source(self.coef_ptr[at], ptr, counts)
        vsource = _ragged_source(vptr[at], out_vptr, counts + 1)
        mean = np.where(np.repeat(found, counts + 1), self.mean[vsource], 0.0)
        precision = np.where(np.repeat(found, counts + 1), self.precision[vsource], 0.0)
        full = None
        if self.full is not None:
            sizes = (counts + 1) ** 2
            cptr = covariance_ptr(self.coef_ptr)
            fsource = _ragged_source(cptr[at], covariance_ptr(ptr), sizes)
            full = np.where(np.repeat(found, sizes), self.full[fsource], 0.0)
        known = found & self.has_intercept[at]
        return EntityPriors(ptr, self.coef_index[source], mean, precision, known, full)


def _ragged_source(starts: np.ndarray, out_ptr: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions in a source array of each output element of a ragged gather."""
    total = int(out_ptr[-1]) if out_ptr.size else 0
    if total == 0:
        return np.zeros(0, np.int64)
    return np.repeat(starts - out_ptr[:-1], lengths) + np.arange(total)
