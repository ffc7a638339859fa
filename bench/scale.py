"""One coordinate-descent pass at scale: 1M and 10M rows, 1M users, 100k items.

Generates GLMix data with planted coefficients (``raymix data synthetic``: 50 global and 10
per-entity features, skewed entity sizes), runs ``raymix fit recipes/synthetic_glmix.py``
(one pass: global, per-user, per-item) as a fresh process, and samples every 0.5 s the
proportional resident memory (PSS: shared object-store pages counted once, not once per
process that maps them) of each process of the run (driver, Ray workers and actors by kind,
Ray's own daemons), the machine's used memory over its level before the run, and the object
store's use. Records wall time, peak memory per process kind, the phases of the fit
(summary.json) and the orchestration overhead: wall time minus the solvers' time and the
I/O phases (read, write, checkpoints), so Ray's start, process start, data movement between
coordinates and shutdown. ``--running-ray ROWS`` also fits on a Ray started beforehand, as
on a cluster, where a job does not pay Ray's start.

The AUC is compared with the true planted model's and with the Bayes oracle's
(``bench/bayes_oracle.py``: each entity's posterior mode given the true prior and the true
other parts, the best any estimator can do on these rows).

    python bench/scale.py [--rows 1000000 10000000] [--running-ray 1000000] [--keep DIR]
                          [--grouping routing ray_data]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import psutil
from bayes_oracle import bayes_oracle  # bench/, next to this file

REPO = Path(__file__).resolve().parents[1]


def kind_of(process: psutil.Process, driver: int) -> str:
    if process.pid == driver:
        return "driver"
    try:
        name = " ".join(process.cmdline()[:1]) or process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    if name.startswith("ray::"):
        return name.split(".")[0].split(" ")[0]  # ray::BucketActor, ray::IDLE, ray::_route_task
    for daemon in ("raylet", "gcs_server", "dashboard", "log_monitor", "runtime_env"):
        if daemon in " ".join(process.cmdline()):
            return daemon
    return "other"


def proportional_set_size(pid: int) -> int | None:
    """The process's PSS in bytes: its private pages plus its share of pages it maps with
    others (the object store's shared memory, libraries), so a sum over processes counts every
    page once. RSS would count a 2 GiB object read by three workers three times."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def system_used() -> int:
    memory = psutil.virtual_memory()
    return memory.total - memory.available


def sample(driver: int, stop: threading.Event, peaks: dict, shm: list) -> None:
    root = psutil.Process(driver)
    while not stop.is_set():
        totals: dict = defaultdict(int)
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for process in family:
            rss = proportional_set_size(process.pid)
            if rss is None:
                continue
            kind = kind_of(process, driver)
            totals[kind] += rss
            peaks[f"max single {kind}"] = max(peaks.get(f"max single {kind}", 0), rss)
        totals["all processes"] = sum(v for k, v in totals.items())
        for kind, value in totals.items():
            peaks[kind] = max(peaks.get(kind, 0), value)
        try:
            used = psutil.disk_usage("/dev/shm").used
            shm[0] = max(shm[0], used)
        except OSError:
            pass
        peaks["system used"] = max(peaks.get("system used", 0), system_used())
        stop.wait(0.5)


def run(
    rows: int,
    users: int,
    items: int,
    work: Path,
    address: str | None = None,
    grouping: str = "routing",
) -> dict:
    """Generate (once) and fit ``rows``; on the embedded local Ray, or with ``address`` on a
    running one (then only the driver's memory is sampled: Ray's processes are not its)."""
    data = work / f"synthetic-{rows}"
    if not (data / "summary.json").is_file():
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "raymix.cli",
                "data",
                "synthetic",
                "--dest",
                str(data),
                "--rows",
                str(rows),
                "--users",
                str(users),
                "--items",
                str(items),
                "--overwrite",
                "--quiet",
            ],
            check=True,
        )
        print(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    truth = json.loads((data / "summary.json").read_text())
    out = work / (f"out-{rows}-{grouping}" + ("" if address is None else "-running-ray"))
    env = dict(os.environ, RAYMIX_SYNTHETIC=str(data), RAYMIX_GROUPING=grouping)
    extra = [] if address is None else ["--address", address]
    shm_before = psutil.disk_usage("/dev/shm").used
    used_before = system_used()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raymix.cli",
            "fit",
            str(REPO / "recipes" / "synthetic_glmix.py"),
            "--set",
            f"output={out}",
            "--overwrite",
            "--quiet",
            *extra,
        ],
        env=env,
    )
    peaks: dict = {}
    shm = [shm_before]
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(proc.pid, stop, peaks, shm), daemon=True)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"fit failed with exit code {code}")
    summary = json.loads((out / "summary.json").read_text())
    final_auc = summary["steps"][-1]["metrics"].get("auc")
    solver = sum(s.get("solver_seconds", 0.0) for s in summary["steps"])
    timings = summary["timings_seconds"]
    io = sum(timings.get(k, 0.0) for k in ("read", "write", "checkpoint"))
    orchestration = max(wall - solver - io, 0)
    return {
        "ray": "embedded" if address is None else "running",
        "grouping": grouping,
        "rows": rows,
        "users": users,
        "items": items,
        "wall_seconds": round(wall, 1),
        "timings": timings,
        "solver_seconds": round(solver, 2),
        "io_seconds": round(io, 2),
        "orchestration_seconds": round(orchestration, 2),
        "orchestration_share": round(orchestration / wall, 3),
        "auc": final_auc,
        "true_model_auc": truth.get("validation_true_auc") or truth.get("true_auc"),
        "peak_pss_gib": {
            k: round(v / 2**30, 2) for k, v in sorted(peaks.items()) if k != "system used"
        },
        "system_used_peak_gib": round((peaks.get("system used", 0) - used_before) / 2**30, 2),
        "object_store_peak_gib": round((shm[0] - shm_before) / 2**30, 2),
        "steps": [{k: s[k] for k in ("coordinate", "seconds") if k in s} for s in summary["steps"]],
        # the AUCs of the true model, the Bayes oracle, the fit, and the true model with one
        # fitted part swapped in (once per data set: the embedded run's)
        "bayes_oracle": bayes_oracle(data, out)["auc"] if address is None else None,
    }


