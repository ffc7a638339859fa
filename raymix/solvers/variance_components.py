"""The random-effect variance of a GLMix coordinate, estimated from the data (``l2="auto"``).

A random effect's per-entity penalty ``(l2/2) ||theta_e||^2`` is the negative log-density of
a Gaussian prior ``theta_e ~ N(0, sigma^2 I)`` with ``l2 = 1/sigma^2``: fitting every
entity's MAP model is the inner step of a mixed model, and ``sigma^2`` is its variance
component. EM with a Laplace approximation estimates it: with the MAP ``theta_e`` and the
posterior variances ``v_e = diag((H_e + l2 I)^-1)`` (``H_e`` the entity's loss Hessian at
the MAP) under the current ``l2``, the M-step is

    sigma^2 = (1 / m) sum_e sum_j (theta_ej^2 + v_ej),

over the ``m`` penalized coefficients of all entities (the slopes an entity's rows touch,
plus the intercept when it is regularized); then ``l2 = 1/sigma^2``, and again until ``l2``
settles. Coefficients of features an entity never sees keep their prior exactly and are left
out. Pure numpy: the sums come from the bucket actors and are added up by the driver.

Like PQL, the Laplace approximation underestimates ``sigma^2`` for binary labels when the
entities have few rows (about 25% low at 60 rows per entity and ``sigma^2 = 1``, a few %
at 300 rows): ``l2`` errs on the side of more shrinkage.

The **linear** task has a residual variance too: ``y = ... + e``, ``e ~ N(0, sigma_e^2 /
w)``, and the per-entity objective ``sum w r^2 / 2 + (l2/2) ||theta||^2`` is the posterior's
when ``l2 = sigma_e^2 / sigma^2``. The solver's variances ``v = diag((H + l2 I)^-1)`` (``H =
X'WX``) are then relative to ``sigma_e^2``, and maximum likelihood (``lmer(REML=FALSE)``)
estimates both (:func:`next_linear_l2`): with the fit at the current ``l2``,

    sigma_e^2 = PWRSS / n,   PWRSS = sum w r^2 + sum over the random effects of l2 ||theta||^2,
    sigma^2   = (1 / m) sum_e sum_j (theta_ej^2 + sigma_e^2 v_ej),

``r`` the residuals of the whole model (every coordinate's score) on the ``n`` training
rows; the other random effects' penalties come from their last fits
(:class:`ResidualVariance`, shared by them). At the fixed point these are the stationarity
conditions of the profiled ML deviance of :mod:`raymix.solvers.mixed_linear` with the
entity-block posterior variances in place of the joint ones: exact for one random effect
(its entities' blocks are independent given the fixed effects). For crossed random effects
an entity's block is its posterior given the other factors' effects, which misses most of
all one direction the likelihood does not see: shifting the mean intercept of factor ``k``
by ``s_k`` with ``sum_k s_k = 0`` leaves every prediction unchanged, so only the priors
hold it (precision ``D_k = m_k l2_k``, ``m_k`` factor ``k``'s penalized intercepts), and
each of factor ``k``'s intercepts carries the exact extra relative variance

    F_k = 1/D_k - (1/D_k)^2 / sum_j (1/D_j)        (0 for one factor; 1/D_k beside a factor
                                                    whose intercepts are not penalized),

added to ``sum v`` (:func:`next_linear_l2`'s ``partners``: the other factors' ``D_j``).
What is left out (an entity's covariance with the levels of the other factors it shares
rows with beyond that shift) is of the order of ``1/levels`` of the trace term.

**REML** (``lmer(REML=TRUE)``, ``Recipe.variance_method="reml"``) integrates the ``p``
fixed-effect coefficients out under a flat prior. Its stationarity conditions are

    sigma_e^2 = PWRSS / (n - p),
    sigma^2   = (1 / m) sum_e sum_j (theta_ej^2 + sigma_e^2 c_ej),

with ``c`` the random effects' block of the inverse of the *joint* system (fixed effects
included): ``C = A^-1 + G S^-1 G'``, ``A`` the random effects' system, ``G = A^-1 Z'WX`` and
``S = X'WX - X'WZ G`` the fixed effects' precision given the data. ``p`` counts the
unpenalized fixed coefficients: all of a fixed effect with ``l2=0``; with ``l2 > 0`` only its
intercept (when it is not regularized): the penalized slopes are then a ridge of known
variance, not flat-prior parameters (:meth:`ResidualVariance.fixed`). The fixed intercept's
part of ``G S^-1 G'`` is computed exactly for one factor: ``g_e = A_e^-1 Z_e'W 1`` is the
entity's penalized least-squares fit of the constant label 1 (offsets 0) at the current
``l2``, and ``S = sum w (1 - z.g)`` (:func:`intercept_coupling`), so the penalized
coefficients' ``sum c`` gains ``sum_e ||g_e||^2 / S`` (``F_k ~ 1/D_k`` of a free partner,
refined: for a balanced one-way design it gives the closed-form REML). The fixed intercept
is every factor's free partner, so for crossed factors it takes the place of their mutual
shift ``F_k``; each factor's ``S`` is taken given its own entities only. The slopes' part of
``G S^-1 G'`` is left out: for a covariate that varies within entities it is ``O(1/n)`` of
the trace term (measured in ``tests/coordinates/test_linear_components.py``); for a
covariate constant within entities it is not small.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


def prior_moments(models, regularize_intercept: bool) -> tuple[float, int]:
    """``(sum of theta^2 + v, number of terms)`` over the penalized coefficients of ``models``
    (:class:`~raymix.solvers.entity.EntityModels` fitted with ``variance="full"``)."""
    if models is None or models.n_entities == 0:
        return 0.0, 0
    if models.variances is None:
        raise ValueError("prior_moments needs models fitted with variance='full'")
    var = models.variances
    is_intercept = np.zeros(var.size, bool)
    is_intercept[models.intercept_slots] = True
    total = float(np.sum(models.coef_value**2) + np.sum(var[~is_intercept]))
    count = int(models.coef_value.size)
    if regularize_intercept:
        b, vb = models.intercepts, var[is_intercept]
        total += float(np.sum(b**2) + np.sum(vb))
        count += int(b.size)
    return total, count


def next_l2(moments: list[tuple[float, int]], l2: float) -> float:
    """The M-step: ``1/sigma^2`` from the actors' moments (``l2`` unchanged without any)."""
    total = sum(t for t, _ in moments)
    count = sum(c for _, c in moments)
    if count == 0 or total <= 0:
        return l2
    return count / total


