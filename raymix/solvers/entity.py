"""Very many small per-entity GLMs fitted at once: the maths of a random effect (no Ray).

Rows are grouped by entity: rows ``entity_ptr[k]:entity_ptr[k+1]`` of ``X`` belong to entity
``k``. ``X`` is CSR with GLOBAL column indices of the coordinate's feature bag. Each entity's
model lives on the features its rows actually have (local feature indexing); coefficients of
the other features are 0. With ``theta_e = [b, w]`` (intercept FIRST, as in GDMix) and margins
``z_i = b + x_i.w + o_i``, entity ``e`` with ``n_e`` rows minimizes (GDMix's
``BinaryLogisticRegressionTrainer`` objective, plus optional L1)::

    f_e(theta) = (1/n_e) [ sum_i w_i loss(y_i, z_i) + (l2/2) ||w||^2 (+ (l2/2) b^2) + l1 ||w||_1 ]

``n_e`` is the number of rows, not the sum of weights; ``(l2/2) b^2`` only with
``regularize_intercept``. With a Gaussian prior (:mod:`raymix.solvers.prior`) the ridge
becomes ``(1/2)(theta - mu_e)' P_e (theta - mu_e)`` where the prior has entries (the ridge
elsewhere), and the entity's model lives on its rows' features and its prior's. The losses are :mod:`raymix.solvers.loss`'s (logistic, linear,
poisson); where the intercept sits is written in :mod:`raymix.solvers.layout`.

Solver: a compiled (numba) damped Newton per entity, with a Cholesky solve of the
``(d_e+1)^2`` Hessian and Armijo step halving; with ``l1 > 0`` a proximal Newton whose
direction comes from coordinate descent on the quadratic model (glmnet style). It stops when
the max-abs (min-norm sub)gradient of ``f_e`` is ``<= tol``. Entities with more than
``max_newton_dim`` parameters use scipy's L-BFGS-B instead (split variables for L1; their
``n_iter`` counts L-BFGS iterations). Entities are spread over ``n_threads`` threads; every
entity's result is bitwise independent of the split, so batching never changes a model.

An entity whose rows all have one label (logistic), or all-zero counts (poisson), has its
optimum at ``b = -/+inf`` when the intercept is not regularized: like GDMix's L-BFGS, the
solver then stops where the gradient falls below ``tol`` (``|b|`` about ``log(1/tol)``).
An entity with no rows keeps its starting point (zeros or the warm start).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import numba
import numpy as np
import scipy.sparse as sp

from raymix.errors import DataError, RecipeError
from raymix.solvers import checks
from raymix.solvers import entity_kernels as _k
from raymix.solvers.entity_wide import fit_wide
from raymix.solvers.layout import entity_intercept_slots, entity_variance_ptr
from raymix.solvers.loss import TASKS, check_labels, task_code
from raymix.solvers.prior import EntityPriors, covariance_ptr
from raymix.solvers.variance import VARIANCE_MODES

__all__ = ["EntityModels", "EntityProblem", "fit_entities", "score_entities"]

VARIANCES = {None: 0, "simple": 1, "full": 2}
_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class EntityProblem:
    """Rows grouped by entity (see the module docstring). Arrays are coerced to float64 /
    int64 / CSR on construction and their shapes checked; value checks that depend on the
    task (labels, finiteness, weights) happen in :func:`fit_entities`.

    entity_ptr: int64 ``(n_entities + 1,)``, non-decreasing, from 0 to ``n_rows``.
    X: CSR ``(n_rows, dim)`` float64 or float32 (kept: the kernels multiply every value by a
    float64, so float32 values give the very numbers their float64 copies would), GLOBAL
    column indices; ``dim`` may be 0 (intercept only).
    y, weights, offsets: float64 ``(n_rows,)``; weights default to 1 and offsets to 0.
    """

    entity_ptr: np.ndarray
    X: sp.csr_matrix
    y: np.ndarray
    weights: np.ndarray | None = None
    offsets: np.ndarray | None = None

    def __post_init__(self):
        X, ptr = self.X, np.asarray(self.entity_ptr)
        if not sp.issparse(X) or X.ndim != 2:
            raise DataError(f"must be a 2-D scipy.sparse matrix; got {type(X).__name__}", column="X")  # fmt: skip
        X = X if X.format == "csr" else X.tocsr()
        if X.dtype not in (np.float32, np.float64):  # float32 stays: products are float64
            X = X.astype(np.float64)
        n = X.shape[0]
        if ptr.ndim != 1 or ptr.size == 0 or not np.issubdtype(ptr.dtype, np.integer):
            raise DataError("must be a non-empty 1-D integer array", column="entity_ptr")
        ptr = np.ascontiguousarray(ptr, dtype=np.int64)
        if ptr[0] != 0 or ptr[-1] != n:
            msg = f"must start at 0 and end at n_rows={n}; got {ptr[0]}..{ptr[-1]}"
            raise DataError(msg, column="entity_ptr")
        if (np.diff(ptr) < 0).any():
            msg = f"must be non-decreasing; entity {checks.first_row(np.diff(ptr) < 0)} ends before it starts"  # fmt: skip
            raise DataError(msg, column="entity_ptr")
        if X.nnz and (X.indices.min() < 0 or X.indices.max() >= X.shape[1]):
            raise DataError(f"column indices must lie in [0, {X.shape[1]})", column="X")
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "entity_ptr", ptr)
        for name, default in (("y", 0.0), ("weights", 1.0), ("offsets", 0.0)):
            value = checks.vector(getattr(self, name), n, name, default=default, copy=False)
            object.__setattr__(self, name, value)

    @property
    def n_entities(self) -> int:
        return self.entity_ptr.size - 1

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]

    def subset(self, start: int, stop: int) -> EntityProblem:
        """Entities ``start..stop-1`` as their own problem (rows re-based to 0)."""
        ptr = self.entity_ptr[start : stop + 1]
        sl = slice(ptr[0], ptr[-1])
        w, o = cast(np.ndarray, self.weights), cast(np.ndarray, self.offsets)  # set on creation
        return EntityProblem(ptr - ptr[0], self.X[sl], self.y[sl], w[sl], o[sl])


@dataclass(frozen=True)
class EntityModels:
    """Ragged per-entity coefficients (compact, picklable).

    Entity ``k``: intercept ``intercepts[k]`` (0 without intercept); coefficients
    ``coef_value[coef_ptr[k]:coef_ptr[k+1]]`` on global features ``coef_index[...]``
    (ascending). ``variances``, when asked for, holds ``[var(b), var(w)...]`` per entity at
    ``variance_ptr[k]:variance_ptr[k+1]`` (``variance_ptr = coef_ptr + arange``); ``var(b)``
    is NaN without intercept. ``covariances``, when asked for, holds each entity's ``(1 +
    d_k)^2`` covariance matrix of ``[b, w]`` (row-major, at ``covariance_ptr[k]``; the
    intercept's row and column NaN without one). ``converged``/``n_iter`` report the solver
    per entity.
    """

    intercepts: np.ndarray
    coef_ptr: np.ndarray
    coef_index: np.ndarray
    coef_value: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    variances: np.ndarray | None = None
    covariances: np.ndarray | None = None

    @property
    def n_entities(self) -> int:
        return self.intercepts.size

    @property
    def covariance_ptr(self) -> np.ndarray:
        return covariance_ptr(self.coef_ptr)

    @property
    def n_not_converged(self) -> int:
        return int(self.n_entities - np.count_nonzero(self.converged))

    @property
    def variance_ptr(self) -> np.ndarray:
        return entity_variance_ptr(self.coef_ptr)

    @property
    def intercept_slots(self) -> np.ndarray:
        """Where each entity's ``var(b)`` sits in ``variances``."""
        return entity_intercept_slots(self.coef_ptr)

    def coefficients(self, k: int) -> tuple[float, np.ndarray, np.ndarray]:
        """``(intercept, global feature indices, values)`` of entity ``k``."""
        sl = slice(self.coef_ptr[k], self.coef_ptr[k + 1])
        return float(self.intercepts[k]), self.coef_index[sl], self.coef_value[sl]

    @staticmethod
    def concatenate(parts: list[EntityModels]) -> EntityModels:
        """Models of consecutive entity batches, as one."""
        starts = np.cumsum([0] + [p.coef_index.size for p in parts[:-1]])
        ptr = np.concatenate([[0]] + [p.coef_ptr[1:] + s for p, s in zip(parts, starts, strict=True)])  # fmt: skip
        fields = ["intercepts", "coef_index", "coef_value", "converged", "n_iter"]
        for optional in ("variances", "covariances"):
            if all(getattr(p, optional) is not None for p in parts):
                fields.append(optional)
        cat = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
        return EntityModels(coef_ptr=ptr.astype(np.int64), **cat)


def _check_values(problem: EntityProblem, task: str):
    for name in ("y", "weights", "offsets"):
        checks.finite(getattr(problem, name), name)
    checks.sparse_finite(problem.X)
    checks.nonnegative(cast(np.ndarray, problem.weights), "weights")
    check_labels(task, problem.y)


def _ro(a):
    """Read-only view: numba then sees one array type whether or not the caller's array (e.g.
    from Ray's object store) is writeable, so kernels compile once."""
    v = a.view()
    v.flags.writeable = False
    return v


def _chunks(cost: np.ndarray, n_chunks: int) -> list[tuple[int, int]]:
    """Contiguous entity ranges of about equal total cost, largest first."""
    cum = np.cumsum(cost)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n_chunks) / n_chunks, side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [cost.size]]))
    ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    ranges.sort(key=lambda r: -(cum[r[1] - 1] - (cum[r[0] - 1] if r[0] else 0.0)))
    return ranges


