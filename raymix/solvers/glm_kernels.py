"""Compiled passes over a fixed-effect shard (private; use :class:`raymix.solvers.glm.GLMLoss`).

One fused pass per evaluation. Rows go by blocks of _ROWS: z = X coef + b + o for the block,
then the loss and r = w loss'(z) of the block (:func:`raymix.solvers.loss_kernels.block_loss`:
vectorised, exp and log1p are written as polynomials, libm's are scalar calls), then X^T r,
while the block is still in L1. Large shards are cut into at most _CHUNKS chunks of rows,
shared out among the threads; chunks' partial sums are added in chunk order, so a result
depends only on the data, never on the thread count (the same models locally and in a Ray
job, deterministic). Small shards run on the calling thread: waking a pool costs more than
they do. fastmath allows only reassociation and contraction (SIMD dot products); NaN and inf
keep their meaning.

Measured (one thread, CPU time, float64, on a busy 2-core machine): 1M x 50 dense logistic
1.15-1.4x one ``X @ w`` (the linear loss ~1.0x: the pass is memory bound); 1M x 10k CSR with
20 nnz a row 1.7-2.2x one scipy ``X @ w`` (gathering coef and scattering into the gradient,
not memory, bound it). numpy/scipy (``X @ coef``, the elementwise loss, then ``r @ X``) cost
~4x and ~3.2x; the same fused loop with libm's exp/log1p ~1.7x and ~2.6x.

Arrays: ``X`` dense ``(n, d)`` (float32 or float64, C order) or CSR; ``y``, ``w``, ``o``
``(n,)`` float64; ``coef`` ``(d,)`` and the intercept ``b``; ``task`` a code of
:mod:`raymix.solvers.loss`. Gradients are ``[X^T r, sum r]``, shape ``(d + 1,)``.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numba
import numpy as np
import scipy.sparse as sp

from raymix.solvers.loss import LINEAR, weighted_curvature
from raymix.solvers.loss_kernels import block_loss

__all__ = [
    "column_sums",
    "curvature",
    "default_threads",
    "matvec",
    "max_threads",
    "rmatvec",
    "value_grad",
    "weighted_gram",
]

_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_LOCK = threading.Lock()  # numba's pool must not be entered from two threads at once
_PARALLEL_WORK = 1 << 20  # stored values + 8 per row, above which a pass uses all threads
_CHUNKS = 32  # chunks of rows of a parallel pass (threads share them out)
_PARTIALS_BYTES = 256 << 20  # bound on the chunks' partial gradients
_BLOCK = 8192  # rows per block in the BLAS-based helpers (Hessian, column sums)
_ROWS = 32  # rows per block inside a kernel: z, then the loss of the block, then X^T r


@numba.njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def _vg_rows_dense(X, y, w, o, coef, b, task, lo, hi, g):
    """Rows lo..hi-1: return ``sum w loss`` and add ``[X^T r, sum r]`` into g ``(d + 1,)``."""
    d = X.shape[1]
    z, r, losses = np.empty(_ROWS), np.empty(_ROWS), np.empty(_ROWS)
    v = 0.0
    for start in range(lo, hi, _ROWS):
        m = min(_ROWS, hi - start)
        for k in range(m):
            acc = b + o[start + k]
            for j in range(d):
                acc += X[start + k, j] * coef[j]
            z[k] = acc
        block_loss(task, z[:m], y[start : start + m], w[start : start + m], r, losses)
        for k in range(m):
            v += losses[k]
            g[d] += r[k]
            for j in range(d):
                g[j] += r[k] * X[start + k, j]
    return v


@numba.njit(cache=True, fastmath=_FASTMATH, error_model="numpy")
def _vg_rows_csr(data, indices, indptr, y, w, o, coef, b, task, lo, hi, g):
    """CSR version of :func:`_vg_rows_dense`."""
    d = g.size - 1
    z, r, losses = np.empty(_ROWS), np.empty(_ROWS), np.empty(_ROWS)
    v = 0.0
    for start in range(lo, hi, _ROWS):
        m = min(_ROWS, hi - start)
        for k in range(m):
            acc = b + o[start + k]
            for p in range(indptr[start + k], indptr[start + k + 1]):
                acc += data[p] * coef[indices[p]]
            z[k] = acc
        block_loss(task, z[:m], y[start : start + m], w[start : start + m], r, losses)
        for k in range(m):
            v += losses[k]
            g[d] += r[k]
            for p in range(indptr[start + k], indptr[start + k + 1]):
                g[indices[p]] += r[k] * data[p]
    return v


@numba.njit(cache=True, parallel=True)
def _vg_dense_par(X, y, w, o, coef, b, task, nchunks):
    n, d = X.shape
    G, V = np.zeros((nchunks, d + 1)), np.zeros(nchunks)
    step = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        V[c] = _vg_rows_dense(X, y, w, o, coef, b, task, c * step, min(n, c * step + step), G[c])
    return V, G  # summed by the caller: numba would split these sums among the threads


@numba.njit(cache=True, parallel=True)
def _vg_csr_par(data, indices, indptr, d, y, w, o, coef, b, task, nchunks):
    n = indptr.size - 1
    G, V = np.zeros((nchunks, d + 1)), np.zeros(nchunks)
    step = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        lo, hi = c * step, min(n, c * step + step)
        V[c] = _vg_rows_csr(data, indices, indptr, y, w, o, coef, b, task, lo, hi, G[c])
    return V, G  # summed by the caller: numba would split these sums among the threads


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _matvec_dense(X, coef, b):
    n, d = X.shape
    z = np.empty(n)
    for i in numba.prange(n):
        s = b
        for j in range(d):
            s += X[i, j] * coef[j]
        z[i] = s
    return z


@numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _matvec_csr(data, indices, indptr, coef, b):
    n = indptr.size - 1
    z = np.empty(n)
    for i in numba.prange(n):
        s = b
        for p in range(indptr[i], indptr[i + 1]):
            s += data[p] * coef[indices[p]]
        z[i] = s
    return z


def _csr(X):
    """CSR arrays with the (non-negative) index arrays viewed as unsigned: numba then drops
    its negative-index wraparound checks, which made the sparse loops ~1.5x slower."""
    unsigned = {np.dtype(np.int32): np.uint32, np.dtype(np.int64): np.uint64}
    return (
        X.data,
        X.indices.view(unsigned[X.indices.dtype]),
        X.indptr.view(unsigned[X.indptr.dtype]),
    )


def max_threads() -> int:
    """numba's pool size: the most threads a pass may use."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def default_threads() -> int:
    """Threads a :class:`~raymix.solvers.glm.GLMLoss` uses by default: ``OMP_NUM_THREADS`` if set (Ray sets it to
    the CPUs of a task or actor, so workers do not oversubscribe), else the CPUs this process
    may run on; at most numba's pool size."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        wanted = int(env)
    else:
        wanted = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(wanted, max_threads()))


@contextmanager
def _pool(threads: int):
    """Hold the kernel lock with numba's pool set to ``threads`` (restored afterwards)."""
    with _LOCK:
        before = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            yield
        finally:
            numba.set_num_threads(before)


