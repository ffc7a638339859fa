"""The per-entity solver's fallback for entities too wide for the dense Newton of
:mod:`raymix.solvers.entity_kernels` (more than ``max_newton_dim`` parameters): scipy's
L-BFGS-B on the same objective ``f_e`` (private; :func:`raymix.solvers.entity.fit_entities`
calls it and documents the maths).
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from raymix.solvers import entity_kernels as _k
from raymix.solvers.loss import mean_derivatives


def fit_wide(problem, k, opt, warm, prior, s0, cov_ptr, out):
    """Entity ``k``, too wide for a dense Newton: scipy L-BFGS-B on ``f_e`` (L1 by splitting
    ``w = w+ - w-`` with bounds ``>= 0``), written into the kernel's outputs at slot ``s0``."""
    task, l2, l1, fit_b, reg_b, max_iter, tol, _, var_mode = opt
    r0, r1 = problem.entity_ptr[k], problem.entity_ptr[k + 1]
    y, wt, off = problem.y[r0:r1], problem.weights[r0:r1], problem.offsets[r0:r1]
    Xe, n, fb = problem.X[r0:r1], r1 - r0, int(fit_b)
    one = None if prior is None else prior.prior(k)
    feats = np.unique(Xe.indices) if one is None else np.union1d(Xe.indices, one.index)
    inv = np.searchsorted(feats, Xe.indices)
    Z = sp.csr_matrix((Xe.data, inv.ravel(), Xe.indptr), shape=(n, feats.size))
    if fit_b:
        Z = sp.hstack([np.ones((n, 1)), Z], format="csr")
    p, ps = Z.shape[1], 0 if (reg_b or not fit_b) else 1
    mu, P = np.zeros(p), np.where(np.arange(p) >= ps, l2, 0.0)
    if one is not None:  # the prior's entries [b, w...] at their local positions
        local = np.concatenate([[0 if fit_b and one.has_intercept else -1],
                                fb + np.searchsorted(feats, one.index)])  # fmt: skip
        used = local >= 0
        mu[local[used]] = one.mean[used]
        if one.full:
            P = np.diag(P)
            P[np.ix_(local[used], local[used])] = one.precision[np.ix_(used, used)]
        else:
            P[local[used]] = one.precision[used]
    theta0 = mu.copy()
    if warm[1].size:
        theta0[0] = warm[0][k] if fit_b else 0.0
        widx, wval = warm[2][warm[1][k] : warm[1][k + 1]], warm[3][warm[1][k] : warm[1][k + 1]]
        pos = np.searchsorted(widx, feats).clip(max=max(widx.size - 1, 0))
        hit = (widx[pos] == feats) if widx.size else np.zeros(feats.size, bool)
        theta0[fb:][hit] = wval[pos[hit]]

    def smooth(th):
        loss, d1, _ = mean_derivatives(task, y, Z @ th + off)
        g = Z.T @ (wt * d1)
        if one is None:  # the ridge, as the kernel has it
            g[ps:] += l2 * th[ps:]
            return (wt @ loss + 0.5 * l2 * th[ps:] @ th[ps:]) / n, g / n
        r = th - mu
        Pr = P @ r if P.ndim == 2 else P * r
        return (wt @ loss + 0.5 * r @ Pr) / max(n, 1), (g + Pr) / max(n, 1)

    opts = {"maxiter": max(10 * max_iter, 1000), "maxcor": 20, "gtol": tol, "ftol": 1e-15}
    if l1 == 0:
        res = scipy.optimize.minimize(smooth, theta0, jac=True, method="L-BFGS-B", options=opts)
        theta = res.x
    else:
        lam = l1 / max(n, 1)

        def split(v):
            f, g = smooth(np.concatenate([v[:fb], v[fb:p] - v[p:]]))
            return f + lam * v[fb:].sum(), np.concatenate([g[:fb], g[fb:] + lam, lam - g[fb:]])

        v0 = np.concatenate([theta0[:fb], np.maximum(theta0[fb:], 0), np.maximum(-theta0[fb:], 0)])
        bounds = [(None, None)] * fb + [(0, None)] * (2 * (p - fb))
        res = scipy.optimize.minimize(split, v0, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)  # fmt: skip
        theta = np.concatenate([res.x[:fb], res.x[fb:p] - res.x[p:]])
    out_b, out_idx, out_val, out_vb, out_var, out_d, status, n_iter, out_cov = out
    d = feats.size
    out_b[k] = theta[0] if fb else 0.0
    out_idx[s0 : s0 + d], out_val[s0 : s0 + d] = feats, theta[fb:]
    out_d[k], status[k] = d, _k.CONVERGED if res.success else _k.MAX_ITER
    n_iter[k] = res.nit
    if var_mode:
        D = wt * mean_derivatives(task, y, Z @ theta + off)[2]
        reg = (np.diag(P) if P.ndim == 2 else P) + 1e-12
        if var_mode == 1:
            var = 1.0 / (Z.multiply(Z).T @ D + reg)
        else:
            H = (Z.T @ Z.multiply(D[:, None])).toarray()
            H += np.diag(reg) if P.ndim == 1 else P + 1e-12 * np.eye(p)
            inverse = np.linalg.inv(H)
            var = np.diag(inverse)
            if var_mode == 3:
                full = np.full((d + 1, d + 1), np.nan)
                full[1 - fb :, 1 - fb :] = inverse
                out_cov[cov_ptr[k] : cov_ptr[k + 1]] = full.ravel()
        out_vb[k] = var[0] if fb else np.nan
        out_var[s0 : s0 + d] = var[fb:]
