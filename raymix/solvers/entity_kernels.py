"""Compiled kernels behind :mod:`raymix.solvers.entity` (private; use ``fit_entities``).

``fit_range`` fits the entities ``lo..hi-1`` one after the other with a damped Newton method
and writes into preallocated outputs. Calls on disjoint ranges touch disjoint output slots and
release the GIL, so the caller runs them in threads; an entity's numbers never depend on the
split. All kernels are ``cache=True`` and are always called with the same argument types
(read-only float64/int64 inputs, ``int32`` or ``int64`` feature indices), so each compiles once.

Notation, per entity with ``n`` rows: ``theta = [b, w]`` (``b`` only with an intercept),
margins ``z_i = o_i + b + x_i.w``, unscaled objective

    F(theta) = sum_i wt_i loss(y_i, z_i) + (l2/2) ||theta[ps:]||^2 + l1 ||w||_1,

where ``ps`` is 0 when the intercept is regularized (or absent) and 1 otherwise. The public
objective is ``F/n``: the scale changes neither the minimizer nor the Newton step, and the
stopping test uses the scaled (min-norm sub)gradient, ``max_j |g_j|/n <= tol``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

LOGISTIC, LINEAR, POISSON = 0, 1, 2
CONVERGED, MAX_ITER, STALLED, TOO_LARGE = 0, 1, 2, 3
_EPS = 2.220446049250313e-16


@njit(cache=True, nogil=True)
def _loss(task, y, z):
    """Per-row loss: logistic log-loss, half squared error, or Poisson deviance part."""
    if task == LOGISTIC:
        if z > 0.0:
            return z - z * y + math.log1p(math.exp(-z))
        return -z * y + math.log1p(math.exp(z))
    if task == LINEAR:
        return 0.5 * (z - y) * (z - y)
    return math.exp(z) - y * z


@njit(cache=True, nogil=True)
def _derivs(task, y, z):
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


@njit(cache=True, nogil=True)
def _local_features(indices, j0, j1, feats, lcol, max_d):
    """Sorted unique feature indices of nnz ``j0:j1`` into ``feats``; local column of each
    nnz into ``lcol``. Returns the count, or -1 if it exceeds ``max_d``."""
    d = 0
    for j in range(j0, j1):
        c = indices[j]
        lo, hi = 0, d
        while lo < hi:
            mid = (lo + hi) >> 1
            if feats[mid] < c:
                lo = mid + 1
            else:
                hi = mid
        if lo < d and feats[lo] == c:
            continue
        if d == max_d:
            return -1
        for m in range(d, lo, -1):
            feats[m] = feats[m - 1]
        feats[lo] = c
        d += 1
    for j in range(j0, j1):
        c = indices[j]
        lo, hi = 0, d
        while lo < hi:
            mid = (lo + hi) >> 1
            if feats[mid] < c:
                lo = mid + 1
            else:
                hi = mid
        lcol[j - j0] = lo
    return d


@njit(cache=True, nogil=True)
def _linear_part(rows, base, fb, v, out):
    """``out_i = base_i + v_b + x_i . v_w`` for the entity's rows (``base`` may be empty).
    ``rows = (n, r0, j0, indptr, lcol, data)``: ``n`` rows from ``r0``, nnz from ``j0``."""
    n, r0, j0, indptr, lcol, data = rows
    b = v[0] if fb else 0.0
    for i in range(n):
        r = r0 + i
        s = b
        if base.shape[0] > 0:
            s += base[r]
        for j in range(indptr[r], indptr[r + 1]):
            s += data[j] * v[fb + lcol[j - j0]]
        out[i] = s


@njit(cache=True, nogil=True)
def _penalty(theta, p, ps, ls, l2, l1):
    s2 = 0.0
    s1 = 0.0
    for a in range(ps, p):
        s2 += theta[a] * theta[a]
    for a in range(ls, p):
        s1 += abs(theta[a])
    return 0.5 * l2 * s2 + l1 * s1


@njit(cache=True, nogil=True)
def _grad_hess(task, rows, y, wt, z, fb, p, theta, ps, l2, g, H):
    """Smooth part of F (loss + L2) with its gradient ``g`` and the lower triangle of its
    Hessian ``H`` (row-major ``p x p``). Rows with zero weight are skipped."""
    n, r0, j0, indptr, lcol, data = rows
    for a in range(p):
        g[a] = 0.0
    for a in range(p * p):
        H[a] = 0.0
    f = 0.0
    for i in range(n):
        r = r0 + i
        w = wt[r]
        if w == 0.0:
            continue
        loss, d1, d2 = _derivs(task, y[r], z[i])
        f += w * loss
        gw = w * d1
        hw = w * d2
        if fb:
            g[0] += gw
            H[0] += hw
        for j in range(indptr[r], indptr[r + 1]):
            a = fb + lcol[j - j0]
            hx = hw * data[j]
            g[a] += gw * data[j]
            if fb:
                H[a * p] += hx
            for jj in range(indptr[r], j + 1):
                c = fb + lcol[jj - j0]
                v = hx * data[jj]
                if a > c:
                    H[a * p + c] += v
                elif a < c:
                    H[c * p + a] += v
                else:
                    H[a * p + a] += v if jj == j else 2.0 * v  # duplicated column in a row
    s2 = 0.0
    for a in range(ps, p):
        s2 += theta[a] * theta[a]
        g[a] += l2 * theta[a]
        H[a * p + a] += l2
    return f + 0.5 * l2 * s2


@njit(cache=True, nogil=True)
def _cholesky(H, L, p):
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
def _chol_solve(L, p, g, x):
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
def _prox_direction(H, g, theta, delta, Hd, p, ls, l1, inner_tol):
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
def _optimality(g, theta, p, ls, l1):
    """Max-abs min-norm subgradient of F (unscaled)."""
    m = 0.0
    for a in range(p):
        v = g[a]
        if a >= ls and l1 > 0.0:
            if theta[a] > 0.0:
                v += l1
            elif theta[a] < 0.0:
                v -= l1
            else:
                v = math.copysign(max(abs(v) - l1, 0.0), v)
        m = max(m, abs(v))
    return m


@njit(cache=True, nogil=True)
def _variance(H, L, p, full, out):
    """SIMPLE: ``1/(diag H + 1e-12)``; FULL: ``diag((H + 1e-12 I)^-1)`` via Cholesky."""
    if not full:
        for a in range(p):
            out[a] = 1.0 / (H[a * p + a] + 1e-12)
        return
    for a in range(p):
        H[a * p + a] += 1e-12
    _cholesky(H, L, p)
    for a in range(p):
        out[a] = 0.0
    col = np.zeros(p)
    for k in range(p):  # column k of L^-1, accumulate its squares by row
        for i in range(p):
            s = 1.0 if i == k else 0.0
            for m in range(k, i):
                s -= L[i * p + m] * col[m]
            col[i] = s / L[i * p + i] if i >= k else 0.0
            if i >= k:
                out[k] += col[i] * col[i]


@njit(cache=True, nogil=True)
def _vectors(m):
    return np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m)


@njit(cache=True, nogil=True)
def fit_range(lo, hi, inp, opt, warm, out):
    """Fit entities ``lo..hi-1``; see the module docstring. ``warm_ptr`` empty = cold start;
    ``var_mode`` 0 none, 1 simple, 2 full. Entities whose ``p`` exceeds ``max_p`` get status
    ``TOO_LARGE`` and are left to the caller. Argument tuples (see ``fit_entities``):
    ``inp = (entity_ptr, indptr, indices, data, y, wt, off, slot_ptr)``, ``opt = (task, l2, l1,
    fit_b, reg_b, max_iter, tol, max_p, var_mode)``, ``warm = (b, ptr, idx, val)``, ``out =
    (b, idx, val, var_b, var, d, status, n_iter)`` with per-entity slots at ``slot_ptr``."""
    entity_ptr, indptr, indices, data, y, wt, off, slot_ptr = inp
    task, l2, l1, fit_b, reg_b, max_iter, tol, max_p, var_mode = opt
    warm_b, warm_ptr, warm_idx, warm_val = warm
    out_b, out_idx, out_val, out_vb, out_var, out_d, out_status, out_iter = out
    fb = 1 if fit_b else 0
    ps = 0 if (reg_b or not fit_b) else 1
    feats = np.empty(max(max_p, 1), indices.dtype)
    cap_n, cap_nnz, cap_p = 64, 1024, 16
    z = np.empty(cap_n)
    u = np.empty(cap_n)
    lcol = np.empty(cap_nnz, np.int64)
    theta, g, delta, Hd, trial = _vectors(cap_p)
    H, L = np.empty(cap_p * cap_p), np.empty(cap_p * cap_p)
    empty = np.empty(0)
    for k in range(lo, hi):
        r0, r1 = entity_ptr[k], entity_ptr[k + 1]
        n = r1 - r0
        j0, j1 = indptr[r0], indptr[r1]
        if j1 - j0 > cap_nnz:
            cap_nnz = 2 * (j1 - j0)
            lcol = np.empty(cap_nnz, np.int64)
        d = _local_features(indices, j0, j1, feats, lcol, max_p - fb)
        if d < 0:
            out_status[k] = TOO_LARGE
            out_d[k] = 0
            continue
        p = fb + d
        if n > cap_n:
            cap_n = 2 * n
            z, u = np.empty(cap_n), np.empty(cap_n)
        if p > cap_p:
            cap_p = 2 * p
            theta, g, delta, Hd, trial = _vectors(cap_p)
            H, L = np.empty(cap_p * cap_p), np.empty(cap_p * cap_p)
        # start: zeros, or the warm model mapped by global feature index
        for a in range(p):
            theta[a] = 0.0
        if warm_ptr.shape[0] > 0:
            if fb:
                theta[0] = warm_b[k]
            i, m, m1 = 0, warm_ptr[k], warm_ptr[k + 1]
            while i < d and m < m1:
                if feats[i] == warm_idx[m]:
                    theta[fb + i] = warm_val[m]
                    i += 1
                    m += 1
                elif feats[i] < warm_idx[m]:
                    i += 1
                else:
                    m += 1
        status, it = CONVERGED, 0
        rows = (n, r0, j0, indptr, lcol, data)
        if n > 0 and p > 0:
            ntol = tol * n
            _linear_part(rows, off, fb, theta, z)
            while True:
                f = _grad_hess(task, rows, y, wt, z, fb, p, theta, ps, l2, g, H)
                f += _penalty(theta, p, p, fb, 0.0, l1)
                opt = _optimality(g, theta, p, fb, l1)
                if opt <= ntol:
                    break
                if it >= max_iter:
                    status = MAX_ITER
                    break
                if l1 > 0.0:
                    for a in range(p):
                        for c in range(a):
                            H[c * p + a] = H[a * p + c]
                    _prox_direction(H, g, theta, delta, Hd, p, fb, l1, max(0.1 * ntol, 1e-3 * opt))
                    dec = _penalty(theta, p, p, fb, 0.0, l1)
                    for a in range(p):
                        trial[a] = theta[a] + delta[a]
                    dec = _penalty(trial, p, p, fb, 0.0, l1) - dec
                else:
                    _cholesky(H, L, p)
                    _chol_solve(L, p, g, delta)
                    dec = 0.0
                for a in range(p):
                    dec += g[a] * delta[a]
                if not dec < 0.0:  # no descent left (or NaN): optimal to working precision
                    status = STALLED if opt > 1e3 * ntol else CONVERGED
                    break
                _linear_part(rows, empty, fb, delta, u)
                t, accepted = 1.0, False
                slack = 4.0 * _EPS * abs(f)
                for _halving in range(50):
                    for a in range(p):
                        trial[a] = theta[a] + t * delta[a]
                    ft = _penalty(trial, p, ps, fb, l2, l1)
                    for i in range(n):
                        r = r0 + i
                        if wt[r] != 0.0:
                            ft += wt[r] * _loss(task, y[r], z[i] + t * u[i])
                    if ft <= f + 1e-4 * t * dec + slack:
                        accepted = True
                        break
                    t *= 0.5
                if not accepted:
                    status = STALLED
                    break
                for a in range(p):
                    theta[a] = trial[a]
                it += 1
                _linear_part(rows, off, fb, theta, z)
        if var_mode > 0 and p > 0:
            if status != CONVERGED or n == 0:  # H is stale (or was never built)
                _linear_part(rows, off, fb, theta, z)
                _grad_hess(task, rows, y, wt, z, fb, p, theta, ps, l2, g, H)
            _variance(H, L, p, var_mode == 2, delta)
        s0 = slot_ptr[k]
        out_b[k] = theta[0] if fb else 0.0
        for a in range(d):
            out_idx[s0 + a] = feats[a]
            out_val[s0 + a] = theta[fb + a]
        if var_mode > 0:
            out_vb[k] = delta[0] if fb else np.nan
            for a in range(d):
                out_var[s0 + a] = delta[fb + a] if p > 0 else np.nan
        out_d[k] = d
        out_status[k] = status
        out_iter[k] = it


@njit(cache=True, nogil=True)
def compact(slot_ptr, out_d, out_val, has_var, threshold, src, dst):
    """Copy the ``out_d[k]`` filled slots of each entity with ``|value| > threshold`` from
    ``src = (idx, val, var)`` into the ragged ``dst = (coef_ptr, idx, val, var)``; ``var``
    keeps one leading intercept slot per entity, filled by the caller."""
    src_idx, src_val, src_var = src
    coef_ptr, idx, val, var = dst
    m = 0
    for k in range(out_d.shape[0]):
        coef_ptr[k] = m
        for s in range(slot_ptr[k], slot_ptr[k] + out_d[k]):
            if abs(src_val[s]) > threshold:
                idx[m] = src_idx[s]
                val[m] = src_val[s]
                if has_var:
                    var[m + k + 1] = src_var[s]
                m += 1
    coef_ptr[out_d.shape[0]] = m
    return m


@njit(cache=True, nogil=True)
def score_groups(group_ptr, model_of_group, x, models, out):
    """``out_r = b_m + x_r . w_m`` for each row ``r`` of group ``g`` with model ``m =
    model_of_group[g]`` (0 when ``m < 0``); ``w_m`` is looked up by binary search.
    ``x = (indptr, indices, data)``, ``models = (intercepts, coef_ptr, coef_index, coef_value)``."""
    indptr, indices, data = x
    intercepts, coef_ptr, coef_index, coef_value = models
    for grp in range(group_ptr.shape[0] - 1):
        m = model_of_group[grp]
        for r in range(group_ptr[grp], group_ptr[grp + 1]):
            if m < 0:
                out[r] = 0.0
                continue
            s = intercepts[m]
            c0, c1 = coef_ptr[m], coef_ptr[m + 1]
            for j in range(indptr[r], indptr[r + 1]):
                c = indices[j]
                lo, hi = c0, c1
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if coef_index[mid] < c:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo < c1 and coef_index[lo] == c:
                    s += data[j] * coef_value[lo]
            out[r] = s
