"""Limited-memory quasi-Newton minimisers for the fixed effect: options and OWL-QN.

Smooth problems go to scipy's L-BFGS-B (see :func:`raymix.solvers.glm.minimize_glm`). Problems
with an L1 term,

    F(u) = s(u) + sum_j lam_j |u_j|,    s smooth, lam_j >= 0,

go to :func:`owlqn`, the orthant-wise limited-memory quasi-Newton method of Andrew and Gao
(2007) that Photon ML uses through Breeze. Each iteration

1. forms the pseudo-gradient ``pg`` (the minimum-norm subgradient of F),
2. takes the L-BFGS direction ``p = -H pg`` built from pairs of the *smooth* gradient, and zeroes
   the components of ``p`` that disagree in sign with ``-pg``,
3. backtracks along ``p`` inside the orthant ``xi = sign(u)`` (``sign(-pg)`` where ``u_j = 0``),
   projecting any coordinate that leaves it to zero, until
   ``F(u_new) <= F(u) + 1e-4 * pg . (u_new - u)``.

Everything is deterministic, so workers that all-reduce their value and gradient step in
lockstep and call ``fun`` the same number of times.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from raymix.solvers import checks

_ARMIJO = 1e-4
_MAX_BACKTRACKS = 40


@dataclass(frozen=True)
class LBFGSOptions:
    """Stopping rules and memory of L-BFGS / OWL-QN; the defaults are GDMix's.

    ``max_iter``: iterations (GDMix ``num_of_lbfgs_iterations``, 100).
    ``history``: curvature pairs kept (GDMix ``num_of_lbfgs_curvature_pairs``, 10).
    ``tolerance``: relative function reduction, stop when
    ``(f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= tolerance`` (GDMix ``lbfgs_tolerance``, 1e-12;
    scipy's ``factr = tolerance / eps``).
    ``gtol``: stop when the largest absolute (projected or pseudo-) gradient component of the
    optimised variables is at most ``gtol`` (scipy's ``pgtol``, 1e-5). With preconditioning the
    optimised variables are the standardised ones, see :func:`~raymix.solvers.glm.minimize_glm`.
    """

    max_iter: int = 100
    history: int = 10
    tolerance: float = 1e-12
    gtol: float = 1e-5

    def __post_init__(self):
        checks.integer("LBFGSOptions", "max_iter", self.max_iter, low=1)
        checks.integer("LBFGSOptions", "history", self.history, low=1)
        checks.real("LBFGSOptions", "tolerance", self.tolerance)
        checks.real("LBFGSOptions", "gtol", self.gtol)


@dataclass(frozen=True)
class QuasiNewtonResult:
    """Outcome of :func:`owlqn` (and of L-BFGS-B in :func:`~raymix.solvers.glm.minimize_glm`):
    the point, the objective there, iterations, evaluations and why it stopped."""

    x: np.ndarray
    fun: float
    n_iter: int
    n_fev: int
    converged: bool
    message: str


def pseudo_gradient(x: np.ndarray, g: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Minimum-norm subgradient of ``s(x) + sum lam |x|`` given the smooth gradient ``g``."""
    pg = np.where(x > 0, g + lam, np.where(x < 0, g - lam, 0.0))
    at_zero = x == 0
    right, left = g + lam, g - lam
    pg[at_zero] = np.where(
        right[at_zero] < 0, right[at_zero], np.where(left[at_zero] > 0, left[at_zero], 0.0)
    )
    return pg


def _two_loop(pg: np.ndarray, pairs: deque) -> np.ndarray:
    """``H pg`` with the L-BFGS inverse-Hessian approximation of the stored (s, y, rho)."""
    q = pg.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * (s @ q)
        q -= a * y
        alphas.append(a)
    if pairs:
        s, y, _ = pairs[-1]
        q *= (s @ y) / (y @ y)
    for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
        q += (a - rho * (y @ q)) * s
    return q


def owlqn(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    lam: np.ndarray,
    options: LBFGSOptions = LBFGSOptions(),
) -> QuasiNewtonResult:
    """Minimise ``s(x) + sum_j lam[j] |x_j|``; ``fun(x)`` returns ``(s(x), grad s(x))``.

    ``x0`` and ``lam`` have shape ``(p,)``; ``lam[j] = 0`` leaves ``x_j`` unpenalised. Stops
    when ``max |pg| <= options.gtol`` or the relative reduction of F is at most
    ``options.tolerance`` (converged), after ``options.max_iter`` iterations, or when no step
    along a fresh steepest-descent direction decreases F (not converged).
    """
    lam = np.asarray(lam, dtype=np.float64)
    x = np.array(x0, dtype=np.float64)
    f_s, g = fun(x)
    g = np.array(g, dtype=np.float64)
    f = float(f_s) + float(lam @ np.abs(x))
    n_fev = 1
    pairs: deque = deque(maxlen=options.history)
    for it in range(options.max_iter):
        pg = pseudo_gradient(x, g, lam)
        if not np.all(np.isfinite(pg)) or not np.isfinite(f):
            return QuasiNewtonResult(x, f, it, n_fev, False, "objective or gradient is not finite")
        if np.max(np.abs(pg), initial=0.0) <= options.gtol:
            return QuasiNewtonResult(x, f, it, n_fev, True, "max |pseudo-gradient| <= gtol")
        step = _line_search(fun, x, f, pg, lam, pairs)
        n_fev += step[-1]
        if step[0] is None and pairs:  # a stale model: retry once along steepest descent
            pairs.clear()
            step = _line_search(fun, x, f, pg, lam, pairs)
            n_fev += step[-1]
        x_new, f_new, g_new, _ = step
        if x_new is None:
            return QuasiNewtonResult(
                x, f, it, n_fev, False, "line search could not decrease the objective"
            )
        s, y = x_new - x, g_new - g
        sy = s @ y
        if sy > np.finfo(np.float64).eps * (y @ y):
            pairs.append((s, y, 1.0 / sy))
        reduction = (f - f_new) / max(abs(f), abs(f_new), 1.0)
        x, f, g = x_new, f_new, g_new
        if reduction <= options.tolerance:
            return QuasiNewtonResult(
                x, f, it + 1, n_fev, True, "relative reduction of f <= tolerance"
            )
    return QuasiNewtonResult(x, f, options.max_iter, n_fev, False, "reached max_iter")


def _line_search(fun, x, f, pg, lam, pairs):
    """Backtrack along the orthant-constrained quasi-Newton direction.

    Returns ``(x_new, f_new, g_new, n_fev)``, or ``(None, None, None, n_fev)`` if no step of at
    most ``_MAX_BACKTRACKS`` halvings satisfies the Armijo condition.
    """
    direction = -_two_loop(pg, pairs) if pairs else -pg
    direction[direction * pg >= 0] = 0.0
    if not direction @ pg < 0:
        direction = -pg
    orthant = np.where(x != 0, np.sign(x), np.sign(-pg))
    # Without curvature pairs the direction has the gradient's units: start from a unit step.
    alpha = 1.0 if pairs else min(1.0, 1.0 / np.linalg.norm(pg))
    n_fev = 0
    for _ in range(_MAX_BACKTRACKS):
        x_new = x + alpha * direction
        x_new[np.sign(x_new) != orthant] = 0.0
        f_s, g_new = fun(x_new)
        n_fev += 1
        f_new = float(f_s) + float(lam @ np.abs(x_new))
        decrease = pg @ (x_new - x)
        if decrease < 0 and np.isfinite(f_new) and f_new <= f + _ARMIJO * decrease:
            return x_new, f_new, np.array(g_new, dtype=np.float64), n_fev
        alpha *= 0.5
    return None, None, None, n_fev
