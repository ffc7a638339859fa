"""Compiled kernels behind :mod:`raymix.solvers.entity` (private; use ``fit_entities``).

``fit_range`` fits the entities ``lo..hi-1`` one after the other with a damped Newton method
and writes into preallocated outputs. Calls on disjoint ranges touch disjoint output slots and
release the GIL, so the caller runs them in threads; an entity's numbers never depend on the
split. All kernels are ``cache=True`` and are always called with the same argument types
(read-only float64/int64 inputs, ``int32`` or ``int64`` feature indices), so each compiles once.

Notation, per entity with ``n`` rows: ``theta = [b, w]`` (``b`` only with an intercept),
margins ``z_i = o_i + b + x_i.w``, unscaled objective

    F(theta) = sum_i wt_i loss(y_i, z_i) + (l2/2) ||theta[ps:]||^2 + l1 ||w||_1,

with ``loss`` and its derivatives from :func:`raymix.solvers.loss_kernels.derivatives`
(inlined here: after changing that file, clear the numba cache, see its docstring),

where ``ps`` is 0 when the intercept is regularized (or absent) and 1 otherwise. The public
objective is ``F/n``: the scale changes neither the minimizer nor the Newton step, and the
stopping test uses the scaled (min-norm sub)gradient, ``max_j |g_j|/n <= tol``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from raymix.solvers import prior_kernels as _pk
from raymix.solvers.loss_kernels import derivatives
from raymix.solvers.newton_kernels import chol_solve, cholesky, prox_direction, variances

CONVERGED, MAX_ITER, STALLED, TOO_LARGE = 0, 1, 2, 3
_EPS = 2.220446049250313e-16
_DENSE_MAX = 1 << 21  # largest dense local design (rows x parameters) an entity may use


@njit(cache=True, nogil=True, inline="always")
def _search(values, lo, hi, c):
    """Position of ``c`` in sorted ``values[lo:hi]`` (or where to insert it)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < c:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True, inline="always")
def _find(feats, d, c, guess):
    """Position of ``c`` in sorted ``feats[:d]`` (or where to insert it); tries ``guess``
    first, which hits when consecutive rows share their (sorted) features."""
    if guess < d and feats[guess] == c:
        return guess
    return _search(feats, 0, d, c)


@njit(cache=True, nogil=True)
def _local_features(indices, j0, j1, feats, d0, lcol, max_d):
    """Sorted unique feature indices of nnz ``j0:j1`` into ``feats``, merged with the ``d0``
    sorted ones already there (a prior's); local column of each nnz into ``lcol``. Returns
    the count, or -1 if it exceeds ``max_d``."""
    d, guess = d0, 0
    for j in range(j0, j1):
        c = indices[j]
        pos = _find(feats, d, c, guess)
        guess = pos + 1
        if pos < d and feats[pos] == c:
            continue
        if d == max_d:
            return -1
        for m in range(d, pos, -1):
            feats[m] = feats[m - 1]
        feats[pos] = c
        d += 1
    guess = 0
    for j in range(j0, j1):
        pos = _find(feats, d, indices[j], guess)
        lcol[j - j0] = pos
        guess = pos + 1
    return d


@njit(cache=True, nogil=True)
def _linear_part(rows, base, scale, v, out):
    """``out_i = scale base_i + v_b + x_i . v_w`` for the entity's rows (``scale`` is a float
    so that numba does not compile one version per literal value).
    ``rows = (n, r0, j0, indptr, lcol, data, Zd, p, fb, dense)``: ``n`` rows from ``r0``, nnz
    from ``j0`` with local columns ``lcol``; if ``dense``, ``Zd`` holds the ``n x p`` local
    design ``[1, x_i]`` row-major instead."""
    n, r0, j0, indptr, lcol, data, Zd, p, fb, dense = rows
    for i in range(n):
        r = r0 + i
        s = scale * base[r]
        if dense:
            for a in range(p):
                s += Zd[i * p + a] * v[a]
        else:
            if fb:
                s += v[0]
            for j in range(indptr[r], indptr[r + 1]):
                s += data[j] * v[fb + lcol[j - j0]]
        out[i] = s


