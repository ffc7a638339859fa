"""Post-processing of a fitted fixed effect: coefficient variances and sparsity thresholding.

Both follow GDMix (``fixed_effect_lr_lbfgs_model.py`` and ``util/model_utils.py``); parameters
are in theta order, ``[coef (d,), intercept]`` with the intercept last
(:mod:`raymix.solvers.layout`).
"""

from __future__ import annotations

import numpy as np

from raymix.errors import FitError
from raymix.solvers import checks
from raymix.solvers.layout import glm_penalized

VARIANCE_MODES = ("simple", "full")
_JITTER = 1e-12


def coefficient_variances(
    hessian: np.ndarray,
    l2: float,
    *,
    fit_intercept: bool,
    regularize_intercept: bool = False,
    mode: str = "simple",
) -> np.ndarray:
    """Variances of theta from the Hessian of the data term, shape ``(n_params,)``.

    ``hessian`` is ``X_a^T D X_a`` of shape ``(n_params, n_params)``, where ``X_a`` is X with a
    column of ones appended when there is an intercept and ``D = diag(w_i loss''(z_i))``
    (:meth:`GLMLoss.hessian`, summed over shards). Then, as GDMix does,

        H = hessian + l2 * I    (no l2 on the intercept unless ``regularize_intercept``),
        "simple": var = 1 / (diag(H) + 1e-12),
        "full":   var = diag(inv(H + 1e-12 * I)).
    """
    checks.choice("coefficient_variances", "mode", mode, VARIANCE_MODES)
    H = np.array(hessian, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise FitError(f"The Hessian must be a square matrix. Got shape {H.shape} instead.")
    penalty = float(l2) * glm_penalized(H.shape[0], fit_intercept, regularize_intercept)
    H[np.diag_indices_from(H)] += penalty
    if mode == "simple":
        return 1.0 / (np.diag(H) + _JITTER)
    H[np.diag_indices_from(H)] += _JITTER
    try:
        return np.diag(np.linalg.inv(H)).copy()
    except np.linalg.LinAlgError as exc:
        raise FitError(
            f"Cannot compute 'full' variances: the regularised Hessian is singular ({exc})."
        ) from exc


def threshold(
    coef: np.ndarray, intercept: float, threshold: float = 1e-4
) -> tuple[np.ndarray, float]:
    """Return copies with every value ``|v| <= threshold`` set to 0, the intercept included.

    GDMix applies this with 1e-4 after training (``sparsity_threshold``); it is the caller's
    choice here. ``coef`` has shape ``(d,)``.
    """
    checks.real("threshold", "threshold", threshold)
    coef = np.array(coef, dtype=np.float64)
    coef[np.abs(coef) <= threshold] = 0.0
    intercept = float(intercept)
    return coef, (0.0 if abs(intercept) <= threshold else intercept)