def fit_entities(
    problem: EntityProblem,
    *,
    task: str = "logistic",
    l2: float = 1.0,
    l1: float = 0.0,
    fit_intercept: bool = True,
    regularize_intercept: bool = False,
    max_iter: int = 100,
    tol: float = 1e-8,
    warm_start: EntityModels | None = None,
    variance: str | None = None,
    covariance: bool = False,
    prior: EntityPriors | None = None,
    threshold: float = 0.0,
    n_threads: int | None = None,
    max_newton_dim: int = 500,
) -> EntityModels:
    """Fit one GLM per entity of ``problem`` (objective in the module docstring).

    ``warm_start`` (same entities) starts each entity from its previous model, mapped by
    global feature index; features the entity no longer has are dropped. ``variance``
    ("simple" | "full" | None) gives GDMix's ``1/(diag H + 1e-12)`` or ``diag((H +
    1e-12 I)^-1)`` with ``H`` the Hessian of the UNSCALED objective at the solution.
    Coefficients (intercept included) with ``|v| <= threshold`` are zeroed; zeroed
    coefficients are dropped from the ragged arrays (the intercept slot stays). Entities
    that did not reach ``tol`` within ``max_iter`` Newton steps are flagged in
    ``converged`` (and counted by ``n_not_converged``), never printed. ``n_threads``
    defaults to ``numba.get_num_threads()``; entities with more than ``max_newton_dim``
    parameters are fitted by L-BFGS-B (dense Newton would cost ``O(d^3)``).

    ``prior`` (one per entity of ``problem``) replaces the ridge where it has entries (module
    docstring); each entity then starts from its prior mean unless ``warm_start`` is given,
    and keeps the prior's features that its rows lack (at the prior mean when the prior is
    diagonal). ``covariance`` (with ``variance="full"``) also returns each entity's covariance
    matrix ``(H + 1e-12 I)^-1``, what a full prior is made of.
    """
    owner = "fit_entities"
    checks.choice(owner, "task", task, TASKS)
    checks.real(owner, "l2", l2)
    checks.real(owner, "l1", l1)
    checks.boolean(owner, "fit_intercept", fit_intercept)
    checks.boolean(owner, "regularize_intercept", regularize_intercept)
    checks.integer(owner, "max_iter", max_iter, low=0)
    checks.real(owner, "tol", tol, open_low=True)
    checks.choice(owner, "variance", variance, VARIANCE_MODES, none=True)
    checks.boolean(owner, "covariance", covariance)
    if covariance and variance != "full":
        raise checks.invalid(owner, "covariance", 'False unless variance="full"', covariance)
    checks.real(owner, "threshold", threshold)
    checks.integer(owner, "n_threads", n_threads, low=1, none=True)
    checks.integer(owner, "max_newton_dim", max_newton_dim, low=1)
    checks.regularized_intercept(owner, regularize_intercept, fit_intercept)
    if not isinstance(problem, EntityProblem):
        msg = f"must be an EntityProblem; got {type(problem).__name__}"
        raise RecipeError(msg, field="fit_entities.problem")
    _check_values(problem, task)
    E, dim, X, ptr = problem.n_entities, problem.X.shape[1], problem.X, problem.entity_ptr
    if prior is not None and (not isinstance(prior, EntityPriors) or prior.n_entities != E):
        got = f"{prior.n_entities} entities" if isinstance(prior, EntityPriors) else type(prior).__name__  # fmt: skip
        msg = f"must be EntityPriors of the same {E} entities; got {got}"
        raise RecipeError(msg, field="fit_entities.prior")
    if prior is not None and prior.coef_index.size and prior.coef_index.max() >= dim:
        raise DataError(f"prior features must lie in [0, {dim})", column="prior.coef_index")
    if not X.has_canonical_format:  # the kernels need sorted, duplicate-free rows
        X = X.copy()
        X.sum_duplicates()
    idx_dtype = np.int32 if dim <= _INT32_MAX else np.int64
    indptr = X.indptr.astype(np.int64, copy=False)
    nnz = indptr[ptr[1:]] - indptr[ptr[:-1]]
    slot_ptr = _slots(problem, X, nnz, prior, exact=covariance)
    cov_ptr = covariance_ptr(slot_ptr) if covariance else np.zeros(0, np.int64)
    indices = X.indices.astype(idx_dtype, copy=False)
    arrays = (ptr, indptr, indices, X.data, problem.y, problem.weights, problem.offsets,
              slot_ptr, cov_ptr)  # fmt: skip
    inp = tuple(_ro(a) for a in arrays)
    var_mode, n_slots = VARIANCES[variance] + int(covariance), int(slot_ptr[-1])
    opt = (task_code(task), float(l2), float(l1), bool(fit_intercept), bool(regularize_intercept),
           int(max_iter), float(tol), int(max_newton_dim), var_mode)  # fmt: skip
    warm = _warm_arrays(warm_start, E, idx_dtype)
    pri = _prior_arrays(prior, idx_dtype)
    out = (np.zeros(E), np.zeros(n_slots, idx_dtype), np.zeros(n_slots), np.full(E, np.nan),
           np.zeros(n_slots if var_mode else 0), np.zeros(E, np.int64), np.zeros(E, np.int64),
           np.zeros(E, np.int32), np.zeros(int(cov_ptr[-1]) if covariance else 0))  # fmt: skip
    n_threads = numba.get_num_threads() if n_threads is None else int(n_threads)
    if E and n_threads == 1:
        _k.fit_range(0, E, inp, opt, warm, pri, out)
    elif E:  # dynamic queue of cost-balanced ranges, biggest first
        rows = np.maximum(np.diff(ptr), 1)
        ranges = _chunks(32.0 + rows + nnz * (1.0 + nnz / rows), 8 * n_threads)
        with ThreadPoolExecutor(n_threads) as pool:
            calls = [pool.submit(_k.fit_range, lo, hi, inp, opt, warm, pri, out) for lo, hi in ranges]  # fmt: skip
            for f in calls:
                f.result()
    wide = np.flatnonzero(out[6] == _k.TOO_LARGE)
    if wide.size:
        with _single_threaded_blas():  # threaded BLAS only slows down these small calls
            for k in wide:
                fit_wide(problem, int(k), opt, warm, prior, slot_ptr[k], cov_ptr, out)
    return _collect(slot_ptr, out, float(threshold), var_mode)