@njit(cache=True, nogil=True)
def _dense_design(rows):
    """Fill ``Zd`` with the entity's local design ``[1, x_i]`` (see ``_linear_part``)."""
    n, r0, j0, indptr, lcol, data, Zd, p, fb, _ = rows
    for a in range(n * p):
        Zd[a] = 0.0
    for i in range(n):
        if fb:
            Zd[i * p] = 1.0
        for j in range(indptr[r0 + i], indptr[r0 + i + 1]):
            Zd[i * p + fb + lcol[j - j0]] = data[j]


@njit(cache=True, nogil=True, inline="always")
def _penalty(theta, p, ps, ls, l2, l1):
    s2 = 0.0
    s1 = 0.0
    for a in range(ps, p):
        s2 += theta[a] * theta[a]
    for a in range(ls, p):
        s1 += abs(theta[a])
    return 0.5 * l2 * s2 + l1 * s1


@njit(cache=True, nogil=True)
def _row_derivs(task, n, r0, y, wt, z, u, t, gw, hw):
    """Weighted loss at margins ``z + t u`` (``u`` may be empty); stores each row's
    ``w_i loss'`` in ``gw`` and ``w_i loss''`` in ``hw``. Zero-weight rows contribute 0."""
    f = 0.0
    for i in range(n):
        w = wt[r0 + i]
        if w == 0.0:
            gw[i] = 0.0
            hw[i] = 0.0
            continue
        zi = z[i] + t * u[i] if u.shape[0] > 0 else z[i]
        loss, d1, d2 = derivatives(task, y[r0 + i], zi)
        f += w * loss
        gw[i] = w * d1
        hw[i] = w * d2
    return f


@njit(cache=True, nogil=True)
def _gradient(rows, gw, theta, ps, l2, g):
    """``g = sum_i gw_i [1, x_i] + l2 theta`` (L2 on ``theta[ps:]`` only)."""
    n, r0, j0, indptr, lcol, data, Zd, p, fb, dense = rows
    for a in range(p):
        g[a] = l2 * theta[a] if a >= ps else 0.0
    for i in range(n):
        if dense:
            for a in range(p):
                g[a] += gw[i] * Zd[i * p + a]
            continue
        if fb:
            g[0] += gw[i]
        for j in range(indptr[r0 + i], indptr[r0 + i + 1]):
            g[fb + lcol[j - j0]] += gw[i] * data[j]


@njit(cache=True, nogil=True)
def _hessian(rows, hw, ps, l2, H):
    """Lower triangle of ``H = sum_i hw_i [1, x_i][1, x_i]' + l2 I`` (row-major ``p x p``).
    Sparse rows must be canonical (sorted, no duplicates): local columns ascend in a row."""
    n, r0, j0, indptr, lcol, data, Zd, p, fb, dense = rows
    for a in range(p * p):
        H[a] = 0.0
    for i in range(n):
        h = hw[i]
        if h == 0.0:
            continue
        if dense:
            for a in range(p):
                hz = h * Zd[i * p + a]
                for c in range(a + 1):
                    H[a * p + c] += hz * Zd[i * p + c]
            continue
        if fb:
            H[0] += h
        j1 = indptr[r0 + i + 1]
        for j in range(indptr[r0 + i], j1):
            a = fb + lcol[j - j0]
            hx = h * data[j]
            if fb:
                H[a * p] += hx
            for jj in range(indptr[r0 + i], j + 1):
                H[a * p + fb + lcol[jj - j0]] += hx * data[jj]
    for a in range(ps, p):
        H[a * p + a] += l2


@njit(cache=True, nogil=True, inline="always")
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


@njit(cache=True, nogil=True, inline="always")
def _vectors(m):
    return np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m)