@contextmanager
def running_ray(work: Path):
    """A local Ray started beforehand, as a cluster's is (``ray start --head``, the resources
    raymix's embedded Ray takes), and its address; stopped afterwards."""
    from raymix.engine.cluster import OVERSUBSCRIBE, default_object_store_bytes, physical_cores

    port = "6390"
    # token authentication stays on: the head and every fit get the same fresh token
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    subprocess.run(
        ["ray", "start", "--head", f"--port={port}", "--include-dashboard=false",
         f"--num-cpus={OVERSUBSCRIBE * physical_cores()}",
         f"--object-store-memory={default_object_store_bytes()}"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["ray", "stop", "--force"], check=False, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument(
        "--keep", type=Path, default=None, help="work directory (kept; data reused)"
    )
    parser.add_argument(
        "--running-ray",
        type=int,
        nargs="*",
        default=[],
        metavar="ROWS",
        help="also fit these row counts on a Ray started beforehand (a cluster's way)",
    )
    parser.add_argument(
        "--grouping",
        nargs="*",
        default=["routing"],
        choices=["routing", "ray_data"],
        help="the group-by-entity of each fit: Ray core's routing, Ray Data's hash shuffle "
        "(RAYMIX_GROUPING); several: each row count fitted with each, side by side",
    )
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="raymix-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in args.rows:
        for how in args.grouping:
            results.append(run(rows, args.users, args.items, work, grouping=how))
            print(json.dumps(results[-1], indent=1), flush=True)
    if args.running_ray:
        with running_ray(work) as address:
            for rows in args.running_ray:
                for how in args.grouping:
                    results.append(run(rows, args.users, args.items, work, address, how))
                    print(json.dumps(results[-1], indent=1), flush=True)
    print(
        "\n| Ray | grouping | rows | wall (s) | Ray start | read | coordinates | checkpoint | write | solver | "
        "orchestration (s) | orchestration share | AUC | Bayes oracle AUC | true AUC | "
        "peak PSS all (GiB) | system used (GiB) | object store (GiB) |"
    )
    print("|---" * 18 + "|")
    for r in results:
        t, b = r["timings"], r["bayes_oracle"] or {}
        best = max((v for k, v in b.items() if k.startswith("Bayes oracle (both")), default=None)
        print(
            f"| {r['ray']} | {r['grouping']} | {r['rows']:,} | {r['wall_seconds']} | {t.get('ray_start', 0):.1f} "
            f"| {t.get('read', 0):.1f} | {t.get('coordinates', 0):.1f} | {t.get('checkpoint', 0):.1f} "
            f"| {t.get('write', 0):.1f} | {r['solver_seconds']} | {r['orchestration_seconds']} "
            f"| {r['orchestration_share']:.0%} | {r['auc']:.4f} | {best if best is not None else '-'} "
            f"| {r['true_model_auc']:.4f} | {r['peak_pss_gib'].get('all processes')} "
            f"| {r['system_used_peak_gib']} | {r['object_store_peak_gib']} |"
        )
    embedded = [r for r in results if r["ray"] == "embedded" and r["grouping"] == "routing"]
    if len(embedded) == 2:
        ratio = embedded[1]["wall_seconds"] / embedded[0]["wall_seconds"]
        print(
            f"\n{embedded[1]['rows']:,} / {embedded[0]['rows']:,} rows wall-time ratio: {ratio:.1f}"
        )
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "scale.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
