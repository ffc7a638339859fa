"""Benchmark of the fixed-effect solver (:mod:`raymix.solvers.glm`) on planted logistic models.

For each problem it times

- one fused ``GLMLoss.value_grad`` against one plain ``X @ w`` on the same data in the same
  run (best of a few repeats; the target is a ratio of at most 2.5), and
- a whole fit: ``fit_glm`` (preconditioned, and ``precondition=False``, which is GDMix's
  L-BFGS exactly) against scikit-learn's ``LogisticRegression(solver="lbfgs")`` and glum's
  ``GeneralizedLinearRegressor(family="binomial")``, all on the same objective
  ``sum_i log-loss_i + (l2/2) ||coef||^2`` with an unpenalised intercept
  (sklearn ``C = 1/l2``; glum ``alpha = l2 / n``, as glum averages the loss over rows).
  Each solution is scored with the same function, so the objectives are comparable.

Problems: 1M x 50 dense and well conditioned; 1M x 50 dense, correlated and badly scaled
(columns share a latent factor, scales span 4 decades, means far from 0); 1M x 10k CSR with
20 non-zeros a row. Writes a markdown table to stdout and JSON to
``bench/results/fixed_effect_solver.json``.

    PYTHONPATH=. python bench/fixed_effect_solver.py            # 1M rows, several minutes
    PYTHONPATH=. python bench/fixed_effect_solver.py --quick    # 200k rows, smoke check

(``PYTHONPATH=.`` from the repository root, unless raymix is installed.) Timings are only as
good as the machine is quiet: the JSON records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from threadpoolctl import threadpool_limits

from raymix.solvers.glm import GLMLoss, fit_glm

RESULTS = Path(__file__).resolve().parent / "results" / "fixed_effect_solver.json"
L2 = 1.0


def well_conditioned(n, d, rng):
    X = rng.standard_normal((n, d))
    beta = rng.standard_normal(d) / np.sqrt(d)
    return X, _labels(X @ beta - 0.5, rng)


def badly_scaled(n, d, rng):
    X = rng.standard_normal((n, d))
    X *= 0.45
    X += 0.9 * rng.standard_normal((n, 1))  # a shared latent factor: corr ~0.8
    scales = np.logspace(-2, 2, d)
    X *= scales
    X += np.linspace(-50, 50, d)
    beta = rng.standard_normal(d) / scales / np.sqrt(d)
    return X, _labels((X - X.mean(axis=0)) @ beta - 0.5, rng)


def sparse_rows(n, d, rng, nnz=20):
    indices = np.sort(rng.integers(0, d, (n, nnz)), axis=1).astype(np.int32).ravel()
    indptr = np.arange(0, n * nnz + 1, nnz, dtype=np.int32)
    data = np.ones(n * nnz)
    X = sp.csr_matrix((data, indices, indptr), shape=(n, d))
    X.sum_duplicates()
    beta = 0.5 * rng.standard_normal(d)
    return X, _labels(X @ beta - 0.5, rng)


def _labels(z, rng):
    return (rng.random(z.size) < expit(z)).astype(np.float64)


def best_of(fns, repeats, clock=time.perf_counter):
    """Best time of each function, the functions interleaved so that they share the weather."""
    for fn in fns:
        fn()  # warm-up (and compilation)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            start = clock()
            fn()
            spent.append(clock() - start)
    return [min(spent) for spent in times]


def objective(loss: GLMLoss, coef, intercept) -> float:
    value, _ = loss.value_grad(np.concatenate([coef, [intercept]]))
    return float(value + 0.5 * L2 * coef @ coef)


def time_kernels(name, X, y, repeats):
    """One value_grad against one ``X @ w``: wall time with all threads (numba's kernel and
    BLAS use every core; scipy's sparse product uses one), and CPU time on one thread."""
    loss = GLMLoss(X, y)
    rng = np.random.default_rng(1)
    theta = 0.01 * rng.standard_normal(loss.n_params)
    w = np.ascontiguousarray(theta[:-1], dtype=X.dtype)
    fns = [lambda: loss.value_grad(theta), lambda: X @ w]
    vg, mv = best_of(fns, repeats)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1):
            vg1, mv1 = best_of(fns, repeats, clock=time.process_time)
    finally:
        numba.set_num_threads(threads)
    print(
        f"  all threads: value_grad {vg * 1e3:7.1f} ms, X @ w {mv * 1e3:7.1f} ms, "
        f"ratio {vg / mv:4.2f} | one thread (CPU): {vg1 * 1e3:7.1f} ms, {mv1 * 1e3:7.1f} ms, "
        f"ratio {vg1 / mv1:4.2f}"
    )
    return {
        "problem": name,
        "value_grad_s": vg,
        "matvec_s": mv,
        "ratio": vg / mv,
        "value_grad_1thread_cpu_s": vg1,
        "matvec_1thread_cpu_s": mv1,
        "ratio_1thread": vg1 / mv1,
    }


