"""Fixed-effect GLM: the loss of a shard of rows, and the L-BFGS / OWL-QN minimiser.

Parameters are ``theta = [coef (d,), b]``, **the intercept last** (GDMix's order); without an
intercept ``theta = coef``. The objective, a sum over rows (not a mean), is

    f(theta) = sum_i w_i loss(y_i, z_i) + (l2/2) ||coef||^2 + l1 ||coef||_1
               [+ (l2/2) b^2 + l1 |b|  if regularize_intercept],
    z_i = x_i . coef + b + o_i,

with ``w_i`` the sample weights (default 1) and ``o_i`` the offsets (default 0):

- ``"logistic"``: ``loss = log(1 + exp(z)) - y z``, y in {0, 1};
- ``"linear"``:   ``loss = (z - y)^2 / 2``;
- ``"poisson"``:  ``loss = exp(z) - y z``, y >= 0 (log link).

Nothing here knows about Ray: a worker keeps a :class:`GLMLoss` of its rows and hands
:func:`minimize_glm` a ``value_grad`` that all-reduces the shards' partial sums.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numba
import numpy as np
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit
from threadpoolctl import threadpool_limits

from raymix.errors import DataError, RecipeError
from raymix.solvers.owlqn import LBFGSOptions, owlqn
from raymix.solvers.variance import VARIANCE_MODES, coefficient_variances, threshold

__all__ = [
    "ColumnStats",
    "GLMFit",
    "GLMLoss",
    "LBFGSOptions",
    "coefficient_variances",
    "fit_glm",
    "minimize_glm",
    "threshold",
]

TASKS = ("logistic", "linear", "poisson")


def _fail(owner: str, name: str, expected: str, value) -> RecipeError:
    shown = value.item() if isinstance(value, np.generic) else value
    return RecipeError(
        f"The '{name}' parameter of {owner} must be {expected}. Got {shown!r} instead."
    )


def _check_choice(owner: str, name: str, value, choices) -> None:
    if not isinstance(value, str) or value not in choices:
        raise _fail(owner, name, "one of " + ", ".join(repr(c) for c in choices), value)


def _check_bool(owner: str, name: str, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise _fail(owner, name, "a bool", value)
    return bool(value)


def _check_penalty(owner: str, name: str, value) -> float:
    real = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not real or not 0.0 <= value < np.inf:
        raise _fail(owner, name, "a float in the range [0.0, inf)", value)
    return float(value)


@dataclass(frozen=True, eq=False)
class ColumnStats:
    """Weighted column sums of a shard: ``sum_w = sum_i w_i``, ``sum_wx[j] = sum_i w_i x_ij``,
    ``sum_wxx[j] = sum_i w_i x_ij^2`` (arrays of shape ``(d,)``).

    They add across shards (``a + b``), and :meth:`to_array` / :meth:`from_array` flatten them
    to one float64 vector ``[sum_w, sum_wx, sum_wxx]`` of length ``2 d + 1`` for an all-reduce.
    """

    sum_w: float
    sum_wx: np.ndarray
    sum_wxx: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.sum_wx.shape[0])

    def __add__(self, other: ColumnStats) -> ColumnStats:
        if not isinstance(other, ColumnStats):
            return NotImplemented
        return ColumnStats(
            self.sum_w + other.sum_w, self.sum_wx + other.sum_wx, self.sum_wxx + other.sum_wxx
        )

    def to_array(self) -> np.ndarray:
        return np.concatenate([[self.sum_w], self.sum_wx, self.sum_wxx]).astype(np.float64)

    @classmethod
    def from_array(cls, array, n_params: int | None = None) -> ColumnStats:
        """Inverse of :meth:`to_array`; ``n_params`` (d or d + 1), if given, is checked."""
        a = np.asarray(array, dtype=np.float64)
        d = (a.size - 1) // 2
        if (
            a.ndim != 1
            or a.size != 2 * d + 1
            or (n_params is not None and n_params - d not in (0, 1))
        ):
            raise DataError(
                f"A ColumnStats array has length 2 d + 1; got {a.shape} for n_params={n_params}."
            )
        return cls(float(a[0]), a[1 : d + 1].copy(), a[d + 1 :].copy())


class GLMLoss:
    """Data term of one shard of rows: ``L(theta) = sum_i w_i loss(y_i, x_i.coef + b + o_i)``.

    No penalty: :func:`minimize_glm` adds it once, so shards' values and gradients simply add.

    ``X``: dense array ``(n, d)`` or scipy sparse matrix (kept as CSR). float32 and float64
    values are read as they are (never copied to another dtype) and every product is
    accumulated in float64; other dtypes are converted to float64, and a non-C-ordered dense
    array is copied to C order. ``y``: ``(n,)``. ``weights``, ``offsets``: ``(n,)`` or None
    (ones / zeros). ``theta``: ``(n_params,)`` with ``n_params = d + fit_intercept``, the
    intercept last. ``value_grad`` makes one fused pass over X, on ``n_threads`` threads
    (default :func:`default_threads`) when the shard is large enough to be worth it.
    """

    def __init__(
        self,
        X,
        y,
        *,
        weights=None,
        offsets=None,
        task="logistic",
        fit_intercept=True,
        n_threads: int | None = None,
    ):
        _check_choice("GLMLoss", "task", task, TASKS)
        if n_threads is None:
            n_threads = default_threads()
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
            raise _fail("GLMLoss", "n_threads", "None or an int in the range [1, inf)", n_threads)
        self.n_threads = min(n_threads, numba.config.NUMBA_NUM_THREADS)
        self.task = task
        self.fit_intercept = _check_bool("GLMLoss", "fit_intercept", fit_intercept)
        self._code = TASKS.index(task)
        self._X = _check_X(X)
        n, d = self._X.shape
        self.n_rows, self.n_features = n, d
        self.n_params = d + int(self.fit_intercept)
        self._y = _check_labels(y, n, task)
        self._w = _check_vector(weights, n, "weights", default=1.0, nonnegative=True)
        self._o = _check_vector(offsets, n, "offsets", default=0.0)

    def set_offsets(self, offsets) -> None:
        """Replace the offsets ``(n,)`` (None: zeros) in place; coordinate descent does this."""
        self._o[:] = _check_vector(offsets, self.n_rows, "offsets", default=0.0)

    def _split(self, theta) -> tuple[np.ndarray, float]:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise _shape_error("theta", theta.shape, (self.n_params,))
        d = self.n_features
        return np.ascontiguousarray(theta[:d]), float(theta[d]) if self.fit_intercept else 0.0

    def value_grad(self, theta) -> tuple[float, np.ndarray]:
        """``(L(theta), grad L(theta))``, the gradient of shape ``(n_params,)``.

        ``grad_coef = X^T r`` and ``grad_b = sum_i r_i`` with ``r_i = w_i loss'(y_i, z_i)``.
        """
        coef, b = self._split(theta)
        value, grad = _value_grad(
            self._X, self._y, self._w, self._o, coef, b, self._code, self.n_threads
        )
        return value, grad if self.fit_intercept else grad[:-1]

    def hessp(self, theta, v) -> np.ndarray:
        """Hessian-vector product ``X_a^T D X_a v``, ``D = diag(w_i loss''(y_i, z_i))``.

        ``X_a`` is X with a column of ones appended when there is an intercept; ``v`` has
        shape ``(n_params,)``.
        """
        coef, b = self._split(theta)
        v_coef, v_b = self._split(v)
        dz = _curvature(self._X, self._w, self._o, coef, b, self._code, self.n_threads)
        dz *= _matvec(self._X, v_coef, v_b, self.n_threads)
        out = _rmatvec(self._X, dz, self.n_threads)
        return out if self.fit_intercept else out[:-1]

    def hessian(self, theta) -> np.ndarray:
        """Dense Hessian ``X_a^T D X_a`` of shape ``(n_params, n_params)``; small d only."""
        coef, b = self._split(theta)
        dz = _curvature(self._X, self._w, self._o, coef, b, self._code, self.n_threads)
        H = _weighted_gram(self._X, dz)
        return H if self.fit_intercept else H[:-1, :-1]

    def column_stats(self) -> ColumnStats:
        """Weighted sums ``sum w``, ``sum w x_j``, ``sum w x_j^2`` of this shard."""
        sum_w, sum_wx, sum_wxx = _column_sums(self._X, self._w)
        return ColumnStats(sum_w, sum_wx, sum_wxx)


@dataclass(frozen=True, eq=False)
class GLMFit:
    """A fitted GLM. ``coef``: ``(d,)``; ``intercept``: 0.0 without one; ``objective``: f at
    the solution (penalties included); ``variances``: ``(n_params,)`` in theta order or None.
    """

    coef: np.ndarray
    intercept: float
    n_iter: int
    converged: bool
    objective: float
    message: str
    variances: np.ndarray | None = None

    @property
    def theta(self) -> np.ndarray:
        return np.concatenate([self.coef, [self.intercept]])


@dataclass(frozen=True, eq=False)
class _Standardize:
    """The change of variables ``theta = A u`` behind preconditioning.

    ``coef = u[:d] / scale`` and ``b = u[d] - centre . coef``, so that ``x . coef + b =
    ((x - centre) / scale) . u[:d] + u[d]``: L-BFGS sees standardised columns. ``centre`` is
    the weighted mean (zero when not centring) and ``scale`` the weighted root mean square of
    ``x - centre``; constant columns get ``scale = 1`` and ``centre = 0``.
    """

    scale: np.ndarray
    centre: np.ndarray
    fit_intercept: bool

    @classmethod
    def from_stats(cls, stats: ColumnStats, fit_intercept: bool, centre: bool) -> _Standardize:
        d = stats.n_features
        if stats.sum_w <= 0:
            return cls(np.ones(d), np.zeros(d), fit_intercept)
        mean = stats.sum_wx / stats.sum_w
        second = stats.sum_wxx / stats.sum_w
        c = mean if centre else np.zeros(d)
        var = np.maximum(second - c * c, 0.0)
        constant = var <= 64 * np.finfo(np.float64).eps * second
        return cls(np.where(constant, 1.0, np.sqrt(var)), np.where(constant, 0.0, c), fit_intercept)

    def to_theta(self, u: np.ndarray) -> np.ndarray:
        d = self.scale.size
        theta = np.array(u, dtype=np.float64)
        theta[:d] = u[:d] / self.scale
        if self.fit_intercept:
            theta[d] = u[d] - self.centre @ theta[:d]
        return theta

    def to_u(self, theta: np.ndarray) -> np.ndarray:
        d = self.scale.size
        u = np.array(theta, dtype=np.float64)
        u[:d] = theta[:d] * self.scale
        if self.fit_intercept:
            u[d] = theta[d] + self.centre @ theta[:d]
        return u

    def grad_to_u(self, g: np.ndarray) -> np.ndarray:
        """``A^T g``: the gradient with respect to u of a function of theta."""
        d = self.scale.size
        gu = np.array(g, dtype=np.float64)
        gu[:d] = (
            (g[:d] - self.centre * g[d]) / self.scale if self.fit_intercept else g[:d] / self.scale
        )
        return gu


def minimize_glm(
    value_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    n_params: int,
    *,
    l2: float = 0.0,
    l1: float = 0.0,
    fit_intercept: bool = True,
    regularize_intercept: bool = False,
    stats: ColumnStats | None = None,
    precondition: bool = True,
    x0=None,
    options: LBFGSOptions = LBFGSOptions(),
) -> GLMFit:
    """Minimise ``f(theta) = value_grad(theta)[0] + penalties`` (module docstring) over theta.

    ``value_grad(theta) -> (value, grad (n_params,))`` is the data term, e.g.
    :meth:`GLMLoss.value_grad` or a closure that all-reduces shards' partial sums. This
    function is deterministic and every worker calling it with identical inputs calls
    ``value_grad`` the same number of times, so workers stay in lockstep.

    Solver: scipy's L-BFGS-B when ``l1 == 0``, else OWL-QN (:mod:`raymix.solvers.owlqn`).

    ``precondition=True`` (needs ``stats``, the all-reduced :class:`ColumnStats`) solves in the
    standardised variables u of ``theta = A u``: with an intercept, columns are centred on
    their weighted mean and scaled to unit weighted standard deviation; without one (or when
    an L1 penalty also covers the intercept, which centring would make non-separable in u),
    they are only scaled, to unit weighted root mean square. Constant columns are left alone.
    Penalties are always evaluated on theta, so
    the minimiser is that of the user's objective. ``options.tolerance`` (relative reduction
    of f) means the same in both variables; ``options.gtol`` applies to the gradient in u,
    i.e. to the gradient of f with respect to each coefficient of a *standardised* column,
    which makes the test independent of the units of the features.

    ``precondition=False`` is GDMix exactly: ``fmin_l_bfgs_b(m=history, factr=tolerance/eps,
    maxiter=max_iter, pgtol=gtol)`` on theta. ``x0`` (theta order) defaults to zeros.
    """
    owner = "minimize_glm"
    if not callable(value_grad):
        raise _fail(owner, "value_grad", "a callable", value_grad)
    if isinstance(n_params, bool) or not isinstance(n_params, int | np.integer) or n_params < 0:
        raise _fail(owner, "n_params", "an int in the range [0, inf)", n_params)
    l2, l1 = _check_penalty(owner, "l2", l2), _check_penalty(owner, "l1", l1)
    fit_intercept = _check_bool(owner, "fit_intercept", fit_intercept)
    regularize_intercept = _check_bool(owner, "regularize_intercept", regularize_intercept)
    precondition = _check_bool(owner, "precondition", precondition)
    if regularize_intercept and not fit_intercept:
        raise RecipeError(
            f"The 'regularize_intercept' parameter of {owner} can be True only with "
            "fit_intercept=True."
        )
    if fit_intercept and n_params < 1:
        raise _fail(owner, "n_params", "at least 1 with fit_intercept=True", n_params)
    if not isinstance(options, LBFGSOptions):
        raise _fail(owner, "options", "an LBFGSOptions", options)
    d = n_params - int(fit_intercept)
    if precondition:
        if not isinstance(stats, ColumnStats):
            raise RecipeError(
                f"The 'stats' parameter of {owner} must be the ColumnStats of the data when "
                f"precondition=True (or pass precondition=False). Got {stats!r} instead."
            )
        if stats.n_features != d:
            raise RecipeError(
                f"The 'stats' parameter of {owner} describes {stats.n_features} columns but "
                f"n_params={n_params} with fit_intercept={fit_intercept} means {d}."
            )
    theta0 = np.zeros(n_params) if x0 is None else np.array(x0, dtype=np.float64)
    if theta0.shape != (n_params,) or not np.all(np.isfinite(theta0)):
        raise _fail(owner, "x0", f"None or a finite array of shape ({n_params},)", x0)

    if n_params == 0:  # nothing to fit; still one call, as on every other worker
        value, _ = value_grad(theta0)
        return GLMFit(theta0, 0.0, 0, True, float(value), "no parameters to fit")
    penalized = np.ones(n_params)
    if fit_intercept and not regularize_intercept:
        penalized[-1] = 0.0
    A = None
    if precondition:
        centre = fit_intercept and not (l1 > 0 and regularize_intercept)
        A = _Standardize.from_stats(stats, fit_intercept, centre)

    def smooth(u):
        theta = u if A is None else A.to_theta(u)
        value, grad = value_grad(theta)
        grad = np.asarray(grad, dtype=np.float64)
        if l2 > 0:
            value = value + 0.5 * l2 * float(penalized @ (theta * theta))
            grad = grad + l2 * penalized * theta
        return float(value), grad if A is None else A.grad_to_u(grad)

    u0 = theta0 if A is None else A.to_u(theta0)
    # scipy's L-BFGS-B calls OpenBLAS on vectors of n_params: its spinning threads fought the
    # loss's numba threads for the 2 cores (movieLens' global model: 20 ms instead of 1 ms a
    # loss evaluation, the fit 0.5 s instead of 0.05 s); one BLAS thread is all it needs.
    with threadpool_limits(limits=1, user_api="blas"):
        u, objective, n_iter, converged, message = _minimize(smooth, u0, l1, penalized, A, options)
    theta = u if A is None else A.to_theta(u)
    coef = np.array(theta[:d])
    intercept = float(theta[d]) if fit_intercept else 0.0
    return GLMFit(coef, intercept, n_iter, bool(converged), objective, message)


def _minimize(smooth, u0, l1: float, penalized, A, options: LBFGSOptions) -> tuple:
    """(u, objective, iterations, converged, message): L-BFGS-B, or OWL-QN with an L1 term."""
    if l1 == 0:
        res = scipy.optimize.minimize(
            smooth,
            u0,
            jac=True,
            method="L-BFGS-B",
            options={
                "maxcor": options.history,
                "ftol": options.tolerance,
                "gtol": options.gtol,
                "maxiter": options.max_iter,
            },
        )
        return res.x, float(res.fun), int(res.nit), res.status == 0, str(res.message)
    lam = l1 * penalized
    if A is not None:  # |coef_j| = |u_j| / scale_j; the intercept is not scaled.
        lam[: A.scale.size] /= A.scale
    res = owlqn(smooth, u0, lam, options)
    return res.x, res.fun, res.n_iter, res.converged, res.message


def fit_glm(
    X,
    y,
    *,
    weights=None,
    offsets=None,
    task: str = "logistic",
    l2: float = 0.0,
    l1: float = 0.0,
    fit_intercept: bool = True,
    regularize_intercept: bool = False,
    precondition: bool = True,
    x0=None,
    options: LBFGSOptions = LBFGSOptions(),
    variance: str | None = None,
) -> GLMFit:
    """Fit the GLM of the module docstring on in-memory rows: ``GLMLoss`` + ``minimize_glm``.

    ``variance`` ("simple" | "full" | None) adds :func:`coefficient_variances` of the data
    Hessian at the solution (before any thresholding, which is the caller's choice).
    """
    owner = "fit_glm"
    _check_choice(owner, "task", task, TASKS)
    l2, l1 = _check_penalty(owner, "l2", l2), _check_penalty(owner, "l1", l1)
    for name, value in [
        ("fit_intercept", fit_intercept),
        ("regularize_intercept", regularize_intercept),
        ("precondition", precondition),
    ]:
        _check_bool(owner, name, value)
    if variance is not None:
        _check_choice(owner, "variance", variance, VARIANCE_MODES)
    if regularize_intercept and not fit_intercept:
        raise RecipeError(
            f"The 'regularize_intercept' parameter of {owner} can be True only with "
            "fit_intercept=True."
        )
    loss = GLMLoss(X, y, weights=weights, offsets=offsets, task=task, fit_intercept=fit_intercept)
    fit = minimize_glm(
        loss.value_grad,
        loss.n_params,
        l2=l2,
        l1=l1,
        fit_intercept=fit_intercept,
        regularize_intercept=regularize_intercept,
        stats=loss.column_stats() if precondition else None,
        precondition=precondition,
        x0=x0,
        options=options,
    )
    if variance is None:
        return fit
    theta = fit.theta if fit_intercept else fit.coef
    variances = coefficient_variances(
        loss.hessian(theta),
        l2,
        fit_intercept=fit_intercept,
        regularize_intercept=regularize_intercept,
        mode=variance,
    )
    return replace(fit, variances=variances)


# --------------------------------------------------------------------------------------------
# Compiled kernels and data checks (private).
#
# One fused pass per evaluation. Rows go by blocks of _ROWS: z = X coef + b + o for the block,
# then the loss and r = w loss'(z) of the block (vectorised: exp and log1p are written as
# polynomials, libm's are scalar calls), then X^T r, while the block is still in L1. Large
# shards are cut into at most _CHUNKS chunks of rows, shared out among the threads; chunks'
# partial sums are added in chunk order, so a result depends only on the data, never on the
# thread count (the same models locally and in a Ray job, deterministic). Small
# shards run on the calling thread: waking a pool costs more than they do. fastmath allows
# only reassociation and contraction (SIMD dot products); NaN and inf keep their meaning.
#
# Measured (one thread, CPU time, float64, on a busy 2-core machine): 1M x 50 dense logistic
# 1.15-1.4x one ``X @ w`` (the linear loss ~1.0x: the pass is memory bound); 1M x 10k CSR with
# 20 nnz a row 1.7-2.2x one scipy ``X @ w`` (gathering coef and scattering into the gradient,
# not memory, bound it). numpy/scipy
# (``X @ coef``, the elementwise loss, then ``r @ X``) cost ~4x and ~3.2x; the same fused loop
# with libm's exp/log1p ~1.7x and ~2.6x.
# --------------------------------------------------------------------------------------------

_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_LOCK = threading.Lock()  # numba's pool must not be entered from two threads at once
_PARALLEL_WORK = 1 << 20  # stored values + 8 per row, above which a pass uses all threads
_CHUNKS = 32  # chunks of rows of a parallel pass (threads share them out)
_PARTIALS_BYTES = 256 << 20  # bound on the chunks' partial gradients
_BLOCK = 8192  # rows per block in the BLAS-based helpers (Hessian, column sums)


_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's split
_ROWS = 32  # rows per block inside a kernel: z, then the loss of the block, then X^T r


@numba.njit(cache=True, inline="always")
def _exp_neg(x):
    """``exp(x)`` for ``x <= 0`` in plain arithmetic, so that LLVM vectorises it (libm's exp
    is a scalar call). Cody-Waite reduction to ``|r| <= ln2 / 2`` and a degree-13 Taylor
    polynomial: within an ulp or so; x is clamped at -708 (exp(-708) ~ 3e-308)."""
    x = max(x, -708.0)
    k = math.floor(x * 1.4426950408889634 + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 6227020800.0
    p = 1.0 / 479001600.0 + r * p
    p = 1.0 / 39916800.0 + r * p
    p = 1.0 / 3628800.0 + r * p
    p = 1.0 / 362880.0 + r * p
    p = 1.0 / 40320.0 + r * p
    p = 1.0 / 5040.0 + r * p
    p = 1.0 / 720.0 + r * p
    p = 1.0 / 120.0 + r * p
    p = 1.0 / 24.0 + r * p
    p = 1.0 / 6.0 + r * p
    p = 0.5 + r * p
    p = 1.0 + r * p
    p = 1.0 + r * p
    return p * np.int64(np.int64(k + 1023.0) << 52).view(np.float64)


@numba.njit(cache=True, inline="always")
def _log1p_unit(e):
    """``log1p(e)`` for ``0 <= e <= 1`` as ``2 atanh(s)``, ``s = e / (2 + e) <= 1/3``: the odd
    series to ``s^33`` (relative error ~1e-16), vectorisable like :func:`_exp_neg`."""
    s = e / (2.0 + e)
    t = s * s
    q = 1.0 / 33.0
    q = 1.0 / 31.0 + t * q
    q = 1.0 / 29.0 + t * q
    q = 1.0 / 27.0 + t * q
    q = 1.0 / 25.0 + t * q
    q = 1.0 / 23.0 + t * q
    q = 1.0 / 21.0 + t * q
    q = 1.0 / 19.0 + t * q
    q = 1.0 / 17.0 + t * q
    q = 1.0 / 15.0 + t * q
    q = 1.0 / 13.0 + t * q
    q = 1.0 / 11.0 + t * q
    q = 1.0 / 9.0 + t * q
    q = 1.0 / 7.0 + t * q
    q = 1.0 / 5.0 + t * q
    q = 1.0 / 3.0 + t * q
    return 2.0 * s + (2.0 * s * t) * q  # the leading term alone carries the rounding


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _block_loss(task, z, y, w, r, losses):
    """One block of rows with margins ``z``: ``losses[k] = w loss`` (exactly 0 for a weight
    of 0) and ``r[k] = w loss'``. Elementwise, branch-free loops over views indexed from 0, so
    that LLVM vectorises them; compiled without reassociation so that the range reduction in
    ``_exp_neg`` stays exact, and with numpy's error model (no ZeroDivisionError branches)."""
    if task == 0:
        for k in range(z.size):
            zk, yk, wk = z[k], y[k], w[k]
            e = _exp_neg(-abs(zk))
            inv = 1.0 / (1.0 + e)
            p = inv if zk >= 0.0 else e * inv
            loss = max(zk, 0.0) - zk * yk + _log1p_unit(e)
            losses[k] = wk * loss if wk != 0.0 else 0.0
            r[k] = wk * (p - yk)
    elif task == 1:
        for k in range(z.size):
            res, wk = z[k] - y[k], w[k]
            losses[k] = wk * (0.5 * res * res) if wk != 0.0 else 0.0
            r[k] = wk * res
    else:
        for k in range(z.size):
            mu, yk, wk = math.exp(z[k]), y[k], w[k]
            losses[k] = wk * (mu - yk * z[k]) if wk != 0.0 else 0.0
            r[k] = wk * (mu - yk) if wk != 0.0 else 0.0


@numba.njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def _vg_rows_dense(X, y, w, o, coef, b, task, lo, hi, g):
    """Rows lo..hi-1: return ``sum w loss`` and add ``[X^T r, sum r]`` into g ``(d + 1,)``."""
    d = X.shape[1]
    z, r, losses = np.empty(_ROWS), np.empty(_ROWS), np.empty(_ROWS)
    v = 0.0
    for start in range(lo, hi, _ROWS):
        m = min(_ROWS, hi - start)
        for k in range(m):
            acc = b + o[start + k]
            for j in range(d):
                acc += X[start + k, j] * coef[j]
            z[k] = acc
        _block_loss(task, z[:m], y[start : start + m], w[start : start + m], r, losses)
        for k in range(m):
            v += losses[k]
            g[d] += r[k]
            for j in range(d):
                g[j] += r[k] * X[start + k, j]
    return v


@numba.njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def _vg_rows_csr(data, indices, indptr, y, w, o, coef, b, task, lo, hi, g):
    """CSR version of :func:`_vg_rows_dense`."""
    d = g.size - 1
    z, r, losses = np.empty(_ROWS), np.empty(_ROWS), np.empty(_ROWS)
    v = 0.0
    for start in range(lo, hi, _ROWS):
        m = min(_ROWS, hi - start)
        for k in range(m):
            acc = b + o[start + k]
            for p in range(indptr[start + k], indptr[start + k + 1]):
                acc += data[p] * coef[indices[p]]
            z[k] = acc
        _block_loss(task, z[:m], y[start : start + m], w[start : start + m], r, losses)
        for k in range(m):
            v += losses[k]
            g[d] += r[k]
            for p in range(indptr[start + k], indptr[start + k + 1]):
                g[indices[p]] += r[k] * data[p]
    return v


@numba.njit(cache=True, parallel=True)
def _vg_dense_par(X, y, w, o, coef, b, task, nchunks):
    n, d = X.shape
    G, V = np.zeros((nchunks, d + 1)), np.zeros(nchunks)
    step = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        V[c] = _vg_rows_dense(X, y, w, o, coef, b, task, c * step, min(n, c * step + step), G[c])
    return V, G  # summed by the caller: numba would split these sums among the threads


@numba.njit(cache=True, parallel=True)
def _vg_csr_par(data, indices, indptr, d, y, w, o, coef, b, task, nchunks):
    n = indptr.size - 1
    G, V = np.zeros((nchunks, d + 1)), np.zeros(nchunks)
    step = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        lo, hi = c * step, min(n, c * step + step)
        V[c] = _vg_rows_csr(data, indices, indptr, y, w, o, coef, b, task, lo, hi, G[c])
    return V, G  # summed by the caller: numba would split these sums among the threads


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _matvec_dense(X, coef, b):
    n, d = X.shape
    z = np.empty(n)
    for i in numba.prange(n):
        s = b
        for j in range(d):
            s += X[i, j] * coef[j]
        z[i] = s
    return z


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _matvec_csr(data, indices, indptr, coef, b):
    n = indptr.size - 1
    z = np.empty(n)
    for i in numba.prange(n):
        s = b
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * coef[indices[p]]
        z[i] = s
    return z


def _csr(X):
    """CSR arrays with the (non-negative) index arrays viewed as unsigned: numba then drops
    its negative-index wraparound checks, which made the sparse loops ~1.5x slower."""
    unsigned = {np.dtype(np.int32): np.uint32, np.dtype(np.int64): np.uint64}
    return (
        X.data,
        X.indices.view(unsigned[X.indices.dtype]),
        X.indptr.view(unsigned[X.indptr.dtype]),
    )


def default_threads() -> int:
    """Threads a :class:`GLMLoss` uses by default: ``OMP_NUM_THREADS`` if set (Ray sets it to
    the CPUs of a task or actor, so workers do not oversubscribe), else the CPUs this process
    may run on; at most numba's pool size."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        wanted = int(env)
    else:
        wanted = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))


@contextmanager
def _pool(threads: int):
    """Hold the kernel lock with numba's pool set to ``threads`` (restored afterwards)."""
    with _LOCK:
        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            yield
        finally:
            numba.set_num_threads(before)


def _nchunks(X) -> int:
    """Chunks of rows of a pass, from the data's shape alone: never from the thread count, so
    that a result does not depend on where it runs (a local driver uses all cores, a Ray job's
    driver inherits ``OMP_NUM_THREADS=1``: with one chunk per thread, the movieLens global
    model differed by 3e-12 between the two, and so did every random effect after it).
    At most ``_CHUNKS``, and at most ``_PARTIALS_BYTES`` of per-chunk gradients."""
    n, d = X.shape
    work = (X.nnz if sp.issparse(X) else X.size) + 8 * n
    if work < _PARALLEL_WORK:
        return 1
    return max(1, min(_CHUNKS, n // 1024, _PARTIALS_BYTES // (8 * (d + 1))))


def _value_grad(X, y, w, o, coef, b, task, threads):
    """``(sum w loss, [X^T r, sum r])`` with ``r = w loss'(z)``, ``z = X coef + b + o``."""
    nchunks = _nchunks(X)
    with _pool(min(nchunks, threads)):
        if nchunks > 1:
            if sp.issparse(X):
                V, G = _vg_csr_par(*_csr(X), X.shape[1], y, w, o, coef, b, task, nchunks)
            else:
                V, G = _vg_dense_par(X, y, w, o, coef, b, task, nchunks)
            return float(V.sum()), G.sum(axis=0)
        g = np.zeros(X.shape[1] + 1)
        if sp.issparse(X):
            value = _vg_rows_csr(*_csr(X), y, w, o, coef, b, task, 0, X.shape[0], g)
        else:
            value = _vg_rows_dense(X, y, w, o, coef, b, task, 0, X.shape[0], g)
        return value, g


def linear_predictor(
    X, coef, intercept: float = 0.0, *, n_threads: int | None = None
) -> np.ndarray:
    """``X @ coef + intercept`` in float64, shape ``(n,)``, for dense (float32 or float64, read
    in place) or CSR ``X``; the scores of a fitted fixed effect, the same in fit and score."""
    coef = np.ascontiguousarray(coef, dtype=np.float64)
    if X.shape[0] == 0:
        return np.zeros(0)
    if X.shape[1] == 0:
        return np.full(X.shape[0], float(intercept))
    return _matvec(X, coef, float(intercept), n_threads or default_threads())


def _matvec(X, coef, b, threads):
    """``X coef + b`` in float64, shape ``(n,)``."""
    with _pool(threads):
        if sp.issparse(X):
            return _matvec_csr(*_csr(X), coef, b)
        return _matvec_dense(X, coef, b)


def _rmatvec(X, r, threads):
    """``[X^T r, sum r]``, shape ``(d + 1,)``: the linear loss with unit weights, y = 0, z = r."""
    n = X.shape[0]
    zero, one = np.zeros(n), np.ones(n)
    return _value_grad(X, zero, one, r, np.zeros(X.shape[1]), 0.0, 1, threads)[1]


def _curvature(X, w, o, coef, b, task, threads):
    """``w_i loss''(z_i)`` at ``z = X coef + b + o``, shape ``(n,)``."""
    z = _matvec(X, coef, b, threads)
    z += o
    if task == 0:
        p = expit(z)
        return w * p * (1.0 - p)
    if task == 1:
        return w.copy()
    return w * np.exp(z)


def _weighted_gram(X, dz):
    """``X_a^T diag(dz) X_a`` with ``X_a = [X, 1]``, dense ``(d + 1, d + 1)``."""
    n, d = X.shape
    H = np.zeros((d + 1, d + 1))
    if sp.issparse(X):
        Xw = sp.csr_matrix((X.data.astype(np.float64), X.indices, X.indptr), shape=X.shape)
        DX = sp.diags(dz) @ Xw
        H[:d, :d] = (Xw.T @ DX).toarray()
        H[:d, d] = np.asarray(DX.sum(axis=0)).ravel()
    else:
        for lo in range(0, n, _BLOCK):
            block = np.asarray(X[lo : lo + _BLOCK], dtype=np.float64)
            scaled = block * dz[lo : lo + _BLOCK, None]
            H[:d, :d] += block.T @ scaled
            H[:d, d] += scaled.sum(axis=0)
    H[d, :d] = H[:d, d]
    H[d, d] = dz.sum()
    return H


def _column_sums(X, w):
    """``(sum w, X^T w, (X * X)^T w)`` in float64."""
    n, d = X.shape
    if sp.issparse(X):
        data = X.data.astype(np.float64)
        Xw = sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape)
        X2 = sp.csr_matrix((data * data, X.indices, X.indptr), shape=X.shape)
        return float(w.sum()), Xw.T @ w, X2.T @ w
    sum_wx, sum_wxx = np.zeros(d), np.zeros(d)
    for lo in range(0, n, _BLOCK):
        block = np.asarray(X[lo : lo + _BLOCK], dtype=np.float64)
        wb = w[lo : lo + _BLOCK]
        sum_wx += wb @ block
        sum_wxx += wb @ (block * block)
    return float(w.sum()), sum_wx, sum_wxx


def _shape_error(name, got, expected) -> DataError:
    return DataError(f"'{name}' must have shape {expected}. Got {got} instead.")


def _first_bad_row(bad: np.ndarray) -> int:
    return int(np.argmax(bad))


def _check_X(X):
    """Return X as C-ordered float32/float64 ndarray or CSR matrix; reject NaN and inf."""
    if sp.issparse(X):
        X = X.tocsr() if X.format == "csr" else sp.csr_matrix(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        finite = np.isfinite(X.data)
        if not finite.all():
            p = _first_bad_row(~finite)
            row = int(np.searchsorted(X.indptr, p, side="right") - 1)
            raise DataError(
                f"X has a NaN or infinite value in column {int(X.indices[p])}.", row=row
            )
        return X
    X = np.asarray(X)
    if X.ndim != 2:
        raise DataError(f"X must be a 2-D array (n_rows, n_features). Got shape {X.shape}.")
    if X.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"X must hold numbers. Got dtype {X.dtype}.")
        X = X.astype(np.float64)
    X = np.ascontiguousarray(X)
    # One cheap BLAS pass: a row sum is finite unless the row holds NaN/inf (or overflows).
    suspects = np.flatnonzero(~np.isfinite(X @ np.ones(X.shape[1], dtype=X.dtype)))
    for i in suspects:
        bad = ~np.isfinite(X[i])
        if bad.any():
            raise DataError(
                f"X has a NaN or infinite value in column {_first_bad_row(bad)}.", row=int(i)
            )
    return X


def _check_vector(values, n, name, *, default, nonnegative=False):
    """A float64 copy of shape ``(n,)``; None gives ``default`` everywhere."""
    if values is None:
        return np.full(n, default)
    try:
        v = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"'{name}' must hold numbers ({exc}).", column=name) from exc
    if v.shape != (n,):
        raise _shape_error(name, v.shape, (n,))
    bad = ~np.isfinite(v)
    if bad.any():
        raise DataError(
            f"'{name}' has a NaN or infinite value.", row=_first_bad_row(bad), column=name
        )
    if nonnegative and (v < 0).any():
        i = _first_bad_row(v < 0)
        raise DataError(f"'{name}' must be >= 0. Got {float(v[i])!r}.", row=i, column=name)
    return v


def _check_labels(y, n, task):
    if y is None:
        raise DataError("'y' (the labels) must be given. Got None.")
    y = _check_vector(y, n, "y", default=0.0)
    bad = ((y != 0) & (y != 1)) if task == "logistic" else (y < 0) if task == "poisson" else None
    if bad is not None and bad.any():
        i = _first_bad_row(bad)
        allowed = "0 or 1" if task == "logistic" else ">= 0"
        raise DataError(
            f"A label of task '{task}' must be {allowed}. Got {float(y[i])!r}.", row=i, column="y"
        )
    return y
