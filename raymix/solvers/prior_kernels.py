"""Compiled pieces of a Gaussian prior in the per-entity Newton (private; see
:mod:`raymix.solvers.prior` for the maths and :mod:`raymix.solvers.entity_kernels` for where
they are called).

An entity's local parameters are ``theta = [b, w_feats]`` (``b`` only with an intercept); the
prior's penalty on them is ``(1/2) (theta - mu)' P (theta - mu)``, held as ``lam`` (``P``'s
diagonal) and ``mu`` when the prior is diagonal, and as the dense row-major ``p x p`` matrix
``P`` when it is full. ``pri = (ptr, index, mean, precision, has_intercept, full_ptr, full)``
is :class:`~raymix.solvers.prior.EntityPriors`' arrays (``full_ptr`` empty when diagonal).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _position(values, d, c):
    lo, hi = 0, d
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < c:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def seed_features(k, pri, feats, max_d):
    """Copy entity ``k``'s prior features into ``feats`` (sorted); their count, or -1 if
    they exceed ``max_d``."""
    ptr, index = pri[0], pri[1]
    q0, q1 = ptr[k], ptr[k + 1]
    if q1 - q0 > max_d:
        return -1
    for j in range(q0, q1):
        feats[j - q0] = index[j]
    return q1 - q0


@njit(cache=True, nogil=True)
def penalty_terms(k, pri, feats, d, fb, ps, l2, lam, mu, P):
    """Fill ``lam``, ``mu`` (and ``P`` when full) for entity ``k``'s ``p = fb + d`` local
    parameters: the prior where it has an entry, else the ridge (``l2``; the intercept 0 when
    it is not regularized, i.e. ``ps == 1``)."""
    ptr, index, mean, precision, known, full_ptr, full = pri
    p = fb + d
    is_full = full_ptr.shape[0] > 0
    for a in range(p):
        lam[a] = l2 if a >= ps else 0.0
        mu[a] = 0.0
    q0, q1 = ptr[k], ptr[k + 1]
    v0 = q0 + k  # the entity's [b, w...] slice of mean and precision
    q = q1 - q0 + 1
    b_local = 0 if (fb == 1 and known[k]) else -1
    if b_local == 0:
        lam[0] = precision[v0]
        mu[0] = mean[v0]
    for j in range(q0, q1):
        a = fb + _position(feats, d, index[j])
        lam[a] = precision[v0 + 1 + j - q0]
        mu[a] = mean[v0 + 1 + j - q0]
    if not is_full:
        return
    for a in range(p * p):
        P[a] = 0.0
    for a in range(p):
        P[a * p + a] = lam[a]
    f0 = full_ptr[k]
    for e in range(q):
        a = b_local if e == 0 else fb + _position(feats, d, index[q0 + e - 1])
        if a < 0:
            continue
        for e2 in range(q):
            c = b_local if e2 == 0 else fb + _position(feats, d, index[q0 + e2 - 1])
            if c >= 0:
                P[a * p + c] = full[f0 + e * q + e2]


@njit(cache=True, nogil=True)
def penalty_value(theta, p, lam, mu, P, is_full):
    """``(1/2) (theta - mu)' P (theta - mu)``."""
    s = 0.0
    if is_full:
        for a in range(p):
            da = theta[a] - mu[a]
            r = 0.0
            for c in range(p):
                r += P[a * p + c] * (theta[c] - mu[c])
            s += da * r
    else:
        for a in range(p):
            da = theta[a] - mu[a]
            s += lam[a] * da * da
    return 0.5 * s


@njit(cache=True, nogil=True)
def add_penalty_gradient(theta, p, lam, mu, P, is_full, g):
    """``g += P (theta - mu)``."""
    for a in range(p):
        if is_full:
            r = 0.0
            for c in range(p):
                r += P[a * p + c] * (theta[c] - mu[c])
            g[a] += r
        else:
            g[a] += lam[a] * (theta[a] - mu[a])


@njit(cache=True, nogil=True)
def add_penalty_hessian(p, lam, P, is_full, H):
    """``H += P`` on the lower triangle of the row-major ``p x p`` ``H``."""
    for a in range(p):
        if is_full:
            for c in range(a + 1):
                H[a * p + c] += P[a * p + c]
        else:
            H[a * p + a] += lam[a]
