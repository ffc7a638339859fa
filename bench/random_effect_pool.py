"""Ray overhead of the random-effect actor pool: the pool's fit against the solver called directly.

100k entities of ~30 rows and 10 features, with offsets, written as Parquet. The same rows,
routed to the same buckets, are fitted (and scored) twice in the same run:

* **direct**: in this process, ``fit_entities`` + ``score_entities`` on each actor's grouped
  problem, with 1 solver thread per actor-share of the cores (what the actors do), the shares
  run one after the other and the time divided by the number of actors (a perfect 2-core run);
* **pool**: ``BucketPool.call("fit", ...)`` on the resident actors (offsets in, scores out).

Target: pool / direct <= 1.3.   python bench/random_effect_pool.py [--entities 100000] [--actors 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]


def write_data(directory: Path, entities: int, rows_per: int, d: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    n = entities * rows_per
    entity = np.repeat(np.arange(entities), rows_per)
    rng.shuffle(entity)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(scale=0.5, size=(entities, d))
    logit = np.einsum("ij,ij->i", X, w[entity]) + rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    directory.mkdir(parents=True, exist_ok=True)
    for part, rows in enumerate(np.array_split(np.arange(n), 4)):
        pq.write_table(
            pa.table(
                {
                    "uid": rows.astype(np.int64),
                    "response": y[rows],
                    "user_id": entity[rows],
                    "bag_indices": pa.array(
                        list(np.tile(np.arange(d), (rows.size, 1))), pa.list_(pa.int64())
                    ),
                    "bag_values": pa.array(list(X[rows]), pa.list_(pa.float32())),
                }
            ),
            directory / f"part-{part}.parquet",
        )
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import ray

    from raymix import Columns, Data, RandomEffect, Recipe, Resources
    from raymix.coordinates.buckets import FitCommand
    from raymix.engine.cluster import ray_session
    from raymix.engine.random_effect import BucketPool
    from raymix.run import plan
    from raymix.solvers.entity import EntityProblem, fit_entities, score_entities

    work = Path(tempfile.mkdtemp(prefix="raymix-pool-"))
    n = write_data(work / "data", args.entities, args.rows, args.features)
    recipe = Recipe(
        data=Data(train=str(work / "data")),
        columns=Columns(weight=None),
        coordinates=[
            RandomEffect(name="re", entity="user_id", feature_bag="bag", sparsity_threshold=0)
        ],
        output=str(work / "out"),
        resources=Resources(actors=args.actors),
    )
    the_plan = plan(recipe)
    spec, source = recipe.coordinates[0], the_plan.coordinates[0].train
    offsets = np.random.default_rng(1).normal(scale=0.3, size=n)
    with ray_session(recipe.resources):
        pool = BucketPool(the_plan.actors, the_plan.threads, the_plan.buckets)
        started = time.perf_counter()
        pool.load(spec, recipe.seed, source, None, None)
        loaded = pool.loaded("re")
        load_seconds = time.perf_counter() - started
        uids = [bucket.train.uid for bucket in loaded]
        pieces = pool.share([offsets[u] for u in uids])
        pool_times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            pool.fit("re", pieces, FitCommand())
            pool_times.append(time.perf_counter() - started)
        # the same grouped problems, solved directly in this process
        states = [
            ray.get(a.__ray_call__.remote(lambda self: self.coordinates["re"].rows.train))
            for a in pool.actors
        ]
    direct_times = []
    for _ in range(args.repeat):
        total = 0.0
        for grouped, u in zip(states, uids, strict=True):
            rows = grouped.rows
            off = offsets[u]
            problem = EntityProblem(grouped.entity_ptr, rows.X, rows.label, rows.weight, off)
            started = time.perf_counter()
            models = fit_entities(
                problem,
                l2=spec.l2,
                max_iter=spec.solver.max_iter,
                tol=spec.solver.tolerance,
                n_threads=the_plan.threads,
            )
            score_entities(models, rows.X, grouped.entity_ptr)
            total += time.perf_counter() - started
        direct_times.append(total / len(states))
    pool_best, direct_best = min(pool_times), min(direct_times)
    result = {
        "entities": args.entities,
        "rows": n,
        "actors": args.actors,
        "load_seconds": round(load_seconds, 3),
        "pool_fit_seconds": round(pool_best, 3),
        "direct_fit_seconds": round(direct_best, 3),
        "ratio": round(pool_best / direct_best, 3),
        "entities_per_second_pool": round(args.entities / pool_best),
    }
    print(
        "| entities | actors | load (s) | pool fit+score (s) | direct fit+score (s) | pool / direct | entities/s (pool) |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.entities} | {args.actors} | {load_seconds:.2f} | {pool_best:.3f} | {direct_best:.3f} "
        f"| {pool_best / direct_best:.2f} | {args.entities / pool_best:,.0f} |"
    )
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "random_effect_pool.json").write_text(
        json.dumps(result, indent=1)
    )


if __name__ == "__main__":
    main()