def _slots(problem: EntityProblem, X, nnz, prior: EntityPriors | None, exact: bool) -> np.ndarray:
    """``slot_ptr``: entity ``k`` may use slots ``slot_ptr[k]:slot_ptr[k+1]``, one per local
    feature (at most its nnz plus its prior's features, at most ``dim``); ``exact`` counts
    them (the union of its rows' and its prior's features)."""
    E, dim = problem.n_entities, X.shape[1]
    slot_ptr = np.zeros(E + 1, np.int64)
    extra = np.zeros(E, np.int64) if prior is None else np.diff(prior.coef_ptr)
    if not exact:
        np.cumsum(np.minimum(nnz + extra, dim), out=slot_ptr[1:])
        return slot_ptr
    row_entity = np.repeat(np.arange(E), np.diff(problem.entity_ptr))
    keys = [np.repeat(row_entity, np.diff(X.indptr)) * (dim + 1) + X.indices]
    if prior is not None:
        keys.append(np.repeat(np.arange(E), extra) * (dim + 1) + prior.coef_index)
    unique = np.unique(np.concatenate(keys).astype(np.int64))
    np.cumsum(np.bincount(unique // (dim + 1), minlength=E), out=slot_ptr[1:])
    return slot_ptr


def _prior_arrays(prior: EntityPriors | None, idx_dtype) -> tuple:
    """The kernel's ``pri`` tuple (see :mod:`raymix.solvers.prior_kernels`); all empty
    without a prior."""
    if prior is None:
        i, f = _ro(np.zeros(0, np.int64)), _ro(np.zeros(0))
        return i, _ro(np.zeros(0, idx_dtype)), f, f, _ro(np.zeros(0, np.bool_)), i, f
    full_ptr = covariance_ptr(prior.coef_ptr) if prior.full is not None else np.zeros(0, np.int64)
    full = prior.full if prior.full is not None else np.zeros(0)
    arrays = (prior.coef_ptr, prior.coef_index.astype(idx_dtype), prior.mean, prior.precision,
              prior.has_intercept, full_ptr, full)  # fmt: skip
    return tuple(_ro(np.ascontiguousarray(a)) for a in arrays)


def _collect(slot_ptr, out, threshold, var_mode) -> EntityModels:
    """Ragged models from the kernel's per-entity slots, dropping ``|v| <= threshold``."""
    out_b, out_idx, out_val, out_vb, out_var, out_d, status, n_iter, out_cov = out
    E, m = out_b.size, int(out_d.sum())
    dst = (np.zeros(E + 1, np.int64), np.empty(m, out_idx.dtype), np.empty(m),
           np.empty(m + E if var_mode else 0))  # fmt: skip
    src = (_ro(out_idx), _ro(out_val), _ro(out_var))
    m = _k.compact(_ro(slot_ptr), _ro(out_d), _ro(out_val), bool(var_mode), threshold, src, dst)
    coef_ptr, idx, val, var = dst
    if var_mode:
        var = var[: m + E].copy()
        var[entity_intercept_slots(coef_ptr)] = out_vb
    out_b[np.abs(out_b) <= threshold] = 0.0
    cov = _compact_covariances(slot_ptr, out_d, out_val, threshold, out_cov) if var_mode == 3 else None  # fmt: skip
    if m < idx.size:  # some coefficients dropped: don't keep the unused tail alive
        idx, val = idx[:m].copy(), val[:m].copy()
    return EntityModels(out_b, coef_ptr, idx, val, status == _k.CONVERGED, n_iter,
                        var if var_mode else None, cov)  # fmt: skip


def _compact_covariances(slot_ptr, out_d, out_val, threshold, out_cov) -> np.ndarray:
    """The covariance matrices of the coefficients ``_collect`` keeps (slots are exact
    here: ``slot_ptr`` counts each entity's features)."""
    E = out_d.size
    keep = np.abs(out_val) > threshold
    if keep.all():
        return out_cov
    cptr = covariance_ptr(slot_ptr)
    parts = []
    for k in range(E):
        q = int(out_d[k]) + 1
        block = out_cov[cptr[k] : cptr[k] + q * q].reshape(q, q)
        rows = np.concatenate([[True], keep[slot_ptr[k] : slot_ptr[k] + q - 1]])
        parts.append(block[np.ix_(rows, rows)].ravel())
    return np.concatenate(parts) if parts else np.zeros(0)


def _warm_arrays(warm: EntityModels | None, E: int, idx_dtype):
    """``(b, ptr, idx, val)`` of the warm start for the kernel (all empty for a cold start)."""
    if warm is None:
        return _ro(np.zeros(0)), _ro(np.zeros(0, np.int64)), _ro(np.zeros(0, idx_dtype)), _ro(np.zeros(0))  # fmt: skip
    if not isinstance(warm, EntityModels) or warm.n_entities != E:
        got = f"{warm.n_entities} entities" if isinstance(warm, EntityModels) else type(warm).__name__  # fmt: skip
        msg = f"must be EntityModels of the same {E} entities; got {got}"
        raise RecipeError(msg, field="fit_entities.warm_start")
    cptr, cidx, val = _sorted_coefficients(warm, idx_dtype, "warm_start")
    b = np.ascontiguousarray(warm.intercepts, dtype=np.float64)
    return _ro(b), _ro(cptr), _ro(cidx), _ro(val)


def _sorted_coefficients(models: EntityModels, idx_dtype, name: str):
    """``(coef_ptr, coef_index, coef_value)`` with indices ascending within each entity (models
    read back from files may list them in another order); a repeated feature is an error."""
    cptr = np.ascontiguousarray(models.coef_ptr, dtype=np.int64)
    cidx = np.ascontiguousarray(models.coef_index, dtype=idx_dtype)
    val = np.ascontiguousarray(models.coef_value, dtype=np.float64)
    owner = np.repeat(np.arange(models.n_entities), np.diff(cptr))
    if ((np.diff(cidx) <= 0) & (owner[1:] == owner[:-1])).any():
        order = np.lexsort((cidx, owner))
        cidx, val = cidx[order], val[order]
        if ((np.diff(cidx) == 0) & (owner[1:] == owner[:-1])).any():
            raise DataError("an entity has the same feature twice", column=f"{name}.coef_index")
    return cptr, cidx, val


def _single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only a speed-up
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def score_entities(
    models: EntityModels, X, entity_ptr, *, model_index: np.ndarray | None = None
) -> np.ndarray:
    """Per-row logit of each row's entity model, ``b_m + x_r . w_m``, WITHOUT the offset.

    Rows ``entity_ptr[g]:entity_ptr[g+1]`` of CSR ``X`` (global feature indices) form group
    ``g``. By default group ``g`` is scored with model ``g`` (``len(entity_ptr) - 1 ==
    models.n_entities``). ``model_index`` picks the model per group: an int array (``-1`` =
    no model) or a boolean mask over the models' entities (``False`` = no model). Rows of a
    group without a model score 0, as GDMix scores unseen entities by the offset alone.
    """
    prob = EntityProblem(entity_ptr, X, np.zeros(X.shape[0]))
    G, E = prob.n_entities, models.n_entities
    model_index = np.arange(E) if model_index is None else np.asarray(model_index)
    if model_index.dtype == bool:
        model_index = np.where(model_index, np.arange(model_index.size), -1)
    if model_index.shape != (G,) or not np.issubdtype(model_index.dtype, np.integer):
        got = f"{model_index.dtype} array of shape {model_index.shape}"
        msg = f"must be an int or bool array of shape ({G},), one per entity group; got {got}"
        raise DataError(msg, column="model_index")
    if G and (model_index.min() < -1 or model_index.max() >= E):
        raise DataError(f"must lie in [-1, {E}) (the models' entities)", column="model_index")
    dt = np.int32 if prob.X.shape[1] <= _INT32_MAX else np.int64
    x = (prob.X.indptr.astype(np.int64, copy=False), prob.X.indices.astype(dt, copy=False), prob.X.data)  # fmt: skip
    m = (np.ascontiguousarray(models.intercepts, dtype=np.float64),
         *_sorted_coefficients(models, dt, "models"))  # fmt: skip
    out = np.empty(prob.n_rows)
    ro = tuple(map(_ro, x)), tuple(map(_ro, m))
    _k.score_groups(_ro(prob.entity_ptr), _ro(model_index.astype(np.int64)), *ro, out)
    return out
