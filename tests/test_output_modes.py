"""A fit's outputs have the usual modes: files ``0666 & ~umask``, directories
``0777 & ~umask`` (0644 and 0755 under the usual umask 022), so that another user or pod
sharing the volume can read them; under another umask they follow it.

Each fit is a ``python -m raymix fit`` process started under the umask: its embedded Ray
(and so the random-effect actors, which write their models themselves) inherit it, as they
do on a cluster whose nodes were started under that umask.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix import Data, FixedEffect, RandomEffect, Recipe, Resources

pytestmark = [pytest.mark.slow]

DIM = 4


def rows(n: int, uid0: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "uid": pa.array(np.arange(uid0, uid0 + n), pa.int64()),
            "response": pa.array(rng.integers(0, 2, n), pa.int64()),
            "weight": pa.array(np.ones(n), pa.float32()),
            "user_id": pa.array(np.arange(n) % 3, pa.int64()),
            "global_indices": pa.array(
                [[int(i), DIM - 1] for i in rng.integers(0, DIM - 1, n)], pa.list_(pa.int64())
            ),
            "global_values": pa.array(
                [[float(v), 1.0] for v in rng.normal(size=n)], pa.list_(pa.float32())
            ),
        }
    )


def modes(out: Path) -> dict[str, tuple[str, int]]:
    """Relative path -> ("file" or "dir", permission bits) of the output and all under it."""
    found = {".": ("dir", stat.S_IMODE(out.stat().st_mode))}
    for path in sorted(out.rglob("*")):
        kind = "dir" if path.is_dir() else "file"
        found[str(path.relative_to(out))] = (kind, stat.S_IMODE(path.stat().st_mode))
    return found


def fit_under(umask: int, recipe: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "raymix", "fit", str(recipe), "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.umask(umask),
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_fits_outputs_have_the_usual_modes_and_follow_the_umask(tmp_path):
    for split, n, uid0 in (("train", 30, 0), ("validation", 30, 1000)):
        (tmp_path / split).mkdir()
        pq.write_table(rows(n, uid0, uid0), tmp_path / split / "part-0.parquet")
    out = tmp_path / "out"
    recipe = Recipe(
        data=Data(train=str(tmp_path / "train"), validation=str(tmp_path / "validation")),
        coordinates=[
            FixedEffect(name="global", feature_bag="global"),
            RandomEffect(name="per-user", entity="user_id", feature_bag="global"),
        ],
        output=str(out),
        resources=Resources(actors=1, buckets=2),
    )
    path = tmp_path / "recipe.json"
    path.write_text(recipe.model_dump_json())

    fit_under(0o022, path)
    first = modes(out)
    for name in (
        "run.json",
        "summary.json",
        "report.html",
        "global/models/part-00000.avro",
        "per-user/models",
        "global/training_scores/part-00000.avro",
        "per-user/validation_scores/part-00000.avro",
        "per-user/metric/evalSummary.json",
    ):
        assert name in first, sorted(first)
    assert sum(name.startswith("per-user/models/part-") for name in first) == 2
    assert {kind: mode for kind, mode in first.values()} == {"file": 0o644, "dir": 0o755}, first

    fit_under(0o027, path, "--overwrite")  # the previous run is moved aside, then deleted
    second = modes(out)
    assert second.keys() == first.keys()
    assert {kind: mode for kind, mode in second.values()} == {"file": 0o640, "dir": 0o750}, second
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
