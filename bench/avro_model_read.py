"""Reading per-entity Avro models (a random effect's warm start): compiled reader vs fastavro.

Writes ``--models`` BayesianLinearModelAvro records (10 of ``--features`` features each, an
intercept, deflate; ``raymix.data.avro.model_writer``), then reads them back into per-entity
arrays with ``read_avro_model_table`` and with the fastavro loop (``read_models`` +
``coefficients_by_index``), checks both agree, and prints records/s (best of ``--repeat``).

    python bench/avro_model_read.py [--models 200000] [--features 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from raymix.data.avro.model_reader import read_avro_model_table
from raymix.data.avro.model_writer import write_model_file
from raymix.data.avro.models import coefficients_by_index, read_models


def write(path: Path, n: int, dim: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    index = np.sort(rng.random((n, dim)).argsort(1)[:, :10], 1).ravel()
    names = [(f"feature_{j}", "") for j in range(dim)]
    write_model_file(
        path,
        np.arange(n),
        intercepts=rng.normal(size=n),
        coef_ptr=np.arange(0, 10 * n + 1, 10),
        coef_index=index,
        coef_value=rng.normal(size=10 * n),
        names=names,
        model_class="com.linkedin.photon.ml.supervised.classification.LogisticRegressionModel",
    )
    return names


def best(function, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="raymix-avro-")) / "part-00000.avro"
    names = write(path, args.models, args.features)
    read_avro_model_table(path, names)  # numba's cache loaded once, outside the timing

    compiled, table = best(lambda: read_avro_model_table(path, names), args.repeat)
    loop, records = best(
        lambda: [coefficients_by_index(r, names) for r in read_models(path)], args.repeat
    )
    values = table.column("value").combine_chunks().values.to_numpy()
    assert np.array_equal(values, np.concatenate([r[2] for r in records])), "readers disagree"
    n = args.models
    print(f"{n:,} models, {path.stat().st_size / 2**20:.0f} MiB (deflate)")
    print("| reader | seconds | records/s |\n|---|---:|---:|")
    print(f"| compiled (read_avro_model_table) | {compiled:.2f} | {n / compiled:,.0f} |")
    print(f"| fastavro loop (read_models + coefficients_by_index) | {loop:.2f} | {n / loop:,.0f} |")
    print(f"\nratio: {loop / compiled:.1f}x")


if __name__ == "__main__":
    main()
