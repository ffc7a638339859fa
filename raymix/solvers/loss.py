"""The GLM losses: the one list of tasks, each task's loss, its derivatives and its labels.

For a margin (linear predictor) ``z`` and a label ``y``, with canonical links:

- ``logistic``: ``loss = log(1 + e^z) - y z``, ``loss' = p - y`` with ``p = 1 / (1 + e^-z)``,
  ``loss'' = p (1 - p)``; labels 0 or 1;
- ``linear``: ``loss = (z - y)^2 / 2``, ``loss' = z - y``, ``loss'' = 1``; any label;
- ``poisson``: ``loss = e^z - y z``, ``loss' = e^z - y``, ``loss'' = e^z`` (log link);
  labels ``>= 0``

(scikit-learn's ``HalfBinomialLoss``, ``HalfSquaredError`` and ``HalfPoissonLoss``). A solver
sums ``w_i loss(y_i, z_i)`` over rows with weights ``w_i``; ``z_i`` includes the offset.

Every solver and metric takes its losses from here; the compiled kernels are in
:mod:`raymix.solvers.loss_kernels`. The same maths is written in a few forms that round
differently, and each is kept because the models made with it must stay bit-identical:

- :func:`derivatives` is the numpy twin of the compiled
  :func:`~raymix.solvers.loss_kernels.derivatives` (``e = exp(-|z|)``: never overflows):
  the same operations in the same order, so the two differ only where numpy's ``exp`` and
  scipy's ``log1p`` differ from libm's; :func:`loss` is its first term (the log-loss
  metric). The fixed effect's vectorised :func:`~raymix.solvers.loss_kernels.block_loss`
  agrees with it to a few ulps.
- :func:`mean_derivatives` and :func:`weighted_curvature` write the derivatives with the
  mean ``mu = h(z)`` of :func:`mean` (scipy's ``expit``): the per-entity solver's wide
  entities and the fixed effect's Hessian.

Tasks are passed to the compiled code as their codes, ``TASKS.index(task)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, log1p

from raymix.errors import DataError

__all__ = [
    "LABELS",
    "LINEAR",
    "LOGISTIC",
    "POISSON",
    "TASKS",
    "check_labels",
    "derivatives",
    "invalid_labels",
    "loss",
    "mean",
    "mean_derivatives",
    "task_code",
    "weighted_curvature",
]

#: the tasks (GLM families), in the order of their codes
TASKS = ("logistic", "linear", "poisson")
LOGISTIC, LINEAR, POISSON = (TASKS.index(t) for t in ("logistic", "linear", "poisson"))
#: what a label of each task must be
LABELS = {"logistic": "0 or 1", "linear": "a number", "poisson": ">= 0"}
#: the elementary functions of the twins (a test swaps in libm's, the compiled kernels' own)
_exp, _log1p = np.exp, log1p


def task_code(task: str) -> int:
    """The code of ``task`` (one of :data:`TASKS`) in the compiled kernels."""
    return TASKS.index(task)


def invalid_labels(task: str, y: np.ndarray) -> np.ndarray:
    """Mask of the labels outside ``task``'s range: logistic labels are 0 or 1, Poisson
    labels ``>= 0``, linear labels anything. A NaN is never flagged here: a missing label is
    the reader's business and a non-finite one the solver's."""
    y = np.asarray(y)
    if task == "logistic":
        return (y != 0) & (y != 1) & ~np.isnan(y)
    if task == "poisson":
        return y < 0
    return np.zeros(y.shape, bool)


def check_labels(task: str, y: np.ndarray, *, path: str | None = None, column: str = "y"):
    """Raise a :class:`DataError` at the first label outside ``task``'s range."""
    bad = invalid_labels(task, y)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"A label of task '{task}' must be {LABELS[task]}. Got {float(y[i])!r}.",
            path=path,
            row=i,
            column=column,
        )


def loss(task: int, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per-row ``loss(y, z)`` (the first term of :func:`derivatives`)."""
    if task == LOGISTIC:
        return np.maximum(z, 0.0) - z * y + _log1p(_exp(-np.abs(z)))
    if task == LINEAR:
        return 0.5 * (z - y) * (z - y)
    return _exp(z) - y * z


def derivatives(
    task: int, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row ``(loss, loss', loss'')``: the numpy twin of the compiled
    :func:`raymix.solvers.loss_kernels.derivatives`."""
    if task == LOGISTIC:
        e = _exp(-np.abs(z))  # in (0, 1]: never overflows
        q = 1.0 + e
        p = np.where(z >= 0.0, 1.0 / q, e / q)
        return loss(task, y, z), p - y, e / (q * q)
    if task == LINEAR:
        return loss(task, y, z), z - y, np.ones_like(z)
    mu = _exp(z)
    return mu - y * z, mu - y, mu


def mean(task: int, z: np.ndarray) -> np.ndarray:
    """The mean ``mu = h(z)`` (the inverse link): ``expit(z)``, ``z`` or ``exp(z)``."""
    if task == LOGISTIC:
        return expit(z)
    if task == LINEAR:
        return z
    return np.exp(z)


def mean_derivatives(
    task: int, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row ``(loss, loss', loss'')`` written with the mean (the logistic loss as
    ``logaddexp(0, z) - y z``): the per-entity solver's L-BFGS fallback for wide entities."""
    if task == LOGISTIC:
        p = mean(task, z)
        return np.logaddexp(0.0, z) - y * z, p - y, p * (1.0 - p)
    if task == LINEAR:
        return 0.5 * (z - y) ** 2, z - y, np.ones_like(z)
    mu = mean(task, z)
    return mu - y * z, mu - y, mu


def weighted_curvature(task: int, z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``w loss''(z)`` per row, written with the mean (a new array): the fixed effect's
    Hessian ``X^T diag(w loss'') X``."""
    if task == LOGISTIC:
        p = mean(task, z)
        return w * p * (1.0 - p)
    if task == LINEAR:
        return w.copy()
    return w * mean(task, z)
