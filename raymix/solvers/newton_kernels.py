"""Dense linear algebra of the per-entity Newton step (private; see
:mod:`raymix.solvers.entity_kernels`): a ridge-safe Cholesky factorization and solve, the
proximal (L1) direction by coordinate descent, and the variances from the Hessian. Matrices are
row-major ``p x p`` float64 buffers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def cholesky(H, L, p):
    """Lower Cholesky factor of ``H`` (lower triangle) into ``L``; a ridge ``mu I`` is added
    (growing from 1e-12 * max diag) until the factorization is numerically stable."""
    dmax = 0.0
    for a in range(p):
        dmax = max(dmax, H[a * p + a])
    if dmax <= 0.0:
        dmax = 1.0
    mu = 0.0
    for _attempt in range(24):
        ok = True
        for j in range(p):
            s = H[j * p + j] + mu
            for k in range(j):
                s -= L[j * p + k] * L[j * p + k]
            if not s > 1e-14 * (H[j * p + j] + mu):
                ok = False
                break
            ljj = math.sqrt(s)
            L[j * p + j] = ljj
            for i in range(j + 1, p):
                s = H[i * p + j]
                for k in range(j):
                    s -= L[i * p + k] * L[j * p + k]
                L[i * p + j] = s / ljj
        if ok:
            return True
        mu = 1e-12 * dmax if mu == 0.0 else 100.0 * mu
    return False


@njit(cache=True, nogil=True)
def chol_solve(L, p, g, x):
    """Solve ``L L^T x = -g``."""
    for i in range(p):
        s = -g[i]
        for k in range(i):
            s -= L[i * p + k] * x[k]
        x[i] = s / L[i * p + i]
    for i in range(p - 1, -1, -1):
        s = x[i]
        for k in range(i + 1, p):
            s -= L[k * p + i] * x[k]
        x[i] = s / L[i * p + i]


@njit(cache=True, nogil=True)
def prox_direction(H, g, theta, delta, Hd, p, ls, l1, inner_tol):
    """Coordinate descent on the L1-penalized quadratic model (glmnet / newGLMNET):
    ``min_d g.d + d'Hd/2 + l1 ||theta[ls:] + d[ls:]||_1``. ``H`` must be full (symmetric)."""
    for a in range(p):
        delta[a] = 0.0
        Hd[a] = 0.0
    for _sweep in range(1000):
        viol = 0.0
        for j in range(p):
            a = H[j * p + j]
            if a <= 0.0:
                continue
            c = g[j] + Hd[j] - a * delta[j]
            u = a * theta[j] - c
            if j >= ls:
                u = math.copysign(max(abs(u) - l1, 0.0), u)
            new = u / a - theta[j]
            change = new - delta[j]
            if change != 0.0:
                delta[j] = new
                for i in range(p):
                    Hd[i] += H[j * p + i] * change
                viol = max(viol, a * abs(change))
        if viol <= inner_tol:
            break


@njit(cache=True, nogil=True)
def variances(H, L, p, full, out):
    """SIMPLE: ``1/(diag H + 1e-12)``; FULL: ``diag((H + 1e-12 I)^-1)`` via Cholesky."""
    if not full:
        for a in range(p):
            out[a] = 1.0 / (H[a * p + a] + 1e-12)
        return
    for a in range(p):
        H[a * p + a] += 1e-12
    cholesky(H, L, p)
    e, x = np.zeros(p), np.empty(p)
    for k in range(p):  # (H^-1)_kk = x_k where H x = e_k
        e[k] = -1.0
        chol_solve(L, p, e, x)
        e[k] = 0.0
        out[k] = x[k]