def solve_l2(
    em_step: Callable[[float], float], l2: float = 1.0, tol: float = 1e-3, max_iter: int = 30
) -> tuple[float, int]:
    """The fixed point ``l2 = em_step(l2)``, found by the secant method on ``log l2``.

    Plain EM creeps towards it (a contraction rate near 1 when sigma^2 is small: ~100
    iterations); the secant on ``g(u) = log em_step(e^u) - u`` needs a handful of EM steps.
    A secant step is bounded to a factor e^2 and falls back to the EM step when it would not
    be a descent. Returns ``(l2, EM steps taken)``; stops when ``|g| < tol``.
    """
    u_prev: float | None = None
    g_prev: float | None = None
    u = float(np.log(l2))
    for k in range(1, max_iter + 1):
        target = float(np.log(em_step(float(np.exp(u)))))
        g = target - u
        if abs(g) < tol:
            return float(np.exp(target)), k
        step = g  # the EM step
        if u_prev is not None and g_prev is not None and g != g_prev:
            secant = -g * (u - u_prev) / (g - g_prev)
            if np.isfinite(secant) and secant * g > 0:  # same direction as EM
                step = float(np.clip(secant, -2.0, 2.0))
        u_prev, g_prev, u = u, g, u + step
    return float(np.exp(u)), max_iter


