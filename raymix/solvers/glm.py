"""Fixed-effect GLM: the loss of a shard of rows, and the L-BFGS / OWL-QN minimiser.

Parameters are ``theta = [coef (d,), b]``, **the intercept last** (GDMix's order); without an
intercept ``theta = coef``. The objective, a sum over rows (not a mean), is

    f(theta) = sum_i w_i loss(y_i, z_i) + (l2/2) ||coef||^2 + l1 ||coef||_1
               [+ (l2/2) b^2 + l1 |b|  if regularize_intercept],
    z_i = x_i . coef + b + o_i,

with ``w_i`` the sample weights (default 1), ``o_i`` the offsets (default 0) and ``loss``
one of :mod:`raymix.solvers.loss`'s (``"logistic"``, ``"linear"``, ``"poisson"``). With a
Gaussian prior (:mod:`raymix.solvers.prior`, e.g. the previous run's model and variances)
the ridge terms become ``(1/2)(theta - mu)' P (theta - mu)`` where the prior has entries.
Where the intercept sits is written in :mod:`raymix.solvers.layout`; the compiled passes
over the rows are in :mod:`raymix.solvers.glm_kernels`.

Nothing here knows about Ray: a worker keeps a :class:`GLMLoss` of its rows and hands
:func:`minimize_glm` a ``value_grad`` that all-reduces the shards' partial sums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.optimize
from threadpoolctl import threadpool_limits

from raymix.errors import DataError, RecipeError
from raymix.solvers import checks
from raymix.solvers import glm_kernels as _k
from raymix.solvers.layout import glm_coef_intercept, glm_penalized, glm_theta
from raymix.solvers.loss import TASKS, check_labels, task_code
from raymix.solvers.owlqn import LBFGSOptions, QuasiNewtonResult, owlqn
from raymix.solvers.prior import Prior, glm_prior_terms
from raymix.solvers.variance import VARIANCE_MODES, coefficient_variances, threshold

__all__ = [
    "ColumnStats",
    "GLMFit",
    "GLMLoss",
    "LBFGSOptions",
    "coefficient_variances",
    "default_threads",
    "fit_glm",
    "linear_predictor",
    "minimize_glm",
    "threshold",
]

default_threads = _k.default_threads


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
        owner = "GLMLoss"
        self.task = checks.choice(owner, "task", task, TASKS)
        threads = checks.integer(owner, "n_threads", n_threads, low=1, none=True)
        self.n_threads = min(_k.default_threads() if threads is None else threads, _k.max_threads())
        self.fit_intercept = checks.boolean(owner, "fit_intercept", fit_intercept)
        self._code = task_code(task)
        self._X = checks.matrix(X)
        n, d = self._X.shape
        self.n_rows, self.n_features = n, d
        self.n_params = d + int(self.fit_intercept)
        if y is None:
            raise DataError("'y' (the labels) must be given. Got None.")
        self._y = _finite_vector(y, n, "y", default=0.0)
        check_labels(task, self._y)
        self._w = _finite_vector(weights, n, "weights", default=1.0)
        checks.nonnegative(self._w, "weights")
        self._o = _finite_vector(offsets, n, "offsets", default=0.0)

    def set_offsets(self, offsets) -> None:
        """Replace the offsets ``(n,)`` (None: zeros) in place; coordinate descent does this."""
        self._o[:] = _finite_vector(offsets, self.n_rows, "offsets", default=0.0)

    def _split(self, theta) -> tuple[np.ndarray, float]:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise checks.shape_error("theta", theta.shape, (self.n_params,))
        coef, b = glm_coef_intercept(theta, self.fit_intercept)
        return np.ascontiguousarray(coef), b

    def value_grad(self, theta) -> tuple[float, np.ndarray]:
        """``(L(theta), grad L(theta))``, the gradient of shape ``(n_params,)``.

        ``grad_coef = X^T r`` and ``grad_b = sum_i r_i`` with ``r_i = w_i loss'(y_i, z_i)``.
        """
        coef, b = self._split(theta)
        value, grad = _k.value_grad(
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
        dz = _k.curvature(self._X, self._w, self._o, coef, b, self._code, self.n_threads)
        dz *= _k.matvec(self._X, v_coef, v_b, self.n_threads)
        out = _k.rmatvec(self._X, dz, self.n_threads)
        return out if self.fit_intercept else out[:-1]

    def hessian(self, theta) -> np.ndarray:
        """Dense Hessian ``X_a^T D X_a`` of shape ``(n_params, n_params)``; small d only."""
        coef, b = self._split(theta)
        dz = _k.curvature(self._X, self._w, self._o, coef, b, self._code, self.n_threads)
        H = _k.weighted_gram(self._X, dz)
        return H if self.fit_intercept else H[:-1, :-1]

    def column_stats(self) -> ColumnStats:
        """Weighted sums ``sum w``, ``sum w x_j``, ``sum w x_j^2`` of this shard."""
        sum_w, sum_wx, sum_wxx = _k.column_sums(self._X, self._w)
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
        """``[coef, intercept]`` (the intercept 0.0 without one)."""
        return glm_theta(self.coef, self.intercept, True)


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
    prior: Prior | None = None,
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
    maxiter=max_iter, pgtol=gtol)`` on theta. ``x0`` (theta order) defaults to zeros, or to
    the mean of ``prior`` (a :class:`~raymix.solvers.prior.Prior` over the feature indices
    ``0..d-1``, which replaces the ridge ``l2`` where it has entries).
    """
    owner = "minimize_glm"
    if not callable(value_grad):
        raise checks.invalid(owner, "value_grad", "a callable", value_grad)
    n_params = checks.integer(owner, "n_params", n_params, low=0)
    l2, l1 = checks.real(owner, "l2", l2), checks.real(owner, "l1", l1)
    fit_intercept = checks.boolean(owner, "fit_intercept", fit_intercept)
    regularize_intercept = checks.boolean(owner, "regularize_intercept", regularize_intercept)
    precondition = checks.boolean(owner, "precondition", precondition)
    checks.regularized_intercept(owner, regularize_intercept, fit_intercept)
    if fit_intercept and n_params < 1:
        raise checks.invalid(owner, "n_params", "at least 1 with fit_intercept=True", n_params)
    if not isinstance(options, LBFGSOptions):
        raise checks.invalid(owner, "options", "an LBFGSOptions", options)
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
    if prior is not None and not isinstance(prior, Prior):
        raise checks.invalid(owner, "prior", "None or a Prior", prior)
    terms = None
    if prior is not None:
        terms = glm_prior_terms(prior, d, l2=l2, fit_intercept=fit_intercept,
                                regularize_intercept=regularize_intercept)  # fmt: skip
    theta0 = np.zeros(n_params) if x0 is None else np.array(x0, dtype=np.float64)
    if x0 is None and terms is not None:
        theta0 = terms[0].copy()
    if theta0.shape != (n_params,) or not np.all(np.isfinite(theta0)):
        raise checks.invalid(owner, "x0", f"None or a finite array of shape ({n_params},)", x0)

    if n_params == 0:  # nothing to fit; still one call, as on every other worker
        value, _ = value_grad(theta0)
        return GLMFit(theta0, 0.0, 0, True, float(value), "no parameters to fit")
    penalized = glm_penalized(n_params, fit_intercept, regularize_intercept)
    A = None
    if precondition and stats is not None:  # stats was checked above
        centre = fit_intercept and not (l1 > 0 and regularize_intercept)
        A = _Standardize.from_stats(stats, fit_intercept, centre)

    def smooth(u):
        theta = u if A is None else A.to_theta(u)
        value, grad = value_grad(theta)
        grad = np.asarray(grad, dtype=np.float64)
        if terms is not None:
            mu, P = terms
            r = theta - mu
            Pr = P @ r if P.ndim == 2 else P * r
            value = value + 0.5 * float(r @ Pr)
            grad = grad + Pr
        elif l2 > 0:
            value = value + 0.5 * l2 * float(penalized @ (theta * theta))
            grad = grad + l2 * penalized * theta
        return float(value), grad if A is None else A.grad_to_u(grad)

    u0 = theta0 if A is None else A.to_u(theta0)
    # scipy's L-BFGS-B calls OpenBLAS on vectors of n_params: its spinning threads fought the
    # loss's numba threads for the 2 cores (movieLens' global model: 20 ms instead of 1 ms a
    # loss evaluation, the fit 0.5 s instead of 0.05 s); one BLAS thread is all it needs.
    with threadpool_limits(limits=1, user_api="blas"):
        res = _minimize(smooth, u0, l1, penalized, A, options)
    theta = res.x if A is None else A.to_theta(res.x)
    coef, intercept = glm_coef_intercept(theta, fit_intercept)
    return GLMFit(np.array(coef), intercept, res.n_iter, bool(res.converged), res.fun, res.message)


