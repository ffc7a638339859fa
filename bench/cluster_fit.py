"""The synthetic GLMix set fitted on a loopback cluster of N nodes (``ray start`` N times on
this machine: tests/loopback.py) against the same fit on the embedded local Ray: every model,
score file and metric compared (``bench/chaos_compare.py``'s digests), where each bucket actor
ran, and the wall times.

    PYTHONPATH=$PWD python bench/cluster_fit.py --nodes 4 [--rows 1000000] [--work DIR]

Both fits use ``recipes/synthetic_glmix.py`` with the same ``resources.actors`` and
``resources.buckets`` (so that the entities fall into the same buckets), the fixed effect in
the driver (``workers=0``) and the bucket actors spread over the nodes (raymix's SPREAD
placement group). Each node gets ``--cpus-per-node`` logical CPUs and its own object store.
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

from chaos_compare import differences, digests

from tests.loopback import LoopbackCluster

REPO = Path(__file__).resolve().parents[1]

ACTORS_BY_NODE = """
import json, sys
from ray.util.state import list_actors

dashboard = sys.argv[1]
actors = list_actors(address=dashboard, filters=[("class_name", "=", "BucketActor")],
                     detail=True, limit=1000)
print(json.dumps(sorted(n[-8:] for n in (a.node_id for a in actors))))
"""


def make_data(work: Path, rows: int, users: int, items: int) -> Path:
    dest = work / f"synthetic-{rows}"
    if not (dest / "_done").exists():
        subprocess.run(
            [sys.executable, "-m", "raymix.cli", "data", "synthetic", "--dest", str(dest),
             "--rows", str(rows), "--users", str(users), "--items", str(items),
             "--rows-per-file", str(max(rows // 4, 1)), "--overwrite", "--quiet"],
            check=True, cwd=REPO,
        )  # fmt: skip
        (dest / "_done").write_text("")
    return dest


def fit(out: Path, data: Path, sets: list[str], env: dict, address: str | None) -> float:
    args = [a for s in [*sets, f"output={out}"] for a in ("--set", s)]
    command = [sys.executable, "-m", "raymix.cli", "fit", str(REPO / "recipes" / "synthetic_glmix.py")]  # fmt: skip
    command += [*args, "--overwrite", "--quiet"] + (["--address", address] if address else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, env={**env, "RAYMIX_SYNTHETIC": str(data)})
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--cpus-per-node", type=int, default=2)
    parser.add_argument("--object-store-mb", type=int, default=1500)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "raymix-cluster-fit"
    )
    args = parser.parse_args()
    data = make_data(args.work, args.rows, args.users, args.items)
    sets = [f"resources.actors={args.actors}", f"resources.buckets={4 * args.actors}"]
    local_seconds = fit(args.work / "local", data, sets, dict(os.environ), None)
    auc = json.loads((args.work / "local" / "summary.json").read_text())["final"]
    print(f"embedded local Ray: {local_seconds:.1f} s; final {auc}", flush=True)
    cluster = LoopbackCluster(
        cpus_per_node=args.cpus_per_node,
        object_store_bytes=args.object_store_mb * 2**20,
        nodes=args.nodes,
    )
    try:
        started = time.perf_counter()
        cluster.start()
        start_seconds = time.perf_counter() - started
        print(f"{args.nodes}-node loopback cluster up in {start_seconds:.1f} s", flush=True)
        cluster_seconds = fit(args.work / "cluster", data, sets, cluster.env, cluster.gcs)
        placed = cluster.python(ACTORS_BY_NODE, cluster.dashboard)
        by_node = json.loads(placed.stdout) if placed.returncode == 0 else placed.stderr[-500:]
    finally:
        cluster.stop()
    local, on_cluster = digests(args.work / "local"), digests(args.work / "cluster")
    differ = differences(local, on_cluster)
    nodes_used = len(set(by_node)) if isinstance(by_node, list) else "?"
    print(
        f"\n| rows | nodes | actors (nodes they ran on) | local fit (s) | cluster fit (s) "
        f"| files compared | identical |\n|---:|---:|---|---:|---:|---:|---|\n"
        f"| {args.rows:,} | {args.nodes} | {args.actors} ({nodes_used} nodes: {by_node}) "
        f"| {local_seconds:.1f} | {cluster_seconds:.1f} | {len(local)} "
        f"| {'all' if not differ else 'NO: ' + ', '.join(differ[:5])} |"
    )
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
