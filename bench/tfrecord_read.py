"""Benchmark: reading a per-record TFRecord file, compiled reader vs tf.data + parse_example.

Two readers produce the same Arrow table (checked):

- ``compiled``: :func:`raymix.data.tfrecord.tables.read_tfrecord_file`, numba kernels, no TensorFlow;
- ``tf.data``: raymix's reader before it, ``tf.data.TFRecordDataset`` batched by 65,536 and
  ``tf.io.parse_example`` with ``example_codec.parse_spec``, converted by the same helpers.

Files: movieLens ``global/trainingData/part-00000.tfrecord`` (79,959 records; all columns of
the ``global`` file) and a synthetic 1M-row file (``raymix data synthetic --format tfrecord``,
dense ``global`` of 50 floats, two bags of 10). Both are generated into ``--work`` if absent.

- warm: in one process per reader, a first read (imports, numba cache load, TF graph) and then
  the best of ``--repeat`` reads: records/s of the whole read, file to table;
- cold: a fresh Python process per read, wall time from its start to the table, imports
  included (best of ``--cold-repeat``).

    python bench/tfrecord_read.py [--work DIR] [--repeat 5] [--cold-repeat 3]

Prints a markdown table and writes ``bench/results/tfrecord_read.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ML100K = REPO.parent / "shared" / "data" / "ml-100k"
MOVIELENS_COLUMNS = ["global", "uid", "weight", "user_id", "movie_id", "response"]
SYNTHETIC = ["--rows", "1000000", "--users", "100000", "--items", "10000"]


def tf_read(path: str, metadata, columns):
    """raymix's TFRecord reader before the compiled one (tf.data + parse_example)."""
    from tests.data.tfrecord.tf_reference import read_with_tensorflow

    return read_with_tensorflow(path, metadata, columns)


def read(reader: str, path: str, meta_path: str, columns):
    from raymix.data.metadata import load_metadata
    from raymix.data.tfrecord.tables import read_tfrecord_file

    metadata = load_metadata(meta_path)
    if reader == "compiled":
        return read_tfrecord_file(path, metadata, columns)
    return tf_read(path, metadata, columns)


def datasets(work: Path) -> dict[str, tuple[str, str, list[str] | None]]:
    ml, syn = work / "movielens", work / "synthetic"
    if not (ml / "metadata" / "tensor_metadata.json").exists():
        cli = [sys.executable, "-m", "raymix.cli", "data", "movielens"]
        subprocess.run([*cli, "--source", str(ML100K), "--dest", str(ml)], check=True)
    if not (syn / "metadata" / "tensor_metadata.json").exists():
        cli = [sys.executable, "-m", "raymix.cli", "data", "synthetic", "--dest", str(syn)]
        flags = ["--format", "tfrecord", "--validation-fraction", "0", "--quiet"]
        subprocess.run([*cli, *SYNTHETIC, *flags], check=True)
    return {
        "movieLens train": (
            str(ml / "global" / "trainingData" / "part-00000.tfrecord"),
            str(ml / "metadata" / "tensor_metadata.json"),
            MOVIELENS_COLUMNS,
        ),
        "synthetic 1M": (
            str(syn / "train" / "part-00000.tfrecord"),
            str(syn / "metadata" / "tensor_metadata.json"),
            None,
        ),
    }


def warm(reader: str, path: str, meta: str, columns, repeat: int) -> dict:
    """Best-of-``repeat`` read in a fresh process that has already read the file once."""
    code = (
        "import json, sys, time\n"
        f"sys.path.insert(0, {str(REPO / 'bench')!r})\n"
        "from tfrecord_read import read\n"
        f"args = ({reader!r}, {path!r}, {meta!r}, {columns!r})\n"
        "start = time.perf_counter(); table = read(*args); first = time.perf_counter() - start\n"
        "times = []\n"
        f"for _ in range({repeat}):\n"
        "    start = time.perf_counter(); read(*args); times.append(time.perf_counter() - start)\n"
        "print(json.dumps({'rows': table.num_rows, 'first': first, 'best': min(times)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold(reader: str, path: str, meta: str, columns, repeat: int) -> float:
    """Best wall time of a fresh process that imports what it needs and reads the file."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'bench')!r})\n"
        "from tfrecord_read import read\n"
        f"read({reader!r}, {path!r}, {meta!r}, {columns!r})\n"
        "print('tensorflow' in sys.modules)\n"
    )
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
        imported_tf = out.stdout.decode().strip().splitlines()[-1] == "True"
        if imported_tf != (reader == "tf.data"):
            raise SystemExit(f"{reader}: TensorFlow imported = {imported_tf}")
    return best


def same_tables(path: str, meta: str, columns) -> bool:
    return read("compiled", path, meta, columns).equals(read("tf.data", path, meta, columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/raymix-bench-tfrecord"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cold-repeat", type=int, default=3)
    args = parser.parse_args()
    files = datasets(args.work)
    results = []
    for name, (path, meta, columns) in files.items():
        row = {"file": name, "bytes": os.path.getsize(path)}
        for reader in ("compiled", "tf.data"):
            got = warm(reader, path, meta, columns, args.repeat)
            row["records"] = got["rows"]
            row[reader] = {
                "warm_seconds": round(got["best"], 4),
                "records_per_second": round(got["rows"] / got["best"]),
                "first_read_seconds": round(got["first"], 3),
            }
            if name.startswith("movieLens"):
                row[reader]["cold_seconds"] = round(
                    cold(reader, path, meta, columns, args.cold_repeat), 3
                )
        row["identical_tables"] = same_tables(path, meta, columns)
        results.append(row)
    load = os.getloadavg()[0]
    print(f"\nload average {load:.1f} on {os.cpu_count()} cores\n")
    print("| file | records | MB | reader | records/s (warm) | warm read s | cold process s |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for row in results:
        for reader in ("compiled", "tf.data"):
            r = row[reader]
            cold_s = f"{r['cold_seconds']:.2f}" if "cold_seconds" in r else "—"
            print(
                f"| {row['file']} | {row['records']:,} | {row['bytes'] / 1e6:.0f} | {reader} | "
                f"{r['records_per_second']:,} | {r['warm_seconds']:.3f} | {cold_s} |"
            )
    out = REPO / "bench" / "results" / "tfrecord_read.json"
    out.write_text(json.dumps({"load_average": load, "results": results}, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