def _minimize(
    smooth, u0, l1: float, penalized, A: _Standardize | None, options: LBFGSOptions
) -> QuasiNewtonResult:
    """L-BFGS-B, or OWL-QN with an L1 term, on the variables u."""
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
        return QuasiNewtonResult(
            res.x, float(res.fun), int(res.nit), int(res.nfev), res.status == 0, str(res.message)
        )
    lam = l1 * penalized
    if A is not None:  # |coef_j| = |u_j| / scale_j; the intercept is not scaled.
        lam[: A.scale.size] /= A.scale
    return owlqn(smooth, u0, lam, options)


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
    prior: Prior | None = None,
) -> GLMFit:
    """Fit the GLM of the module docstring on in-memory rows: ``GLMLoss`` + ``minimize_glm``.

    ``variance`` ("simple" | "full" | None) adds :func:`coefficient_variances` of the data
    Hessian at the solution (before any thresholding, which is the caller's choice); with a
    ``prior`` the Hessian of the penalty is the prior's precision (the posterior's).
    """
    owner = "fit_glm"
    checks.choice(owner, "task", task, TASKS)
    l2, l1 = checks.real(owner, "l2", l2), checks.real(owner, "l1", l1)
    for name, value in [
        ("fit_intercept", fit_intercept),
        ("regularize_intercept", regularize_intercept),
        ("precondition", precondition),
    ]:
        checks.boolean(owner, name, value)
    if variance is not None:
        checks.choice(owner, "variance", variance, VARIANCE_MODES)
    checks.regularized_intercept(owner, regularize_intercept, fit_intercept)
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
        prior=prior,
    )
    if variance is None:
        return fit
    theta = glm_theta(fit.coef, fit.intercept, fit_intercept)
    hessian = loss.hessian(theta)
    if prior is not None:  # the posterior's: the data's plus the prior's precision
        _, P = glm_prior_terms(prior, loss.n_features, l2=l2, fit_intercept=fit_intercept,
                               regularize_intercept=regularize_intercept)  # fmt: skip
        hessian = hessian + (P if P.ndim == 2 else np.diag(P))
        l2, regularize_intercept = 0.0, False
    variances = coefficient_variances(
        hessian,
        l2,
        fit_intercept=fit_intercept,
        regularize_intercept=regularize_intercept,
        mode=variance,
    )
    return replace(fit, variances=variances)


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
    return _k.matvec(X, coef, float(intercept), n_threads or _k.default_threads())


def _finite_vector(values, n: int, name: str, *, default: float) -> np.ndarray:
    """A finite float64 copy of shape ``(n,)``; None gives ``default`` everywhere."""
    v = checks.vector(values, n, name, default=default)
    checks.finite(v, name)
    return v