@dataclass(frozen=True)
class LinearMoments:
    """What an EM step of a linear ``l2="auto"`` needs from a fit (sums over the entities,
    see :func:`linear_moments`): the penalized coefficients' ``squares`` (``sum theta^2``),
    their relative posterior ``variances`` (``sum v``) and ``count``; the weighted residual
    sum of squares ``rss`` of the whole model and the number of ``rows`` (weight > 0);
    ``intercepts``: how many of the coefficients are penalized intercepts; for REML,
    ``coupling`` and ``absorbed``: the two sums of :func:`intercept_coupling` (0 for ML)."""

    squares: float = 0.0
    variances: float = 0.0
    count: int = 0
    rss: float = 0.0
    rows: int = 0
    intercepts: int = 0
    coupling: float = 0.0
    absorbed: float = 0.0

    def __add__(self, other: LinearMoments) -> LinearMoments:
        return LinearMoments(
            self.squares + other.squares,
            self.variances + other.variances,
            self.count + other.count,
            self.rss + other.rss,
            self.rows + other.rows,
            self.intercepts + other.intercepts,
            self.coupling + other.coupling,
            self.absorbed + other.absorbed,
        )

    def fixed_intercept_variance(self) -> float:
        """REML's ``sum_e ||g_e||^2 / S`` (module docstring), 0 without the sums."""
        if self.coupling <= 0 or self.absorbed <= 0:
            return 0.0
        return self.coupling / self.absorbed


def linear_moments(
    models, regularize_intercept: bool, residuals: np.ndarray, weights: np.ndarray
) -> LinearMoments:
    """The :class:`LinearMoments` of ``models`` (fitted with ``variance="full"``) and of the
    rows' ``residuals`` (label - offset - score) with their ``weights``."""
    rss, rows = float(np.sum(weights * residuals**2)), int(np.count_nonzero(weights > 0))
    if models is None or models.n_entities == 0:
        return LinearMoments(rss=rss, rows=rows)
    if models.variances is None:
        raise ValueError("linear_moments needs models fitted with variance='full'")
    is_intercept = np.zeros(models.variances.size, bool)
    is_intercept[models.intercept_slots] = True
    squares = float(np.sum(models.coef_value**2))
    variances = float(np.sum(models.variances[~is_intercept]))
    count, intercepts = int(models.coef_value.size), 0
    if regularize_intercept:
        squares += float(np.sum(models.intercepts**2))
        variances += float(np.sum(models.variances[is_intercept]))
        intercepts = int(models.intercepts.size)
        count += intercepts
    return LinearMoments(squares, variances, count, rss, rows, intercepts)


def intercept_coupling(
    ones, regularize_intercept: bool, scores: np.ndarray, weights: np.ndarray
) -> tuple[float, float]:
    """REML's coupling of a random effect with the fixed intercept (module docstring):
    ``ones`` are the entities' fits of the constant label 1 with offsets 0 at the current
    ``l2`` (``g_e``), ``scores`` their scores ``z.g`` on the rows, with the rows'
    ``weights``; returns ``(sum of g^2 over the penalized coefficients, sum w (1 - z.g))``."""
    absorbed = float(np.sum(weights * (1.0 - scores)))
    if ones is None or ones.n_entities == 0:
        return 0.0, absorbed
    squares = float(np.sum(ones.coef_value**2))
    if regularize_intercept:
        squares += float(np.sum(ones.intercepts**2))
    return squares, absorbed


@dataclass(frozen=True)
class LinearStep:
    """An EM step's result: the next ``l2`` and the estimates it came from."""

    l2: float
    sigma_e2: float
    sigma2: float
    penalty: float  # this random effect's l2 ||theta||^2 at the step's l2
    precision: float  # its intercepts' D = m l2 at the step's l2 (0 without any)


def shift_variance(own: float, partners: Sequence[float]) -> float:
    """``F_k`` of the module docstring: ``own`` is ``D_k``, ``partners`` the other factors'
    ``D_j`` (0: intercepts not penalized)."""
    if not partners or own <= 0:
        return 0.0
    if min(partners) <= 0:
        return 1.0 / own
    inverse = 1.0 / own
    return inverse - inverse * inverse / (inverse + sum(1.0 / d for d in partners))