def _nchunks(X) -> int:
    """Chunks of rows of a pass, from the data's shape alone: never from the thread count, so
    that a result does not depend on where it runs (a local driver uses all cores, a Ray job's
    driver inherits ``OMP_NUM_THREADS=1``: with one chunk per thread, the movieLens global
    model differed by 3e-12 between the two, and so did every random effect after it).
    At most ``_CHUNKS``, and at most ``_PARTIALS_BYTES`` of per-chunk gradients."""
    n, d = X.shape
    work = (X.nnz if sp.issparse(X) else X.size) + 8 * n
    if work < _PARALLEL_WORK:
        return 1
    return max(1, min(_CHUNKS, n // 1024, _PARTIALS_BYTES // (8 * (d + 1))))


def value_grad(X, y, w, o, coef, b, task, threads):
    """``(sum w loss, [X^T r, sum r])`` with ``r = w loss'(z)``, ``z = X coef + b + o``."""
    nchunks = _nchunks(X)
    with _pool(min(nchunks, threads)):
        if nchunks > 1:
            if sp.issparse(X):
                V, G = _vg_csr_par(*_csr(X), X.shape[1], y, w, o, coef, b, task, nchunks)
            else:
                V, G = _vg_dense_par(X, y, w, o, coef, b, task, nchunks)
            return float(V.sum()), G.sum(axis=0)
        g = np.zeros(X.shape[1] + 1)
        if sp.issparse(X):
            value = _vg_rows_csr(*_csr(X), y, w, o, coef, b, task, 0, X.shape[0], g)
        else:
            value = _vg_rows_dense(X, y, w, o, coef, b, task, 0, X.shape[0], g)
        return value, g


def matvec(X, coef, b, threads):
    """``X coef + b`` in float64, shape ``(n,)``."""
    with _pool(threads):
        if sp.issparse(X):
            return _matvec_csr(*_csr(X), coef, b)
        return _matvec_dense(X, coef, b)


def rmatvec(X, r, threads):
    """``[X^T r, sum r]``, shape ``(d + 1,)``: the linear loss with unit weights, y = 0, z = r."""
    n = X.shape[0]
    zero, one = np.zeros(n), np.ones(n)
    return value_grad(X, zero, one, r, np.zeros(X.shape[1]), 0.0, LINEAR, threads)[1]


def curvature(X, w, o, coef, b, task, threads):
    """``w_i loss''(z_i)`` at ``z = X coef + b + o``, shape ``(n,)``."""
    z = matvec(X, coef, b, threads)
    z += o
    return weighted_curvature(task, z, w)


def weighted_gram(X, dz):
    """``X_a^T diag(dz) X_a`` with ``X_a = [X, 1]``, dense ``(d + 1, d + 1)``."""
    n, d = X.shape
    H = np.zeros((d + 1, d + 1))
    if sp.issparse(X):
        Xw = sp.csr_matrix((X.data.astype(np.float64), X.indices, X.indptr), shape=X.shape)
        DX = sp.diags(dz) @ Xw
        H[:d, :d] = (Xw.T @ DX).toarray()
        H[:d, d] = np.asarray(DX.sum(axis=0)).ravel()
    else:
        for lo in range(0, n, _BLOCK):
            block = np.asarray(X[lo : lo + _BLOCK], dtype=np.float64)
            scaled = block * dz[lo : lo + _BLOCK, None]
            H[:d, :d] += block.T @ scaled
            H[:d, d] += scaled.sum(axis=0)
    H[d, :d] = H[:d, d]
    H[d, d] = dz.sum()
    return H


def column_sums(X, w):
    """``(sum w, X^T w, (X * X)^T w)`` in float64."""
    n, d = X.shape
    if sp.issparse(X):
        data = X.data.astype(np.float64)
        Xw = sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape)
        X2 = sp.csr_matrix((data * data, X.indices, X.indptr), shape=X.shape)
        return float(w.sum()), Xw.T @ w, X2.T @ w
    sum_wx, sum_wxx = np.zeros(d), np.zeros(d)
    for lo in range(0, n, _BLOCK):
        block = np.asarray(X[lo : lo + _BLOCK], dtype=np.float64)
        wb = w[lo : lo + _BLOCK]
        sum_wx += wb @ block
        sum_wxx += wb @ (block * block)
    return float(w.sum()), sum_wx, sum_wxx
