"""Bayes oracle for the synthetic GLMix data: how close to the true model any estimator can get.

The synthetic data (:mod:`raymix.datasets.synthetic`) plant ``logit = g + u + v``: a global part
``g = b + x.beta`` and per-user / per-item parts ``u = c_user + x_u.w_user`` (``v`` alike),
every entity coefficient and intercept drawn ``N(0, sigma^2)``. For each random-effect
coordinate the oracle fits every entity on the TRAINING rows with everything else given
exactly: the true prior (``l2 = 1 / sigma^2`` on the intercept and the coefficients, sigma
read from ``summary.json``) and the true other parts as the offset (``g + v`` for the users,
``g + u`` for the items). Entity ``k`` of the user coordinate gets the posterior mode::

    theta_k = argmin  sum_{r in k} [log(1 + e^{z_r}) - y_r z_r] + (1 / (2 sigma^2)) ||theta||^2,
              z_r = [1, x_u_r] . theta + g_r + v_r

(entities without training rows keep the prior mean 0). That is what an estimator would reach
if it knew everything but this coordinate's coefficients, so no estimator does better on that
part. The fits use raymix's per-entity Newton solver (:func:`raymix.solvers.entity.
fit_entities`); a spot check refits ~200 random entities per coordinate (and the largest) with
``scipy.optimize.minimize`` on the same penalised loss, from the raw rows, and requires the
coefficients to agree to 1e-5.

On the VALIDATION rows it reports the AUC of: the true model; the true global part alone; the
true model with the per-user part, the per-item part, or both replaced by the oracle fits
(both: the Bayes oracle); the Bayes oracle's posterior-predictive probability (Laplace
posterior and the probit approximation ``E[sigmoid(z)] ~ sigmoid(m / sqrt(1 + pi s^2 / 8))``,
because the AUC-optimal score is the predictive probability, not the posterior-mode logit);
and, given a fit's output directory, the fitted model (its cumulative Avro scores per
coordinate), its gap to the Bayes oracle, and the true model with one fitted part swapped in.
Correlations of the oracle (and fitted) parts with the true parts are on the validation rows.

    python bench/bayes_oracle.py --data DIR [--out DIR] [--threads 1]

Memory: the training rows' ids, labels, true parts and two ``(rows, E)`` float32 feature
blocks, plus per-user posterior precision matrices ``(users, E + 1, E + 1)`` float64 (1 GB for
1M users). Measured at 9M training rows, 1M users, 100k items: peak RSS 5.0 GB, 68 s wall on
one thread (read 18 s, oracle fits 18 s, posterior precision 19 s, spot checks 3 s,
validation 9 s).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit
from threadpoolctl import threadpool_limits

from raymix.data.avro.scores import read_scores_avro
from raymix.datasets.synthetic import Truth, load_truth
from raymix.errors import DataError
from raymix.metrics import auc
from raymix.solvers.entity import EntityProblem, fit_entities

__all__ = ["bayes_oracle"]

#: (coordinate, entity id column, feature bag, sigma key in summary.json, Truth prefix)
COORDINATES = (
    ("per-user", "user_id", "per_user", "user_sigma", "user"),
    ("per-item", "item_id", "per_item", "item_sigma", "item"),
)
SPOT_CHECK_ENTITIES = 200
SPOT_CHECK_MIN_ROWS = 5  # fewer such entities than SPOT_CHECK_ENTITIES: any with rows
SPOT_CHECK_TOLERANCE = 1e-5
SOLVER_TOL = 1e-10  # max-abs gradient of the (1/n)-scaled objective; far below the 1e-5 check


@dataclass
class Rows:
    """One split's rows in uid order: ids, labels, the true parts (float64) and the entity
    features ``(n, E)`` float32 of each bag."""

    uid: np.ndarray
    ids: dict[str, np.ndarray]
    y: np.ndarray
    true: dict[str, np.ndarray]
    x: dict[str, np.ndarray]


def bayes_oracle(data: Path, out: Path | None = None, *, n_threads: int = 1) -> dict:
    """The Bayes-oracle report of the synthetic data set under ``data`` (Parquet), and of the
    fit under ``out`` when given; see the module docstring. Values are rounded to 4 digits
    (correlations, AUCs) and seconds to 0.1."""
    data = Path(data)
    clock = time.perf_counter()
    seconds: dict[str, float] = {}
    summary = json.loads(_existing(data / "summary.json").read_text())
    truth = load_truth(_existing(data / "truth.npz"))
    sigma = {}
    for name, _, _, key, _ in COORDINATES:
        if not isinstance(summary.get(key), int | float) or summary[key] <= 0:
            raise DataError(
                f"needs a positive '{key}' (the planted prior)", path=str(data / "summary.json")
            )
        sigma[name] = float(summary[key])

    with threadpool_limits(1, user_api="blas"):
        train = _read_split(data, "train", truth)
        val = _read_split(data, "validation", truth)
        seconds["read"] = time.perf_counter() - clock

        oracle, report_solver, spot = {}, {}, {}
        for name, id_col, bag, _, prefix in COORDINATES:
            started = time.perf_counter()
            other = "per-item" if name == "per-user" else "per-user"
            offsets = train.true["global"] + train.true[other]
            n_entities = getattr(truth, f"{prefix}_intercept").size
            l2 = 1.0 / sigma[name] ** 2
            fit = _fit_oracle(
                train.ids[id_col], n_entities, train.x[bag], train.y, offsets, l2, n_threads
            )
            report_solver[name] = {
                "l2": round(l2, 6),
                "entities": n_entities,
                "entities_with_training_rows": int(np.count_nonzero(fit.counts)),
                "not_converged": fit.not_converged,
                "seconds": round(time.perf_counter() - started, 1),
            }
            started = time.perf_counter()
            spot[name] = _spot_check(fit, train.ids[id_col], train.x[bag], train.y, offsets, l2)
            spot[name]["seconds"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            oracle[name] = _Part(fit, val.ids[id_col], val.x[bag])
            oracle[name].precision = _precision(
                fit, train.ids[id_col], train.x[bag], train.y, offsets, l2
            )
            seconds["posterior precision"] = (
                seconds.get("posterior precision", 0.0) + time.perf_counter() - started
            )
            del offsets
        seconds["oracle fits"] = sum(s["seconds"] for s in report_solver.values())
        seconds["spot checks"] = sum(s["seconds"] for s in spot.values())
        del train

        started = time.perf_counter()
        result = _validation_report(val, oracle, summary)
        if out is not None:
            fitted_auc, fitted_corr = _fitted_report(Path(out), val, oracle, result["auc"])
            result["auc"].update(fitted_auc)
            result["fitted_corr"] = fitted_corr
        seconds["validation"] = time.perf_counter() - started
    seconds["total"] = time.perf_counter() - clock
    return {
        "data": str(data),
        "out": None if out is None else str(out),
        "rows": {"train": summary.get("train_rows"), "validation": int(val.y.size)},
        "sigma": sigma,
        **result,
        "solver": report_solver,
        "spot_check": spot,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


# ----------------------------------------------------------------------------- reading


def _existing(path: Path) -> Path:
    if not path.exists():
        raise DataError("no such file or directory", path=str(path))
    return path


def _read_split(data: Path, split: str, truth: Truth) -> Rows:
    """Every Parquet file of ``split`` in name order; only the columns the oracle needs, and
    the global features reduced to the true global logit one file at a time."""
    files = sorted((data / split).glob("*.parquet"))
    if not files:
        raise DataError(
            "no *.parquet files (the oracle reads Parquet data only)", path=str(data / split)
        )
    e = truth.user_coef.shape[1]
    beta = truth.beta.astype(np.float64)
    parts: dict[str, list[np.ndarray]] = {}
    columns = ["uid", "user_id", "item_id", "response", "global", "true_logit"]
    columns += [
        f"{bag}_{kind}" for bag in ("per_user", "per_item") for kind in ("indices", "values")
    ]
    for path in files:
        table = pq.read_table(path, columns=columns)
        n = table.num_rows
        got = {c: table.column(c).to_numpy() for c in ("uid", "user_id", "item_id", "response")}
        glob = _flat(table, "global", n, beta.size, path)
        got["global"] = truth.intercept + glob @ beta
        del glob
        for bag in ("per_user", "per_item"):
            got[bag] = _dense_bag(table, bag, n, e, path)
        got["per-user"] = _entity_part(truth, "user", got["user_id"], got["per_user"])
        got["per-item"] = _entity_part(truth, "item", got["item_id"], got["per_item"])
        logit = got["global"] + got["per-user"] + got["per-item"]
        stored = table.column("true_logit").to_numpy().astype(np.float64)
        worst = int(np.argmax(np.abs(logit - stored)))
        if abs(logit[worst] - stored[worst]) > 1e-4 * (1 + abs(stored[worst])):
            msg = f"the true logit from truth.npz ({logit[worst]:.6f}) differs from the stored one ({stored[worst]:.6f})"
            raise DataError(msg, path=str(path), row=worst, column="true_logit")
        for key, value in got.items():
            parts.setdefault(key, []).append(value)
        del table
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    if (np.diff(cat["uid"]) <= 0).any():  # files in name order hold ascending uids; if not, sort
        order = np.argsort(cat["uid"], kind="stable")
        cat = {k: v[order] for k, v in cat.items()}
    return Rows(
        uid=cat["uid"],
        ids={"user_id": cat["user_id"], "item_id": cat["item_id"]},
        y=cat["response"].astype(np.float64),
        true={k: cat[k] for k in ("global", "per-user", "per-item")},
        x={bag: cat[bag] for bag in ("per_user", "per_item")},
    )


def _flat(table, column: str, n: int, width: int, path: Path) -> np.ndarray:
    array = table.column(column).combine_chunks()
    if array.null_count or array.flatten().null_count:
        raise DataError("has nulls", path=str(path), column=column)
    values = np.asarray(array.flatten())
    if values.size != n * width:
        raise DataError(
            f"expected {width} values a row, got {values.size} in {n} rows",
            path=str(path),
            column=column,
        )
    return values.reshape(n, width)


def _dense_bag(table, bag: str, n: int, e: int, path: Path) -> np.ndarray:
    """The bag's values as ``(n, e)``, after checking every row holds features 0..e-1 in
    order (the generator writes full bags; the oracle relies on it)."""
    indices = _flat(table, f"{bag}_indices", n, e, path)
    if not (indices == np.arange(e)).all():
        row = int(np.flatnonzero((indices != np.arange(e)).any(1))[0])
        raise DataError(
            f"expected the full bag 0..{e - 1} in order",
            path=str(path),
            row=row,
            column=f"{bag}_indices",
        )
    return _flat(table, f"{bag}_values", n, e, path)


def _entity_part(truth: Truth, prefix: str, ids: np.ndarray, x: np.ndarray) -> np.ndarray:
    coef = getattr(truth, f"{prefix}_coef")[ids].astype(np.float64)
    return np.einsum("ij,ij->i", x, coef) + getattr(truth, f"{prefix}_intercept")[ids]


# ----------------------------------------------------------------------------- oracle fits


@dataclass
class _Fit:
    """Oracle models of one coordinate, dense: ``intercept`` (K,), ``coef`` (K, E)."""

    intercept: np.ndarray
    coef: np.ndarray
    counts: np.ndarray
    not_converged: int


def _fit_oracle(ids, n_entities, x, y, offsets, l2, n_threads) -> _Fit:
    """Every entity's posterior mode with ``fit_entities``: rows grouped by a stable sort on
    the entity id, a CSR of the full bags, intercept and coefficients both penalised."""
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=n_entities)
    if counts.size != n_entities:
        raise DataError(f"entity ids reach {counts.size - 1}, truth.npz has {n_entities}")
    ptr = np.concatenate([[0], np.cumsum(counts)])
    n, e = x.shape
    values = x[order].reshape(-1)
    X = sp.csr_matrix(
        (values, np.tile(np.arange(e, dtype=np.int32), n), np.arange(0, n * e + 1, e)), (n, e)
    )
    problem = EntityProblem(ptr, X, y[order], offsets=offsets[order])
    del order, values, X
    models = fit_entities(
        problem,
        l2=l2,
        regularize_intercept=True,
        tol=SOLVER_TOL,
        max_iter=200,
        n_threads=n_threads,
    )
    coef = np.zeros((n_entities, e))
    owner = np.repeat(np.arange(n_entities), np.diff(models.coef_ptr))
    coef[owner, models.coef_index] = models.coef_value
    return _Fit(models.intercepts.copy(), coef, counts, models.n_not_converged)


def _reference_mode(A: np.ndarray, y: np.ndarray, o: np.ndarray, l2: float) -> np.ndarray:
    """Posterior mode of one entity by scipy's trust-region Newton, written independently of
    the raymix kernels: ``A`` is ``[1, x]`` per row."""

    def fun(t):
        z = A @ t + o
        return np.logaddexp(0.0, z).sum() - y @ z + 0.5 * l2 * t @ t, A.T @ (expit(z) - y) + l2 * t

    def hess(t):
        p = expit(A @ t + o)
        return (A * (p * (1 - p))[:, None]).T @ A + l2 * np.eye(A.shape[1])

    res = scipy.optimize.minimize(
        fun,
        np.zeros(A.shape[1]),
        jac=True,
        hess=hess,
        method="trust-exact",
        options={"gtol": 1e-11},
    )
    return res.x


def _spot_check(fit: _Fit, ids, x, y, offsets, l2, seed: int = 0) -> dict:
    """Refit random entities with >= SPOT_CHECK_MIN_ROWS training rows (and the largest)
    from the raw, unsorted rows; raise if any coefficient differs by more than the tolerance."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(fit.counts >= SPOT_CHECK_MIN_ROWS)
    if pool.size < SPOT_CHECK_ENTITIES:  # too few big entities (1M rows, 1M users): any with rows
        pool = np.flatnonzero(fit.counts > 0)
    chosen = rng.choice(pool, min(SPOT_CHECK_ENTITIES, pool.size), replace=False)
    chosen = np.unique(np.append(chosen, np.argmax(fit.counts)))
    worst, worst_entity = 0.0, -1
    for k in chosen:
        rows = np.flatnonzero(ids == k)
        A = np.hstack([np.ones((rows.size, 1)), x[rows].astype(np.float64)])
        reference = _reference_mode(A, y[rows], offsets[rows], l2)
        diff = float(np.max(np.abs(reference - np.concatenate([[fit.intercept[k]], fit.coef[k]]))))
        if diff > worst:
            worst, worst_entity = diff, int(k)
    if worst > SPOT_CHECK_TOLERANCE:
        raise RuntimeError(
            f"spot check failed: entity {worst_entity} differs from scipy by {worst:.2e} "
            f"(tolerance {SPOT_CHECK_TOLERANCE:g})"
        )
    return {
        "entities": int(chosen.size),
        "rows_min_max": [int(fit.counts[chosen].min()), int(fit.counts[chosen].max())],
        "max_abs_diff": float(f"{worst:.3g}"),
        "tolerance": SPOT_CHECK_TOLERANCE,
    }


