"""Incremental training: an update with yesterday's prior against a full refit (issue 21).

Data: :func:`raymix.datasets.daily.generate_days` (the same planted users every day, new ones
each day; a later day's rows touch ``--active`` of the known users). Three measurements:

* ``cost``: day 1 (``--rows``), then day 2 (``--rows * --update``) as an update with day 1's
  prior, against one refit on days 1 + 2: the coordinates' time (the descent) and the whole
  run's; target: update <= 15% of the refit's coordinate time at 1M rows, 10% new rows;
* ``auc``: logistic, day 3's (``--auc-rows / 2`` rows, a tenth for validation) validation AUC of the update (day 2 with day 1's prior), of a full
  refit on days 1 + 2, and of a warm start from day 1 without a prior, day 2 small;
* ``linear``: a per-user linear effect with diagonal variances (Photon ML's): how far day 2's
  update lands from the fit on days 1 + 2 (with a full covariance it is the fit: tests).

    python bench/incremental.py cost --rows 1000000 --users 100000
    python bench/incremental.py auc linear
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


def recipe(root: Path, train, validation, out: Path, *, task="logistic", fixed=True, **re):
    from raymix import Data, FixedEffect, RandomEffect, Recipe

    coordinates = []
    if fixed:
        coordinates.append(FixedEffect(name="global", feature_bag="global", task=task, l2=1.0,
                                       variance="full", warm_start=re.pop("fe_warm", None)))  # fmt: skip
    spec = dict(name="per-user", entity="user_id", feature_bag="per_user", task=task, l2=24.0,
                regularize_intercept=True, variance="full")  # fmt: skip
    spec.update(re)
    coordinates.append(RandomEffect(**spec))
    return Recipe(
        name="incremental",
        data=Data(
            train=train,
            validation=validation,
            metadata=str(root / "metadata/tensor_metadata.json"),
            feature_lists=str(root / "featureList"),
        ),  # fmt: skip
        coordinates=coordinates,
        passes=2 if fixed else 1,
        metric="auc" if task == "logistic" else "rmse",
        checkpoint=False,
        output=str(out),
    )


def run(r, prior: Path | None = None) -> dict:
    from raymix.run import fit

    if prior is not None:
        r = r.with_prior(str(prior))
    result = fit(r, overwrite=True)
    return {"final": result.final, "timings": result.timings}


def cost(args, work: Path) -> dict:
    from raymix.datasets.daily import generate_days

    root = work / "cost"
    generate_days(root, days=2, rows=args.rows, update_rows=round(args.rows * args.update),
                  users=args.users, new_users=0, active_fraction=args.active, seed=1)  # fmt: skip
    d1, d2 = (str(root / f"day-{d}" / "train") for d in (1, 2))
    val = str(root / "day-2" / "validation")
    first = run(recipe(root, d1, val, work / "c1"))
    update = run(recipe(root, d2, val, work / "c2"), prior=work / "c1")
    refit = run(recipe(root, (d1, d2), val, work / "cfull"))
    c = lambda r: r["timings"]["coordinates"]  # noqa: E731
    return {"rows": args.rows, "update_rows": round(args.rows * args.update),
            "active": args.active, "day1": first["timings"], "update": update["timings"],
            "refit": refit["timings"], "update_over_refit_coordinates": c(update) / c(refit),
            "auc_update": update["final"], "auc_refit": refit["final"]}  # fmt: skip


def auc(args, work: Path) -> dict:
    from raymix.datasets.daily import generate_days

    root = work / "auc"
    out = {}
    for small in (args.small, args.large):
        generate_days(root, days=3, rows=args.auc_rows, update_rows=(small, args.auc_rows // 2),
                      users=args.auc_users,
                      new_users=args.auc_users // 100, active_fraction=0.3, seed=2)  # fmt: skip
        d1, d2 = (str(root / f"day-{d}" / "train") for d in (1, 2))
        val = str(root / "day-3" / "validation")
        run(recipe(root, d1, val, work / "a1"))
        update = run(recipe(root, d2, val, work / "a2"), prior=work / "a1")
        refit = run(recipe(root, (d1, d2), val, work / "afull"))
        warm = run(recipe(root, d2, val, work / "awarm", fe_warm=str(work / "a1/global/models"),
                          warm_start=str(work / "a1/per-user/models")))  # fmt: skip
        out[f"day2_rows_{small}"] = {
            name: r["final"]["per-user"]["auc"]
            for name, r in (("update", update), ("refit", refit), ("warm_start", warm))
        }
    return out


def linear(args, work: Path) -> dict:
    from raymix.data.avro.models import read_models
    from raymix.datasets.daily import generate_days

    root = work / "linear"
    generate_days(root, days=2, rows=20_000, update_rows=4_000, users=1_000, new_users=10,
                  active_fraction=0.3, task="linear", validation_fraction=0.0, seed=3)  # fmt: skip
    d1, d2 = (str(root / f"day-{d}" / "train") for d in (1, 2))
    kw = dict(task="linear", fixed=False, sparsity_threshold=0.0,
              solver={"tolerance": 1e-12, "max_iter": 200})  # fmt: skip
    run(recipe(root, d1, None, work / "l1", **kw))
    run(recipe(root, d2, None, work / "l2", **kw), prior=work / "l1")
    run(recipe(root, (d1, d2), None, work / "lfull", **kw))

    def models(out):
        return {r["modelId"]: {(m["name"], m["term"]): m["value"] for m in r["means"]}
                for r in read_models(work / out / "per-user" / "models")}  # fmt: skip

    one, two, both = models("l1"), models("l2"), models("lfull")
    refit = [u for u in two if two[u] != one.get(u)]
    gaps = np.array([max(abs(two[u].get(k, 0.0) - v) for k, v in both[u].items()) for u in refit])
    scale = np.array([max(abs(v) for v in both[u].values()) for u in refit])
    return {"refit_users": len(refit), "max_abs_gap": float(gaps.max()),
            "median_abs_gap": float(np.median(gaps)), "max_relative_gap": float((gaps / scale).max())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="+", choices=["cost", "auc", "linear"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--update", type=float, default=0.1, help="day 2's rows / day 1's")
    parser.add_argument("--active", type=float, default=0.1, help="users touched by day 2")
    parser.add_argument("--auc-rows", type=int, default=100_000)
    parser.add_argument("--auc-users", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=3_000)
    parser.add_argument("--large", type=int, default=30_000)
    parser.add_argument("--work", default=None)
    parser.add_argument("--keep", default=None, help="keep the data and outputs here")
    args = parser.parse_args()
    import ray

    from raymix.engine.cluster import quiet_environment

    quiet_environment()
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        where = Path(args.keep or tmp)
        for what in args.what:
            result = {"cost": cost, "auc": auc, "linear": linear}[what](args, where)
            print(json.dumps({what: result}, indent=1, default=float), flush=True)


if __name__ == "__main__":
    main()
