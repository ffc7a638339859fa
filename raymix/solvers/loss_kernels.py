"""The compiled (numba) per-row losses and derivatives of :mod:`raymix.solvers.loss`.

Two kernels, each the one the solver that calls it was measured and recorded with:

- :func:`derivatives` (the per-entity Newton, :mod:`raymix.solvers.entity_kernels`): one
  row's ``(loss, loss', loss'')`` with libm's ``exp`` and ``log1p``; its numpy twin is
  :func:`raymix.solvers.loss.derivatives`.
- :func:`block_loss` (the fixed effect's fused pass, :mod:`raymix.solvers.glm_kernels`): a
  block of rows' ``w loss`` and ``w loss'`` with ``exp`` and ``log1p`` written as
  polynomials, so that LLVM vectorises the loop (libm's are scalar calls); compiled with
  contraction (fused multiply-adds), so its twin agrees to an ulp or so, not to the bit.

Both are inlined or linked into their callers, whose numba caches do not see a change in this
file: after editing it, delete the ``__pycache__/*.nbi`` and ``*.nbc`` files of
``raymix/solvers`` (or set ``NUMBA_CACHE_DIR`` to a fresh directory).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from raymix.solvers.loss import LINEAR, LOGISTIC

__all__ = ["block_loss", "derivatives"]

_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's split


@numba.njit(cache=True, nogil=True, inline="always")
def derivatives(task, y, z):
    """(loss, d loss/dz, d2 loss/dz2) at margin ``z``."""
    if task == LOGISTIC:
        e = math.exp(-abs(z))  # in (0, 1]: never overflows
        q = 1.0 + e
        p = 1.0 / q if z >= 0.0 else e / q
        loss = (z if z > 0.0 else 0.0) - z * y + math.log1p(e)
        return loss, p - y, e / (q * q)
    if task == LINEAR:
        return 0.5 * (z - y) * (z - y), z - y, 1.0
    mu = math.exp(z)
    return mu - y * z, mu - y, mu


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
def block_loss(task, z, y, w, r, losses):
    """One block of rows with margins ``z``: ``losses[k] = w loss`` (exactly 0 for a weight
    of 0) and ``r[k] = w loss'``. Elementwise, branch-free loops over views indexed from 0, so
    that LLVM vectorises them; compiled without reassociation so that the range reduction in
    ``_exp_neg`` stays exact, and with numpy's error model (no ZeroDivisionError branches)."""
    if task == LOGISTIC:
        for k in range(z.size):
            zk, yk, wk = z[k], y[k], w[k]
            e = _exp_neg(-abs(zk))
            inv = 1.0 / (1.0 + e)
            p = inv if zk >= 0.0 else e * inv
            loss = max(zk, 0.0) - zk * yk + _log1p_unit(e)
            losses[k] = wk * loss if wk != 0.0 else 0.0
            r[k] = wk * (p - yk)
    elif task == LINEAR:
        for k in range(z.size):
            res, wk = z[k] - y[k], w[k]
            losses[k] = wk * (0.5 * res * res) if wk != 0.0 else 0.0
            r[k] = wk * res
    else:
        for k in range(z.size):
            mu, yk, wk = math.exp(z[k]), y[k], w[k]
            losses[k] = wk * (mu - yk * z[k]) if wk != 0.0 else 0.0
            r[k] = wk * (mu - yk) if wk != 0.0 else 0.0
