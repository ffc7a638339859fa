"""Benchmark: per-entity Newton (``fit_entities``) against a GDMix-style scipy L-BFGS loop.

Two synthetic random effects with offsets and weights:

- ``uniform``: ``--entities`` entities of ~30 rows, each with 10 features (dense within the
  entity) drawn from a bag of 100k features;
- ``skewed``: lognormal entity sizes (median ~4 rows, a few with thousands), 2-40 features
  per entity, 1-5 non-zeros per row.

The baseline is GDMix's ``BinaryLogisticRegressionTrainer`` loop: per entity, the (1/n)-scaled
objective with a column of ones in front, ``fmin_l_bfgs_b(m=10, factr=1e-12/eps,
maxiter=100)``. It is timed on a subset (``--baseline-entities``) and its rate extrapolated;
local design matrices are built before the clock starts (only the fits are timed). Cold and
cached numba compile times are measured in fresh subprocesses with a private cache dir.

    python bench/random_effect_solver.py [--entities 100000] [--quick]

Prints a markdown table and writes ``bench/results/random_effect_solver.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# single-threaded BLAS for the scipy baseline (as one GDMix consumer process); set before numpy
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.optimize import fmin_l_bfgs_b  # noqa: E402
from scipy.special import expit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from raymix.solvers.entity import EntityProblem, fit_entities  # noqa: E402

L2 = 1.0


def make_uniform(n_entities, rows=30, n_feat=10, dim=100_000, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(rows - 10, rows + 11, n_entities)
    return _assemble(rng, sizes, np.full(n_entities, n_feat), np.full(n_entities, n_feat), dim)


def make_skewed(n_entities, dim=100_000, seed=1):
    rng = np.random.default_rng(seed)
    sizes = np.clip(np.round(rng.lognormal(1.5, 1.5, n_entities)), 1, 20_000).astype(np.int64)
    n_feat = np.clip(np.round(3 * np.log2(1 + sizes)), 2, 40).astype(np.int64)
    return _assemble(rng, sizes, n_feat, np.minimum(n_feat, 5), dim)


def _assemble(rng, sizes, n_feat, per_row, dim):
    """Entity k has ``n_feat[k]`` features; each of its rows takes ``per_row[k]`` consecutive
    (cyclically) of them from a random start. Labels from a per-entity logistic model."""
    E = sizes.size
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    feat_ptr = np.concatenate([[0], np.cumsum(n_feat)])
    feats = np.concatenate([np.sort(rng.choice(dim, f, replace=False)) for f in n_feat])
    true_w = rng.normal(0, 0.5, feat_ptr[-1])
    owner = np.repeat(np.arange(E), sizes)
    k_row = per_row[owner]
    indptr = np.concatenate([[0], np.cumsum(k_row)])
    row_of_nnz = np.repeat(np.arange(owner.size), k_row)
    j_in_row = np.arange(indptr[-1]) - indptr[row_of_nnz]
    start = rng.integers(0, 1 << 30, owner.size)
    pos = (start[row_of_nnz] + j_in_row) % n_feat[owner][row_of_nnz]
    gpos = feat_ptr[owner][row_of_nnz] + pos
    # keep each row's columns ascending (canonical CSR)
    order = np.lexsort((feats[gpos], row_of_nnz))
    gpos = gpos[order]
    data = rng.normal(size=gpos.size)
    X = sp.csr_matrix((data, feats[gpos].astype(np.int32), indptr), shape=(owner.size, dim))
    margin = np.bincount(row_of_nnz, weights=data * true_w[gpos], minlength=owner.size)
    offsets = rng.normal(0, 0.5, owner.size)
    z = margin + offsets + rng.normal(0, 0.5, E)[owner]
    y = (rng.random(owner.size) < expit(z)).astype(np.float64)
    weights = rng.uniform(0.5, 1.5, owner.size)
    return EntityProblem(ptr, X, y, weights, offsets)


def _loss(theta, Z, y, w, o):  # GDMix: (1/n) [sum w logloss + l2/2 ||theta[1:]||^2]
    z = Z @ theta + o
    ce = np.maximum(z, 0) - z * y + np.log(1 + np.exp(-np.abs(z)))
    return (w @ ce + L2 / 2 * theta[1:] @ theta[1:]) / Z.shape[0]


def _grad(theta, Z, y, w, o):
    g = Z.T @ (w * (expit(Z @ theta + o) - y))
    g[1:] += L2 * theta[1:]
    return g / Z.shape[0]


def gdmix_loop(problem, entities, models):
    """GDMix's per-entity loop on ``entities``: its rates (per wall and per CPU second), and how
    its solutions
    compare with ``models`` over the entities with both classes (whose optimum is finite): max
    coefficient difference, and worst objective excess of Newton over L-BFGS."""
    jobs = []
    for k in entities:
        r0, r1 = problem.entity_ptr[k], problem.entity_ptr[k + 1]
        Xe = problem.X[r0:r1]
        feats, inv = np.unique(Xe.indices, return_inverse=True)
        Z = sp.csr_matrix((Xe.data, inv.ravel(), Xe.indptr), shape=(r1 - r0, feats.size))
        Z = sp.hstack([np.ones((r1 - r0, 1)), Z], format="csr")
        sl = slice(r0, r1)
        jobs.append((feats, (Z, problem.y[sl], problem.weights[sl], problem.offsets[sl])))
    thetas = []
    t, c = time.perf_counter(), time.process_time()
    for _, args in jobs:
        x, _, _ = fmin_l_bfgs_b(_loss, np.zeros(args[0].shape[1]), _grad, args=args, m=10,
                                factr=1e-12 / np.finfo(float).eps, maxiter=100)  # fmt: skip
        thetas.append(x)
    rate, cpu_rate = len(jobs) / (time.perf_counter() - t), len(jobs) / (time.process_time() - c)
    coef_diff, excess = 0.0, -np.inf
    for k, (feats, args), th in zip(entities, jobs, thetas, strict=True):
        b, idx, val = models.coefficients(k)
        ours = np.zeros(th.size)
        ours[0], ours[1 + np.searchsorted(feats, idx)] = b, val
        if 0 < args[1].sum() < args[1].size:  # else the free intercept's optimum is infinite
            excess = max(excess, _loss(ours, *args) - _loss(th, *args))
            coef_diff = max(coef_diff, np.abs(ours - th).max())
    return rate, cpu_rate, coef_diff, excess


def timed_fits(problem, repeats):
    """Best of ``repeats`` interleaved 1- and 2-thread fits (interleaving spreads other load on
    the machine over both): per thread count the rate (entities/s of wall time), the rate per
    CPU-second and the CPU time / wall time of the best run (about the thread count on an
    otherwise idle machine), plus the 1-thread models."""
    best = {1: (np.inf, 0.0, 0.0), 2: (np.inf, 0.0, 0.0)}
    models = {}
    for _ in range(repeats):
        for n_threads in (1, 2):
            t, c = time.perf_counter(), time.process_time()
            models[n_threads] = fit_entities(problem, l2=L2, n_threads=n_threads)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            best[n_threads] = min(best[n_threads], (wall, cpu, cpu / wall))
    assert np.array_equal(models[1].coef_value, models[2].coef_value)
    stats = {n: {"entities_per_s": problem.n_entities / w, "entities_per_cpu_s": problem.n_entities / c,
                 "cpu_per_wall": u} for n, (w, c, u) in best.items()}  # fmt: skip
    return stats, models[1]


def compile_times():
    """First-call times in fresh processes: cold (empty numba cache) then cached."""
    code = (
        "import time; t0 = time.perf_counter(); import numpy as np, scipy.sparse as sp;"
        "from raymix.solvers.entity import EntityProblem, fit_entities, score_entities;"
        "t1 = time.perf_counter();"
        "p = EntityProblem(np.array([0, 2, 4]), sp.csr_matrix(np.eye(4)), np.array([0., 1, 1, 0]));"
        "m = fit_entities(p, n_threads=1); score_entities(m, p.X, p.entity_ptr);"
        "print(t1 - t0, time.perf_counter() - t1)"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        for label in ("cold", "cached"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True, cwd=ROOT)  # fmt: skip
            imp, first = map(float, res.stdout.split())
            out[label] = {"import_s": round(imp, 3), "first_fit_s": round(first, 3)}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--baseline-entities", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10k entities, 500 baseline, 1 repeat")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "random_effect_solver.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.entities, args.baseline_entities, args.repeats = 10_000, 500, 1

    compile_s = compile_times()
    fit_entities(make_uniform(50), n_threads=2)  # load the kernels before timing
    results = {"entities": args.entities, "compile": compile_s, "cpus": os.cpu_count(),
               "load_avg_at_start": os.getloadavg(), "blas_threads": os.environ["OPENBLAS_NUM_THREADS"],
               "sets": {}}  # fmt: skip
    for name, make in (("uniform", make_uniform), ("skewed", make_skewed)):
        problem = make(args.entities)
        rows = np.diff(problem.entity_ptr)
        stats, models = timed_fits(problem, args.repeats)
        r1, r2 = stats[1]["entities_per_s"], stats[2]["entities_per_s"]
        rng = np.random.default_rng(7)
        subset = np.sort(rng.choice(problem.n_entities, args.baseline_entities, replace=False))
        rate_loop, cpu_rate_loop, diff, excess = gdmix_loop(problem, subset, models)
        results["sets"][name] = {
            "rows": int(problem.n_rows), "nnz": int(problem.X.nnz),
            "rows_per_entity": {"median": float(np.median(rows)), "mean": float(rows.mean()),
                                "max": int(rows.max())},
            "newton_1_thread": stats[1], "newton_2_threads": stats[2],
            "parallel_efficiency_2": r2 / (2 * r1),
            # CPU work per entity, 1 thread / 2 threads: the efficiency two idle cores would
            # reach if the threads were never descheduled (robust to other load on the machine)
            "cpu_work_efficiency_2": stats[2]["entities_per_cpu_s"] / stats[1]["entities_per_cpu_s"],
            "lbfgs_loop": {"entities_per_s": rate_loop, "entities_per_cpu_s": cpu_rate_loop,
                           "timed_entities": len(subset)},
            "speedup_1_thread": r1 / rate_loop,
            "speedup_cpu_time": stats[1]["entities_per_cpu_s"] / cpu_rate_loop,
            "n_not_converged": models.n_not_converged,
            "mean_newton_iterations": float(models.n_iter.mean()),
            "max_abs_coef_diff_vs_lbfgs": float(diff),
            "max_objective_excess_vs_lbfgs": float(excess),
        }  # fmt: skip
    print(f"\n{args.entities:,} entities; compile (fresh process): cold "
          f"{compile_s['cold']['first_fit_s']:.2f} s, cached {compile_s['cached']['first_fit_s']:.2f} s; "
          f"load average at start {results['load_avg_at_start'][0]:.2f}\n")  # fmt: skip
    print("| set | rows/entity (median/mean/max) | Newton 1 thread | Newton 2 threads | "
          "2-core efficiency (cores obtained; CPU-work efficiency) | GDMix L-BFGS loop | speedup 1 thread (CPU time) | "
          "Newton iters | max coef diff vs L-BFGS | objective excess vs L-BFGS |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, s in results["sets"].items():
        rpe, n1, n2 = s["rows_per_entity"], s["newton_1_thread"], s["newton_2_threads"]
        print(f"| {name} | {rpe['median']:.0f} / {rpe['mean']:.1f} / {rpe['max']} | "
              f"{n1['entities_per_s']:,.0f}/s | {n2['entities_per_s']:,.0f}/s | "
              f"{100 * s['parallel_efficiency_2']:.0f}% ({n2['cpu_per_wall']:.2f}; "
              f"{100 * s['cpu_work_efficiency_2']:.0f}%) | "
              f"{s['lbfgs_loop']['entities_per_s']:,.0f}/s | "
              f"{s['speedup_1_thread']:.0f}x ({s['speedup_cpu_time']:.0f}x) | "
              f"{s['mean_newton_iterations']:.1f} | {s['max_abs_coef_diff_vs_lbfgs']:.1e} | "
              f"{s['max_objective_excess_vs_lbfgs']:.1e} |")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