def fit_all(name, X, y, use_glum, sklearn_max_iter):
    loss = GLMLoss(X, y)
    rows = []

    def record(solver, seconds, coef, intercept, iterations, note=""):
        f = objective(loss, np.asarray(coef, dtype=np.float64).ravel(), float(intercept))
        rows.append(
            {
                "problem": name,
                "solver": solver,
                "seconds": seconds,
                "objective": f,
                "iterations": int(iterations),
                "note": note,
            }
        )
        print(f"  {solver:34s} {seconds:8.2f} s  f = {f:.10e}  iterations {iterations} {note}")

    for precondition in (True, False):
        start = time.perf_counter()
        fit = fit_glm(X, y, l2=L2, precondition=precondition)
        label = "raymix fit_glm" + ("" if precondition else " (precondition=False)")
        note = "" if fit.converged else "not converged: " + fit.message
        record(label, time.perf_counter() - start, fit.coef, fit.intercept, fit.n_iter, note)

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    sk = LogisticRegression(C=1.0 / L2, solver="lbfgs", max_iter=sklearn_max_iter)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        sk.fit(X, y)
    note = "not converged" if any(w.category is ConvergenceWarning for w in caught) else ""
    record(
        "sklearn LogisticRegression(lbfgs)",
        time.perf_counter() - start,
        sk.coef_[0],
        sk.intercept_[0],
        sk.n_iter_[0],
        note,
    )

    if use_glum:
        from glum import GeneralizedLinearRegressor

        # glum's default IRLS solver forms a dense d x d Hessian: minutes at d = 10,000.
        solver = "lbfgs" if sp.issparse(X) else "auto"
        glm = GeneralizedLinearRegressor(
            family="binomial", alpha=L2 / X.shape[0], l1_ratio=0.0, solver=solver
        )
        start = time.perf_counter()
        glm.fit(X, y)
        record(
            f"glum GeneralizedLinearRegressor({solver})",
            time.perf_counter() - start,
            glm.coef_,
            glm.intercept_,
            glm.n_iter_,
        )
    return rows


def markdown(kernels, fits) -> str:
    lines = [
        "| problem | value_grad (ms) | X @ w (ms) | ratio | 1 thread: value_grad | X @ w | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k in kernels:
        lines.append(
            f"| {k['problem']} | {k['value_grad_s'] * 1e3:.1f} | {k['matvec_s'] * 1e3:.1f} "
            f"| {k['ratio']:.2f} | {k['value_grad_1thread_cpu_s'] * 1e3:.1f} "
            f"| {k['matvec_1thread_cpu_s'] * 1e3:.1f} | {k['ratio_1thread']:.2f} |"
        )
    lines += [
        "",
        "| problem | solver | fit (s) | iterations | objective | vs best | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for problem in dict.fromkeys(f["problem"] for f in fits):
        group = [f for f in fits if f["problem"] == problem]
        best = min(f["objective"] for f in group)
        for f in group:
            gap = (f["objective"] - best) / abs(best)
            lines.append(
                f"| {problem} | {f['solver']} | {f['seconds']:.2f} | {f['iterations']} "
                f"| {f['objective']:.10e} | {gap:.1e} | {f['note']} |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of every problem")
    parser.add_argument("--quick", action="store_true", help="200k rows: a smoke check")
    parser.add_argument("--repeats", type=int, default=7, help="timing repeats (best of)")
    parser.add_argument("--no-glum", action="store_true", help="skip glum")
    parser.add_argument("--sklearn-max-iter", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    n = 200_000 if args.quick else args.rows
    rng = np.random.default_rng(args.seed)
    problems = [
        (f"dense {n:,} x 50 well conditioned", lambda: well_conditioned(n, 50, rng)),
        (f"dense {n:,} x 50 correlated, badly scaled", lambda: badly_scaled(n, 50, rng)),
        (f"CSR {n:,} x 10,000, 20 nnz/row", lambda: sparse_rows(n, 10_000, rng)),
    ]
    kernels, fits = [], []
    for name, make in problems:
        print(name)
        X, y = make()
        kernels.append(time_kernels(name, X, y, args.repeats))
        if name.startswith("dense") and "well" in name:
            X32 = X.astype(np.float32)
            kernels.append(time_kernels(name + " (float32 X)", X32, y, args.repeats))
            del X32
        fits += fit_all(name, X, y, not args.no_glum, args.sklearn_max_iter)
        del X, y
    table = markdown(kernels, fits)
    print()
    print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "rows": n,
        "l2": L2,
        "load_average": list(os.getloadavg()),
        "machine": {
            "cpus": numba.config.NUMBA_NUM_THREADS,
            "numba_threads": numba.get_num_threads(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "kernels": kernels,
        "fits": fits,
        "markdown": table,
    }
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
