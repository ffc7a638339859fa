"""Newton polishing of an L-BFGS solution of a smooth (L2) GLM objective.

L-BFGS stops when the *function value* no longer decreases measurably; near the optimum f
changes by less than eps*|f| while the coefficients can still be off by ~sqrt(eps*|f|/h)
(about 1e-7 on small problems), and where they stop depends on rounding, e.g. on how rows
are split across workers. A few Newton steps on the gradient,

    theta <- theta - H^{-1} g,   g = grad f(theta),   H = X^T D X + l2 * diag(penalized),

converge quadratically to the optimum to machine precision, so runs that differ only in
rounding (1 or N workers) agree to ~1e-12. ``gradient`` and ``hessian`` may all-reduce across
workers; every worker then computes identical steps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg


def newton_polish(
    gradient: Callable[[np.ndarray], np.ndarray],
    hessian: Callable[[np.ndarray], np.ndarray],
    theta: np.ndarray,
    *,
    l2: float,
    penalized: np.ndarray,
    max_steps: int = 5,
    rtol: float = 1e-14,
) -> tuple[np.ndarray, int]:
    """Return (polished theta, Newton steps taken). ``gradient``/``hessian`` are of the data term."""
    theta = np.array(theta, dtype=np.float64)
    theta_prev, g_norm = theta, np.inf
    for step in range(max_steps):
        g = gradient(theta) + l2 * penalized * theta
        norm = float(np.max(np.abs(g))) if g.size else 0.0
        if norm >= g_norm:  # no progress left at this precision: keep the previous iterate
            return theta_prev, step - 1
        H = hessian(theta) + np.diag(l2 * penalized)
        try:
            delta = scipy.linalg.solve(H, g, assume_a="pos", check_finite=False)
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError):
            delta = np.linalg.lstsq(H, g, rcond=None)[0]
        theta_prev, g_norm = theta, norm
        theta = theta - delta
        if np.max(np.abs(delta)) <= rtol * (1.0 + np.max(np.abs(theta))):
            return theta, step + 1
    return theta, max_steps
