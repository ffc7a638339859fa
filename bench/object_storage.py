"""Benchmark: data and outputs in an S3 bucket against local disk.

An S3-compatible server (moto's, ``moto_server``, in its own process) on loopback holds a
copy of the 1M-row synthetic set (``raymix data synthetic``, Parquet, 4 files of 250k rows;
generated into ``--work`` if absent). Measured in one run, local and bucket side by side:

- read: every training file read into raymix's row table by the reader the Ray read tasks
  run (:func:`raymix.data.source.read_table`, one file after the other, one thread), best of
  ``--repeat``; and the raw bytes of the same files (:func:`raymix.storage.read_bytes`);
- fit: ``raymix fit recipes/synthetic_glmix.py`` as a fresh process, data and output local,
  then data and output in the bucket, alternating, ``--fit-repeat`` times each (the best wall
  time of the process, and the phases of that run's ``summary.json``); the models and
  metrics of the two are compared.

    python bench/object_storage.py [--work DIR] [--repeat 3] [--fit-repeat 2] [--no-fit]

Prints a markdown table and writes ``bench/results/object_storage.json``. A loopback server
has no network latency and shares the 2 cores with the reader: the ratios show the cost of
the S3 layer (HTTP, the server's own work), not of a real store's network.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BUCKET = "raymix-bench"
SYNTHETIC = ["--rows", "1000000", "--users", "100000", "--items", "10000"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, dict[str, str]]:
    port = free_port()
    server = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": url,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    os.environ.update(env)
    return server, env


def client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])


def upload(local: Path, prefix: str) -> None:
    c = client()
    for path in sorted(local.rglob("*")):
        if path.is_file():
            c.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(local).as_posix()}")


def make_data(work: Path) -> Path:
    dest = work / "synthetic-1m"
    if not (dest / "summary.json").exists():
        subprocess.run(
            [sys.executable, "-m", "raymix.cli", "data", "synthetic", "--dest", str(dest),
             *SYNTHETIC, "--rows-per-file", "250000", "--overwrite", "--quiet"],
            check=True, cwd=REPO,
        )  # fmt: skip
    return dest


def source_of(root: str):
    from raymix.coordinates.inputs import build_source
    from raymix.recipe.load import load_recipe

    os.environ["RAYMIX_SYNTHETIC"] = root
    recipe = load_recipe(REPO / "recipes" / "synthetic_glmix.py", ["output=/tmp/unused"])
    spec = recipe.coordinates[1]  # per-user: uid, label, weight, entity and a sparse bag
    return build_source(recipe.data, recipe.columns, split="train", bag=spec.feature_bag,
                        entity=spec.entity)  # fmt: skip


def time_reads(source, repeat: int) -> dict:
    from raymix import storage
    from raymix.data.source import read_table

    rows, best_table, best_bytes, size = 0, float("inf"), float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = sum(read_table(source, path).num_rows for path in source.files)
        best_table = min(best_table, time.perf_counter() - started)
        started = time.perf_counter()
        size = sum(len(storage.read_bytes(path)) for path in source.files)
        best_bytes = min(best_bytes, time.perf_counter() - started)
    return {"rows": rows, "bytes": size, "table_seconds": best_table, "bytes_seconds": best_bytes}


def fit(root: str, output: str, env: dict) -> dict:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "raymix.cli", "fit", str(REPO / "recipes" / "synthetic_glmix.py"),
         "--set", f"output={output}", "--overwrite", "--quiet"],
        check=True, cwd=REPO, env={**os.environ, **env, "RAYMIX_SYNTHETIC": root},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wall = time.perf_counter() - started
    from raymix import storage

    summary = json.loads(storage.read_text(storage.join(output, "summary.json")))
    return {"wall_seconds": wall, "timings": summary["timings_seconds"], "final": summary["final"],
            "models": models_digest(output)}  # fmt: skip


def models_digest(output: str) -> str:
    """A digest of every model record of the run (the Avro bytes differ by sync markers)."""
    import fastavro

    from raymix import storage

    digest = hashlib.sha256()
    for path in storage.walk(output):
        if "/models/" in path and path.endswith(".avro"):
            digest.update(path.rpartition("/models/")[2].encode())
            for record in fastavro.reader(io.BytesIO(storage.read_bytes(path))):
                digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "raymix-bench-s3"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fit-repeat", type=int, default=2)
    parser.add_argument("--no-fit", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = make_data(args.work)
    server, env = start_server()
    try:
        client().create_bucket(Bucket=BUCKET)
        upload(data, "synthetic-1m")
        remote_root = f"s3://{BUCKET}/synthetic-1m"
        local = time_reads(source_of(str(data)), args.repeat)
        remote = time_reads(source_of(remote_root), args.repeat)
        results: dict = {"read": {"local": local, "s3": remote}}
        rows = [
            ("read 4 files into row tables (1M rows)", local["table_seconds"], remote["table_seconds"]),
            (f"read their bytes ({local['bytes'] / 2**20:.0f} MiB)", local["bytes_seconds"], remote["bytes_seconds"]),
        ]  # fmt: skip
        if not args.no_fit:
            runs: dict[str, list[dict]] = {"local": [], "s3": []}
            for _ in range(args.fit_repeat):  # alternating, so neither side runs warmer
                runs["local"].append(fit(str(data), str(args.work / "out-local"), env))
                runs["s3"].append(fit(remote_root, f"s3://{BUCKET}/out", env))
            results["fit"] = {k: min(v, key=lambda r: r["wall_seconds"]) for k, v in runs.items()}
            results["fit"]["all_wall_seconds"] = {
                k: [r["wall_seconds"] for r in v] for k, v in runs.items()
            }
            a, b = results["fit"]["local"], results["fit"]["s3"]
            results["fit"]["identical_models"] = a["models"] == b["models"]
            results["fit"]["identical_metrics"] = a["final"] == b["final"]
            rows.append(
                ("whole fit, wall time of `raymix fit`", a["wall_seconds"], b["wall_seconds"])
            )
            for phase in ("validate", "read", "coordinates", "write"):
                if phase in a["timings"] and phase in b["timings"]:
                    rows.append(
                        (f"  fit phase '{phase}'", a["timings"][phase], b["timings"][phase])
                    )
    finally:
        server.terminate()
        server.wait()
    print("| what | local disk | S3 on loopback | S3 / local |")
    print("|---|---:|---:|---:|")
    for what, x, y in rows:
        print(f"| {what} | {x:.2f} s | {y:.2f} s | {y / x:.2f} |")
    if "fit" in results:
        print(f"\nmodels identical: {results['fit']['identical_models']}, "
              f"metrics identical: {results['fit']['identical_metrics']}")  # fmt: skip
    out = REPO / "bench" / "results" / "object_storage.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
