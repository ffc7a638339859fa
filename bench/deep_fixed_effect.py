"""Training throughput of the deep (DeText wide-and-deep) fixed effect on ml-100k.

For each backend (``tensorflow``: Ray Train + TF collective all-reduce; ``horovod``: Horovod
over Gloo on Ray actors) and each number of workers (and the in-process run, workers=0),
one DeepCoordinate is started and fitted twice with the same number of steps:

* start-up: worker group up, data read, tokenized, split and loaded;
* fit 1: ``--steps`` steps of a global batch of ``--batch`` rows (the recipe's default
  training; tf.function tracing included), then scoring every row; its validation AUC;
* fit 2: as many steps again on the resident workers: the steady-state throughput,
  examples/s = steps x batch / time of the training loop (all-reduce included, scoring not).

    python bench/deep_fixed_effect.py [--steps 1000] [--batch 64] [--workers 0 1 2]
        [--backends tensorflow horovod] [--gradients sparse dense] [--source ML100K_DIR]

Prints a markdown table; writes bench/results/deep_fixed_effect.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "ml-100k"
RESULTS = REPO / "bench" / "results" / "deep_fixed_effect.json"


def measure(recipe, backend: str, workers: int, steps: int, batch: int, sparse: bool) -> dict:
    from dataclasses import replace

    from raymix import metrics as M
    from raymix.coordinates.base import RowIndex
    from raymix.coordinates.deep import DeepCoordinate
    from raymix.coordinates.inputs import build_source
    from raymix.engine.deep_service import DeepService

    spec = recipe.coordinates[0].model_copy(
        update={"workers": workers, "backend": backend, "steps": steps, "batch_size": batch}
    )
    data = recipe.data_for(spec)
    train = build_source(data, recipe.columns, split="train", bag=spec.feature_bag)
    validation = build_source(data, recipe.columns, split="validation", bag=spec.feature_bag)
    started = time.perf_counter()
    coordinate = DeepCoordinate(spec, train, validation, DeepService())
    plan = coordinate.plan
    coordinate.plan = replace(
        plan, train_config=replace(plan.train_config, sparse_gradients=sparse)
    )
    coordinate.start()
    try:
        train_rows, val_rows = coordinate.holders()
        train_index = RowIndex([h.uid for h in train_rows], "training")
        val_index = RowIndex([h.uid for h in val_rows], "validation")
        coordinate.bind(train_index, val_index)
        startup = time.perf_counter() - started
        label = np.zeros(len(val_index))
        for h in val_rows:
            label[val_index.positions(h.uid, "validation")] = h.label
        zeros = np.zeros(len(train_index))
        t0 = time.perf_counter()
        first = coordinate.fit(zeros, np.zeros(len(val_index)))
        fit_seconds = time.perf_counter() - t0
        auc = M.evaluate("auc", first.validation, label, np.ones(label.size))
        second = coordinate.fit(zeros, np.zeros(len(val_index))).info
    finally:
        coordinate.close()
    return {
        "backend": backend if workers else "in-process",
        "workers": workers,
        "gradients": "sparse" if sparse else "dense",
        "steps": steps,
        "batch": batch,
        "startup_seconds": round(startup, 2),
        "fit1_seconds": round(fit_seconds, 2),
        "fit1_examples_per_second": round(first.info["examples_per_second"], 1),
        "examples_per_second": round(second["examples_per_second"], 1),
        "train_seconds": round(second["train_seconds"], 2),
        "validation_auc": round(float(auc), 4),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "horovod"])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument(
        "--gradients",
        nargs="+",
        choices=["sparse", "dense"],
        default=["dense"],
        help="embedding gradient exchange: dense all-reduce (default) or all-gather of rows",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import ray

    from raymix.datasets.movielens import convert_movielens
    from raymix.engine.cluster import physical_cores, quiet_environment
    from raymix.recipe.load import load_recipe

    data = Path(tempfile.mkdtemp(prefix="raymix-bench-deep-"))
    convert_movielens(args.source, data, seed=0)
    os.environ["RAYMIX_MOVIELENS"] = str(data)
    recipe = load_recipe(REPO / "recipes" / "movielens_detext.py", [f"output={data}/out"])
    load_before = os.getloadavg()
    quiet_environment()
    ray.init(
        num_cpus=2 * physical_cores(),
        object_store_memory=1 << 30,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )
    rows = []
    try:
        configs = [("tensorflow", 0, "dense")] if 0 in args.workers else []
        configs += [
            (b, w, g) for b in args.backends for w in args.workers if w > 0 for g in args.gradients
        ]
        for backend, workers, gradients in configs:
            if backend == "horovod":
                try:
                    import horovod.tensorflow  # noqa: F401
                except ImportError:
                    print("horovod not installed (scripts/install_horovod.sh): skipped")
                    continue
            row = measure(recipe, backend, workers, args.steps, args.batch, gradients == "sparse")
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        ray.shutdown()
    result = {
        "benchmark": "deep_fixed_effect",
        "data": "ml-100k (79,959 training / 20,041 validation rows), seed 0",
        "model": "DeText CNN (emb 64, 50 filters, window 3) + wide 44, AdamW lr 0.002",
        "machine": {
            "cores": physical_cores(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 1) for x in load_before],
            "load_average_after": [round(x, 1) for x in os.getloadavg()],
        },
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(
        "| backend | workers | embedding gradient | start-up s | examples/s (steady) "
        "| examples/s (1st fit) | 1st fit s | validation AUC |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['workers']} | {r['gradients']} | {r['startup_seconds']} | "
            f"{r['examples_per_second']:,.0f} | {r['fit1_examples_per_second']:,.0f} | "
            f"{r['fit1_seconds']} | {r['validation_auc']} |"
        )
    print(f"\nload average before/after: {load_before} / {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
