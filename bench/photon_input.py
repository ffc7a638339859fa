"""Photon ML GAME input: rows/s of raymix's compiled reader vs a plain fastavro record loop.

Both produce the same thing: ids, responses and one CSR per bag through the same feature
index (the bags' distinct (name, term) pairs). The fastavro loop is the straightforward
Python decoder: one dict per record, one lookup per feature.

    PYTHONPATH=$PWD python bench/photon_input.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import fastavro
import numpy as np
import scipy.sparse as sp

from raymix.data.avro.photon_input import PhotonColumns, read_photon

FILE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photon-fixtures" / "input"
COLUMNS = PhotonColumns(
    ids=("userId", "songId", "artistId"), bags=("features", "userFeatures", "songFeatures")
)


def fastavro_loop(path, names):
    ids = {k: [] for k in COLUMNS.ids}
    response = []
    parts = {b: ([], [], [0]) for b in COLUMNS.bags}
    with open(path, "rb") as f:
        for record in fastavro.reader(f):
            for k in COLUMNS.ids:
                ids[k].append(record[k])
            response.append(float(record["response"]))
            for bag in COLUMNS.bags:
                index = names[bag]
                cols, vals, ptr = parts[bag]
                for x in record[bag]:
                    j = index.get((x["name"], x["term"] or ""))
                    if j is not None:
                        cols.append(j)
                        vals.append(x["value"])
                ptr.append(len(cols))
    n = len(response)
    bags = {b: sp.csr_matrix((v, c, p), shape=(n, len(names[b]))) for b, (c, v, p) in parts.items()}
    return {k: np.array(v) for k, v in ids.items()}, np.array(response), bags


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", default=str(FILE / "yahoo-music-test.avro"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = read_photon(args.file, COLUMNS)  # compiles the kernel (cached)
    names = {b: {p: j for j, p in enumerate(rows.names[b])} for b in COLUMNS.bags}
    n = rows.response.size
    best = {}
    for label, run in (
        ("compiled", lambda: read_photon(args.file, COLUMNS)),
        ("fastavro", lambda: fastavro_loop(args.file, names)),
    ):
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        best[label] = min(times)
        print(
            f"{label:9s} {n / best[label]:12,.0f} rows/s  (best of {args.repeat}: {best[label]:.3f} s)"
        )
    print(f"speed-up {best['fastavro'] / best['compiled']:.1f}x on {n} rows")


if __name__ == "__main__":
    main()