def _precision(fit: _Fit, ids, x, y, offsets, l2) -> np.ndarray:
    """Laplace posterior precision of every entity at its mode: ``sum_r p_r (1 - p_r) a_r
    a_r^T + l2 I`` with ``a_r = [1, x_r]``, ``(K, E + 1, E + 1)``."""
    k, e = fit.coef.shape
    part = fit.intercept[ids] + np.einsum("ij,ij->i", x, fit.coef[ids])
    p = expit(part + offsets)
    w = p * (1 - p)
    del part, p
    H = np.zeros((k, e + 1, e + 1))
    for i in range(e + 1):  # a_r[0] = 1, a_r[i] = x_r[i - 1]
        wi = w if i == 0 else w * x[:, i - 1]
        for j in range(i, e + 1):
            wij = wi if j == 0 else wi * x[:, j - 1]
            H[:, i, j] = H[:, j, i] = np.bincount(ids, weights=wij, minlength=k)
    H += l2 * np.eye(e + 1)
    return H


# ----------------------------------------------------------------------------- validation


class _Part:
    """One coordinate's oracle on the validation rows: the mode's logit part and, from the
    precision, its posterior variance ``a^T H^-1 a``."""

    def __init__(self, fit: _Fit, ids: np.ndarray, x: np.ndarray):
        self.fit, self.ids, self.x = fit, ids, x
        self.score = fit.intercept[ids] + np.einsum("ij,ij->i", x, fit.coef[ids])
        self.precision: np.ndarray | None = None

    def variance(self, chunk: int = 1 << 16) -> np.ndarray:
        out = np.empty(self.ids.size)
        for lo in range(0, self.ids.size, chunk):
            ids, x = self.ids[lo : lo + chunk], self.x[lo : lo + chunk]
            a = np.hstack([np.ones((ids.size, 1)), x.astype(np.float64)])
            solved = np.linalg.solve(self.precision[ids], a[:, :, None])[:, :, 0]
            out[lo : lo + chunk] = np.einsum("ij,ij->i", a, solved)
        return out


