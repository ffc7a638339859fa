"""Where the CPU of a 1,000-row Arrow ``POST /predict`` goes, process by process, against the
bare deployment: CPU milliseconds per request of each process of this Ray session (the
proxy, each replica, the raylet, ...) and of this one (the load generator), over a round.

The run bench/serve.py wrote (``--work``/run-1: 1M user and 100k item models); the same 8 x
1,000 rows as an Arrow IPC stream to :class:`raymix.serving.app.Constant` and to raymix,
answered as JSON and as Arrow (``Accept``), rounds alternated:

    python bench/serve_cpu.py [--work /tmp/raymix-bench-serve] [--rounds 2] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from serve import ARROW, arrow_stream, request_columns, request_rows  # noqa: E402
from serve_load import run_load  # noqa: E402

PROCESSES = ("ServeReplica:raymix", "ServeReplica:bare", "ProxyActor", "ServeController",
             "raylet", "gcs_server", "log_monitor", "dashboard")  # fmt: skip


def kind(process) -> str:
    try:
        line = " ".join(process.cmdline())
    except Exception:  # gone, or not ours to read
        return "other"
    return next((k for k in PROCESSES if k in line or k in process.name()), "other")


def cpu_seconds() -> dict:
    import psutil

    me = psutil.Process()
    out = {"load generator": sum(me.cpu_times()[:2])}
    for process in me.children(recursive=True):
        try:
            times = process.cpu_times()
        except Exception:
            continue
        name = kind(process)
        out[name] = out.get(name, 0.0) + times.user + times.system
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/raymix-bench-serve"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    import ray
    from ray import serve as ray_serve

    import raymix.serving
    from raymix.serving.app import Constant

    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    rows = request_rows(8000, 1_000_000, 100_000, seed=4)
    bodies = [arrow_stream(request_columns(rows[k : k + 1000])) for k in range(0, 8000, 1000)]
    port = free_port()
    ray_serve.start(http_options={"host": "127.0.0.1", "port": port})
    ray_serve.run(Constant.bind(), name="bare", route_prefix="/bare")  # type: ignore[attr-defined]
    base = raymix.serving.serve(
        args.work / "run-1", port=port, app="raymix", route_prefix="/raymix"
    )
    root = f"http://127.0.0.1:{port}"
    forms = {  # name: (url, Accept)
        "bare, Arrow body": (f"{root}/bare", None),
        "raymix, Arrow body, JSON answer": (f"{base}/predict", None),
        "raymix, Arrow body, Arrow answer": (f"{base}/predict", ARROW),
    }
    for url, accept in forms.values():  # warm up
        run_load(url, bodies, count=20, concurrency=4, max_seconds=60, content_type=ARROW, accept=accept)  # fmt: skip
    for _ in range(args.rounds):
        for name, (url, accept) in forms.items():
            before = cpu_seconds()
            result = run_load(
                url,
                bodies,
                count=args.requests,
                concurrency=4,
                max_seconds=180,
                content_type=ARROW,
                accept=accept,
            )
            after = cpu_seconds()
            n = len(result.status)
            spent = {k: round((v - before.get(k, 0.0)) / n * 1e3, 2) for k, v in after.items()}
            print(json.dumps({
                "form": name,
                "rows_per_s": result.summary(rows_per_request=1000)["rows_per_s"],
                "failed": n - result.ok,
                "cpu_ms_per_request": {k: v for k, v in spent.items() if v >= 0.05},
                "cpu_ms_total": round(sum(spent.values()), 1),
            }), flush=True)  # fmt: skip
    raymix.serving.shutdown("raymix")
    ray_serve.shutdown()


if __name__ == "__main__":
    main()