@njit(cache=True, nogil=True)
def fit_range(lo, hi, inp, opt, warm, pri, out):
    """Fit entities ``lo..hi-1``; see the module docstring. ``warm_ptr`` empty = cold start;
    ``var_mode`` 0 none, 1 simple, 2 full, 3 full and the covariance matrix. Entities whose
    ``p`` exceeds ``max_p`` get status ``TOO_LARGE`` and are left to the caller. Argument
    tuples (see ``fit_entities``): ``inp = (entity_ptr, indptr, indices, data, y, wt, off,
    slot_ptr, cov_ptr)``, ``opt = (task, l2, l1, fit_b, reg_b, max_iter, tol, max_p,
    var_mode)``, ``warm = (b, ptr, idx, val)``, ``pri`` a prior (:mod:`.prior_kernels`; its
    ``ptr`` empty: the ridge ``l2``), ``out = (b, idx, val, var_b, var, d, status, n_iter,
    cov)`` with per-entity slots at ``slot_ptr`` and ``(1 + d)^2`` matrices at ``cov_ptr``."""
    entity_ptr, indptr, indices, data, y, wt, off, slot_ptr, cov_ptr = inp
    task, l2, l1, fit_b, reg_b, max_iter, tol, max_p, var_mode = opt
    warm_b, warm_ptr, warm_idx, warm_val = warm
    out_b, out_idx, out_val, out_vb, out_var, out_d, out_status, out_iter, out_cov = out
    use_prior = pri[0].shape[0] > 0
    full_prior = use_prior and pri[5].shape[0] > 0
    fb = 1 if fit_b else 0
    ps = 0 if (reg_b or not fit_b) else 1
    feats = np.empty(max(max_p, 1), indices.dtype)
    cap_n, cap_nnz, cap_p = 64, 1024, 16
    z, u, gw, hw, gw2, hw2 = _vectors(cap_n)
    lcol = np.empty(cap_nnz, np.int64)
    theta, g, delta, Hd, trial, _ = _vectors(cap_p)
    H, L = np.empty(cap_p * cap_p), np.empty(cap_p * cap_p)
    lam, mu, P = np.empty(cap_p), np.empty(cap_p), np.empty(cap_p * cap_p if full_prior else 0)
    Zd = np.empty(4096)
    empty = np.empty(0)
    for k in range(lo, hi):
        r0, r1 = entity_ptr[k], entity_ptr[k + 1]
        n = r1 - r0
        j0, j1 = indptr[r0], indptr[r1]
        if j1 - j0 > cap_nnz:
            cap_nnz = 2 * (j1 - j0)
            lcol = np.empty(cap_nnz, np.int64)
        d0 = _pk.seed_features(k, pri, feats, max_p - fb) if use_prior else 0
        d = _local_features(indices, j0, j1, feats, d0, lcol, max_p - fb) if d0 >= 0 else -1
        if d < 0:
            out_status[k] = TOO_LARGE
            out_d[k] = 0
            continue
        p = fb + d
        if n > cap_n:
            cap_n = 2 * n
            z, u, gw, hw, gw2, hw2 = _vectors(cap_n)
        if p > cap_p:
            cap_p = 2 * p
            theta, g, delta, Hd, trial, _ = _vectors(cap_p)
            H, L = np.empty(cap_p * cap_p), np.empty(cap_p * cap_p)
            lam, mu = np.empty(cap_p), np.empty(cap_p)
            P = np.empty(cap_p * cap_p if full_prior else 0)
        # start: zeros (the prior's mean), or the warm model mapped by global feature index
        for a in range(p):
            theta[a] = 0.0
        if use_prior:
            _pk.penalty_terms(k, pri, feats, d, fb, ps, l2, lam, mu, P)
            for a in range(p):
                theta[a] = mu[a]
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
        # dense local design when it is cheaper than sparse outer products (SIMD-friendly)
        sparse_cost = 0
        for r in range(r0, r1):
            sparse_cost += (indptr[r + 1] - indptr[r] + 1) * (indptr[r + 1] - indptr[r] + 2)
        dense = n * p * (p + 1) <= 3 * sparse_cost and n * p <= _DENSE_MAX
        if dense and n * p > Zd.shape[0]:
            Zd = np.empty(2 * n * p)
        rows = (n, r0, j0, indptr, lcol, data, Zd, p, fb, dense)
        if dense:
            _dense_design(rows)
        status, it = CONVERGED, 0
        if n > 0 and p > 0:
            ntol = tol * n
            _linear_part(rows, off, 1.0, theta, z)
            f = _row_derivs(task, n, r0, y, wt, z, empty, 0.0, gw, hw)
            if use_prior:
                f += _penalty(theta, p, p, fb, 0.0, l1)
                f += _pk.penalty_value(theta, p, lam, mu, P, full_prior)
            else:
                f += _penalty(theta, p, ps, fb, l2, l1)
            while True:
                if use_prior:
                    _gradient(rows, gw, theta, p, 0.0, g)
                    _pk.add_penalty_gradient(theta, p, lam, mu, P, full_prior, g)
                else:
                    _gradient(rows, gw, theta, ps, l2, g)
                kkt = _optimality(g, theta, p, fb, l1)
                if kkt <= ntol:
                    break
                if it >= max_iter:
                    status = MAX_ITER
                    break
                if use_prior:
                    _hessian(rows, hw, p, 0.0, H)
                    _pk.add_penalty_hessian(p, lam, P, full_prior, H)
                else:
                    _hessian(rows, hw, ps, l2, H)
                if l1 > 0.0:
                    for a in range(p):
                        for c in range(a):
                            H[c * p + a] = H[a * p + c]
                    prox_direction(H, g, theta, delta, Hd, p, fb, l1, max(0.1 * ntol, 1e-3 * kkt))
                    for a in range(p):
                        trial[a] = theta[a] + delta[a]
                    dec = _penalty(trial, p, p, fb, 0.0, l1) - _penalty(theta, p, p, fb, 0.0, l1)
                else:
                    cholesky(H, L, p)
                    chol_solve(L, p, g, delta)
                    dec = 0.0
                for a in range(p):
                    dec += g[a] * delta[a]
                if not dec < 0.0:  # no descent left (or NaN): optimal to working precision
                    status = STALLED if kkt > 1e3 * ntol else CONVERGED
                    break
                _linear_part(rows, off, 0.0, delta, u)
                t, accepted = 1.0, False
                for _halving in range(50):
                    for a in range(p):
                        trial[a] = theta[a] + t * delta[a]
                    if use_prior:
                        ft = _penalty(trial, p, p, fb, 0.0, l1)
                        ft += _pk.penalty_value(trial, p, lam, mu, P, full_prior)
                    else:
                        ft = _penalty(trial, p, ps, fb, l2, l1)
                    ft += _row_derivs(task, n, r0, y, wt, z, u, t, gw2, hw2)
                    if ft <= f + 1e-4 * t * dec + 4.0 * _EPS * abs(f):
                        accepted = True
                        break
                    t *= 0.5
                if not accepted:
                    status = STALLED
                    break
                for a in range(p):
                    theta[a] = trial[a]
                for i in range(n):
                    z[i] += t * u[i]
                f = ft
                gw, gw2, hw, hw2 = gw2, gw, hw2, hw
                it += 1
        if var_mode > 0 and p > 0:  # hw holds the final point's curvatures
            if use_prior:
                _hessian(rows, hw, p, 0.0, H)
                _pk.add_penalty_hessian(p, lam, P, full_prior, H)
            else:
                _hessian(rows, hw, ps, l2, H)
            variances(H, L, p, var_mode >= 2, delta)
            if var_mode == 3:  # H now holds H + 1e-12 I and L its factor
                _covariance(L, p, fb, d, trial, Hd, out_cov, cov_ptr[k])
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
def _covariance(L, p, fb, d, e, x, out, at):
    """``(H + 1e-12 I)^-1`` from its Cholesky factor ``L``, as the ``(1 + d)^2`` row-major
    matrix at ``out[at:]`` over ``[b, w]`` (the intercept's row and column NaN without one)."""
    q = 1 + d
    off = 1 - fb
    for a in range(q * q):
        out[at + a] = np.nan
    for a in range(p):
        e[a] = 0.0
    for c in range(p):  # column c of the inverse: H x = e_c
        e[c] = -1.0
        chol_solve(L, p, e, x)
        e[c] = 0.0
        for a in range(p):
            out[at + (a + off) * q + c + off] = x[a]


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
                lo = _search(coef_index, c0, c1, c)
                if lo < c1 and coef_index[lo] == c:
                    s += data[j] * coef_value[lo]
            out[r] = s