def _corr(a, b) -> float | None:
    """Pearson correlation; None when either side is constant (e.g. no validation entity was
    seen in training, so the oracle part is 0 on every row)."""
    if np.std(a) == 0 or np.std(b) == 0:
        return None
    return round(float(np.corrcoef(a, b)[0, 1]), 4)


def _validation_report(val: Rows, oracle: dict[str, _Part], summary: dict) -> dict:
    true, y = val.true, val.y
    true_logit = true["global"] + true["per-user"] + true["per-item"]
    mode = true["global"] + oracle["per-user"].score + oracle["per-item"].score
    variance = oracle["per-user"].variance() + oracle["per-item"].variance()
    predictive = mode / np.sqrt(1 + np.pi * variance / 8)
    scores = {
        "true model": true_logit,
        "global only (true)": true["global"],
        "true, but oracle per-user": true_logit - true["per-user"] + oracle["per-user"].score,
        "true, but oracle per-item": true_logit - true["per-item"] + oracle["per-item"].score,
        "Bayes oracle (both, posterior mode)": mode,
        "Bayes oracle (both, predictive)": predictive,
    }
    aucs = {name: auc(s, y) for name, s in scores.items()}
    stored = summary.get("validation_true_auc")
    if stored is not None and abs(aucs["true model"] - stored) > 1e-4:
        raise DataError(
            f"the true model's AUC here ({aucs['true model']:.6f}) differs from summary.json's "
            f"validation_true_auc ({stored:.6f}): the rows are not read as generated"
        )
    best = max(aucs["Bayes oracle (both, posterior mode)"], aucs["Bayes oracle (both, predictive)"])
    aucs["gap: true - best Bayes oracle"] = aucs["true model"] - best
    corr = {f"oracle {name} vs true": _corr(oracle[name].score, true[name]) for name in oracle}
    spread = {
        f"std {kind} {name}": round(float(np.std(s)), 4)
        for name in oracle
        for kind, s in (("true", true[name]), ("oracle", oracle[name].score))
    }
    for name in oracle:
        rows = oracle[name].fit.counts[oracle[name].ids]
        spread[f"validation rows whose {name[4:]} has training rows"] = round(
            float(np.mean(rows > 0)), 4
        )
        spread[f"median training rows of the validation rows' {name[4:]}"] = float(np.median(rows))
    spread["mean posterior sd of the oracle logit"] = round(float(np.mean(np.sqrt(variance))), 4)
    return {"auc": {k: round(v, 4) for k, v in aucs.items()}, "corr": corr, "context": spread}