def next_linear_l2(
    moments: LinearMoments,
    l2: float,
    others: float = 0.0,
    partners: Sequence[float] = (),
    fixed: int | None = None,
) -> LinearStep:
    """The M-step of a linear random effect (module docstring): ``sigma_e^2`` from the fit at
    ``l2`` (``others``: the other random effects' penalties), ``sigma^2``, and ``l2 =
    sigma_e^2 / sigma^2``; ``partners``: the other factors' intercept precisions ``D_j``
    (none for one factor). ``fixed``: None for ML, else REML with that many fixed
    coefficients ``p`` (and the fixed intercept's coupling when ``moments`` carry it).
    Without coefficients or rows, ``l2`` is kept."""
    m = moments
    penalty, precision = l2 * m.squares, m.intercepts * l2
    coupled = m.fixed_intercept_variance() if fixed is not None else 0.0
    if coupled > 0:  # the fixed intercept: every factor's free partner
        variances = m.variances + coupled
    else:
        variances = m.variances + m.intercepts * shift_variance(precision, partners)
    dof = m.rows - (fixed or 0)
    if m.rows == 0 or dof <= 0:
        return LinearStep(l2, float("nan"), float("nan"), penalty, precision)
    sigma_e2 = (m.rss + penalty + others) / dof
    if m.count == 0:
        return LinearStep(l2, sigma_e2, float("nan"), penalty, precision)
    sigma2 = (m.squares + sigma_e2 * variances) / m.count
    if not sigma2 > 0 or not sigma_e2 > 0:
        return LinearStep(l2, sigma_e2, sigma2, penalty, precision)
    return LinearStep(sigma_e2 / sigma2, sigma_e2, sigma2, penalty, precision)


def intercept_kind(fit_intercept: bool, regularize_intercept: bool) -> str | None:
    """How a coordinate fits its intercept, as :class:`ResidualVariance` takes it:
    "penalized", "free" (fitted, not penalized) or None (not fitted)."""
    if not fit_intercept:
        return None
    return "penalized" if regularize_intercept else "free"


@dataclass
class ResidualVariance:
    """The residual variance of a linear model, shared by its ``l2="auto"`` random effects:
    each records its penalty ``l2 ||theta||^2`` after its fit, and reads the others' sum for
    its own estimate of ``PWRSS``; and its intercepts' precision ``D`` (None: it fits no
    intercept; 0: not penalized), the others' are its ``partners``. ``sigma_e2`` is the
    last estimate. ``method``: "ml" or "reml" (the recipe's ``variance_method``); the fixed
    effects record what REML integrates out (:meth:`fixed`)."""

    penalties: dict[str, float] = field(default_factory=dict)
    precisions: dict[str, float | None] = field(default_factory=dict)
    sigma_e2: float | None = None
    method: str = "ml"
    fixed_effects: dict[str, tuple[int, bool]] = field(default_factory=dict)

    def fixed(self, name: str, dim: int, l2: float, intercept: str | None) -> None:
        """Record fixed effect ``name`` (``dim`` features, its ``l2``, ``intercept``:
        "free", "penalized" or None): REML integrates out its unpenalized coefficients,
        every one with ``l2 = 0``, else only a free intercept."""
        flat_intercept = intercept == "free" or (intercept == "penalized" and l2 == 0)
        p = (dim if l2 == 0 else 0) + int(flat_intercept)
        self.fixed_effects[name] = (p, flat_intercept)

    def reml(self) -> int | None:
        """REML's ``p`` (None for ML)."""
        if self.method != "reml":
            return None
        return sum(p for p, _ in self.fixed_effects.values())

    def fixed_intercept(self) -> bool:
        """Whether REML integrates out a fixed intercept (its coupling is then asked for)."""
        return self.method == "reml" and any(flat for _, flat in self.fixed_effects.values())

    def others(self, name: str) -> float:
        return float(sum(p for k, p in self.penalties.items() if k != name))

    def partners(self, name: str) -> list[float]:
        return [d for k, d in self.precisions.items() if k != name and d is not None]

    def record(self, name: str, step: LinearStep, intercept: str | None = "penalized") -> None:
        """``intercept``: "penalized", "free" (fitted, not penalized) or None (not fitted)."""
        self.penalties[name] = step.penalty
        self.precisions[name] = (
            None if intercept is None else step.precision if intercept == "penalized" else 0.0
        )
        self.sigma_e2 = step.sigma_e2

    def forget(self, name: str) -> None:
        self.penalties.pop(name, None)
        self.precisions.pop(name, None)
