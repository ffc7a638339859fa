"""Tuned raymix vs GDMix's defaults vs a real GLMM (GPBoost) on the same ml-100k split.

Three models of the same rows, all scored by validation AUC on GDMix's 80/20 split:

* **GDMix defaults**: ``recipes/movielens_lr.py`` as GDMix configures it (l2 = 1 everywhere,
  one pass, unregularized per-entity intercepts).
* **raymix tuned**: ``raymix tune`` with ``tune/movielens_l2.py`` (every coordinate's L2, the
  random effects' intercept regularization and the passes, Optuna TPE + ASHA, trials reusing
  the prepared data); then ``best.json`` refitted from scratch as ``raymix fit`` would.
* **raymix l2="auto"** (no search): the random effects' ``l2`` estimated from the data by
  Laplace EM (1/sigma^2 of the per-entity coefficients), three passes, the rest as GDMix's.
* **GLMM (GPBoost)**: a logistic GLMM with crossed random intercepts for user and movie and
  fixed effects on GDMix's global features (the one-hot reference levels F and 'other'
  dropped), fitted by Laplace approximation (``gpboost.GPModel``). A benchmark-only
  dependency: ``pip install gpboost``.

    python bench/tune_movielens.py [--trials 32] [--seed 0] [--source DIR] [--no-gpboost]
                                   [--results PATH]

Prints a markdown table and writes bench/results/tune_movielens.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "ml-100k"
RESULTS = REPO / "bench" / "results" / "tune_movielens.json"
sys.path.insert(0, str(REPO))


def convert(source: Path, dest: Path, seed: int) -> float:
    from raymix.datasets.movielens import convert_movielens

    started = time.perf_counter()
    if not (dest / "metadata" / "tensor_metadata.json").is_file():
        convert_movielens(source, dest, seed=seed, fmt="tfrecord")
    return time.perf_counter() - started


def movielens_recipe(data: Path, output: Path, overrides=()):
    from raymix.recipe.load import load_recipe

    os.environ["RAYMIX_MOVIELENS"] = str(data)
    return load_recipe(REPO / "recipes" / "movielens_lr.py", [f"output={output}", *overrides])


def fit_recipe(recipe) -> dict:
    from raymix.run import fit

    started = time.perf_counter()
    result = fit(recipe, overwrite=True)
    last = recipe.coordinates[-1].name
    l2 = {}
    for step in result.steps:  # the l2 that l2="auto" chose, in the last pass
        if "l2" in step:
            l2[step["coordinate"]] = step["l2"]
    return {
        "l2": l2,
        "auc": result.final[last]["auc"],
        "seconds": round(time.perf_counter() - started, 2),
        "read_seconds": result.timings.get("read"),
    }


def glmm_gpboost(data: Path) -> dict:
    """Crossed random intercepts (user, movie) + fixed effects on the global features."""
    import gpboost as gpb

    from raymix import metrics

    train = _design(data, "train")
    val = _design(data, "validation")
    started = time.perf_counter()
    model = gpb.GPModel(group_data=train["groups"], likelihood="bernoulli_logit")
    model.fit(y=train["y"], X=train["X"], params={"trace": False})
    fit_seconds = time.perf_counter() - started
    pred = model.predict(
        X_pred=val["X"], group_data_pred=val["groups"], predict_var=False, predict_response=False
    )
    logit = np.asarray(pred["mu"], dtype=np.float64)
    sigma2 = [float(v) for v in np.ravel(model.get_cov_pars())]
    return {
        "auc": float(metrics.auc(logit, val["y"])),
        "seconds": round(fit_seconds, 2),
        "variances": {"user": sigma2[0], "movie": sigma2[1]},
        "features": int(train["X"].shape[1]),
    }


def _design(data: Path, split: str) -> dict:
    from raymix.coordinates.inputs import build_source, feature_names
    from raymix.data.rows import concat_rows, rows_from_table
    from raymix.data.source import read_table
    from raymix.recipe.spec import Columns, Data

    d = Data(
        train=str(data / "global" / "trainingData"),
        validation=str(data / "global" / "validationData"),
        metadata=str(data / "metadata" / "tensor_metadata.json"),
        feature_lists=str(data / "featureList"),
    )
    parts = {}
    for entity in ("user_id", "movie_id"):
        src = build_source(d, Columns(), split=split, bag="global", entity=entity)
        rows = concat_rows(
            [rows_from_table(read_table(src, f), src.schema, f) for f in src.files],
            src.schema.dim,
        )
        order = np.argsort(rows.uid, kind="stable")
        parts[entity] = rows.take(order)
    rows = parts["user_id"]
    assert np.array_equal(rows.uid, parts["movie_id"].uid)
    names = [n for n, _ in feature_names(d, "global", rows.X.shape[1])]
    keep = [k for k, n in enumerate(names) if n not in ("F", "other")]  # reference levels
    X = np.asarray(rows.X[:, keep].todense(), dtype=np.float64)
    X = np.column_stack([np.ones(X.shape[0]), X])
    groups = np.column_stack([rows.entity, parts["movie_id"].entity]).astype(np.int64)
    return {"X": X, "y": rows.label.astype(np.float64), "groups": groups}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="seed of the 80/20 split")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--data", type=Path, default=None, help="a converted copy to reuse")
    parser.add_argument("--space", type=Path, default=REPO / "tune" / "movielens_l2.py")
    parser.add_argument("--no-gpboost", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    from raymix.engine.cluster import ray_session
    from raymix.recipe.spec import Resources
    from raymix.tune import load_space, search

    work = Path(tempfile.mkdtemp(prefix="raymix-tune-bench-"))
    data = args.data or work / "movielens"
    convert(args.source, data, args.seed)
    out: dict = {"seed": args.seed, "trials": args.trials, "cores": os.cpu_count()}
    if not args.no_gpboost:
        out["glmm_gpboost"] = glmm_gpboost(data)
        print(f"GLMM (GPBoost): {out['glmm_gpboost']}", file=sys.stderr)
    space = load_space(args.space)
    space = type(space)(**{**space.__dict__, "num_samples": args.trials})
    with ray_session(Resources()):
        out["gdmix_defaults"] = fit_recipe(movielens_recipe(data, work / "defaults"))
        print(f"GDMix defaults: {out['gdmix_defaults']}", file=sys.stderr)
        auto = ["coordinates.per-user.l2=auto", "coordinates.per-movie.l2=auto", "passes=3"]
        out["raymix_auto_l2"] = fit_recipe(movielens_recipe(data, work / "auto", auto))
        print(f"l2=auto: {out['raymix_auto_l2']}", file=sys.stderr)
        started = time.perf_counter()
        tuned = search(
            movielens_recipe(data, work / "lr"),
            space,
            out=work / "search",
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
        search_wall = time.perf_counter() - started
        print(tuned.table(), file=sys.stderr)
        refit = fit_recipe(tuned.best_recipe)
    best_config = {k: tuned.best[k] for k in tuned.keys}
    out["raymix_tuned"] = {
        "best_trial_auc": tuned.best_metric,
        "refit_auc": refit["auc"],
        "refit_seconds": refit["seconds"],
        "best": best_config,
        "search_seconds": round(tuned.seconds, 2),
        "search_wall_seconds": round(search_wall, 2),
        **tuned.stats,
    }
    out["gain_over_defaults"] = refit["auc"] - out["gdmix_defaults"]["auc"]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))


def table(r: dict) -> str:
    t = r["raymix_tuned"]
    rows = [
        (
            "GDMix defaults (l2 = 1, 1 pass)",
            r["gdmix_defaults"]["auc"],
            f"{r['gdmix_defaults']['seconds']:.0f} s fit (read {r['gdmix_defaults']['read_seconds']:.0f} s)",
        ),
        (
            f"raymix tuned ({t['trials']} trials), best.json refit",
            t["refit_auc"],
            f"{t['search_seconds']:.0f} s search, {t['trials_per_minute']:.2f} trials/min, "
            f"{t['data_loads']} data loads, re-preparing {100 * t['prepare_share']:.0f}% of trial "
            f"time (without reuse {100 * t['prepare_share_without_reuse']:.0f}%)",
        ),
    ]
    a = r["raymix_auto_l2"]
    rows.append(
        (
            'raymix l2="auto" for both random effects, 3 passes (no search)',
            a["auc"],
            f"{a['seconds']:.0f} s fit (read {a['read_seconds']:.0f} s); l2 per-user "
            f"{a['l2']['per-user']:.3g}, per-movie {a['l2']['per-movie']:.3g} (last pass)",
        )
    )
    if "glmm_gpboost" in r:
        g = r["glmm_gpboost"]
        rows.append(
            (
                "GLMM, crossed random intercepts (GPBoost)",
                g["auc"],
                f"{g['seconds']:.0f} s fit; sigma^2 user {g['variances']['user']:.3f}, "
                f"movie {g['variances']['movie']:.3f}",
            )
        )
    lines = ["| model | validation AUC | time, notes |", "|---|---|---|"]
    lines += [f"| {name} | {auc:.4f} | {note} |" for name, auc, note in rows]
    best = ", ".join(f"{k.replace('coordinates.', '')}={_fmt(v)}" for k, v in t["best"].items())
    lines.append(f"\nbest: {best}; gain over GDMix's defaults {r['gain_over_defaults']:+.4f} AUC")
    return "\n".join(lines)


def _fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