def _fitted_report(out: Path, val: Rows, oracle: dict[str, _Part], aucs: dict):
    """The fit's AUC, its gap to the Bayes oracle (``aucs``: the oracle's) and the true model's
    AUC with each fitted part swapped in, and correlations of its parts: its validation scores
    (cumulative per coordinate) split into parts, aligned to the validation rows (by uid)."""
    fitted, before = {}, 0.0
    for name in ("global", "per-user", "per-item"):
        uid, score = read_scores_avro(_existing(out / name / "validation_scores"))
        order = np.argsort(uid)
        if not np.array_equal(uid[order], val.uid):
            raise DataError("scores do not cover exactly the validation rows", path=str(out / name))
        fitted[name] = score[order] - before
        before = score[order]
    fitted_auc = auc(before, val.y)
    best = max(aucs["Bayes oracle (both, posterior mode)"], aucs["Bayes oracle (both, predictive)"])
    corr = {f"fitted {name} vs true": _corr(fitted[name], val.true[name]) for name in fitted}
    corr.update(
        {f"fitted {name} vs oracle": _corr(fitted[name], oracle[name].score) for name in oracle}
    )
    gap = round(best - fitted_auc, 4)
    result = {"fitted model": round(fitted_auc, 4), "gap: best Bayes oracle - fitted": gap}
    true_logit = sum(val.true[name] for name in fitted)
    for name in fitted:  # where the gap to the true model comes from, one part at a time
        swapped = true_logit - val.true[name] + fitted[name]
        result[f"true, but fitted {name}"] = round(auc(swapped, val.y), 4)
    return result, corr


# ----------------------------------------------------------------------------- command line


def markdown(report: dict) -> str:
    lines = ["| validation AUC | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in report["auc"].items()]
    lines += ["", "| correlation (validation rows) | value |", "|---|---|"]
    corr = {**report["corr"], **report.get("fitted_corr", {})}
    lines += [f"| {k} | {'n/a' if v is None else f'{v:.4f}'} |" for k, v in corr.items()]
    lines += ["", "| spot check (scipy) | entities | rows | max abs diff |", "|---|---|---|---|"]
    for name, s in report["spot_check"].items():
        lines.append(
            f"| {name} | {s['entities']} | {s['rows_min_max'][0]}-{s['rows_min_max'][1]} | {s['max_abs_diff']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="synthetic data directory")
    parser.add_argument("--out", type=Path, default=None, help="output directory of a fit")
    parser.add_argument("--threads", type=int, default=1, help="threads of the entity solver")
    args = parser.parse_args()
    report = bayes_oracle(args.data, args.out, n_threads=args.threads)
    print(json.dumps(report, indent=1))
    print()
    print(markdown(report))


if __name__ == "__main__":
    main()
