"""Data larger than the object store spills to disk and the fit finishes, with the models of
a fit that had room: ``raymix fit`` in its own process (its own embedded Ray, an 80 MiB
object store, ``RAY_TMPDIR`` pointing at this test's directory so that its raylet's log can
be read) on 360,000 training rows (~160 MB of decoded blocks: a dense bag of 50 and two
sparse bags of 10), against the same fit with a 1 GiB store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fastavro
import pytest

from raymix.datasets.synthetic import generate_synthetic

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow]


def fit(data: Path, out: Path, store_gib: float, ray_tmp: Path) -> subprocess.CompletedProcess:
    ray_tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAYMIX_SYNTHETIC=str(data), RAY_TMPDIR=str(ray_tmp))
    sets = [f"output={out}", f"resources.object_store_gib={store_gib}"]
    command = [sys.executable, "-m", "raymix.cli", "fit", str(REPO / "recipes" / "synthetic_glmix.py")]  # fmt: skip
    command += [a for s in sets for a in ("--set", s)] + ["--quiet"]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)


def models(out: Path) -> dict[str, list]:
    return {
        str(p.relative_to(out)): list(fastavro.reader(p.open("rb")))
        for p in sorted(out.rglob("*.avro"))
        if "checkpoint" not in p.parts
    }


def spilled_mib(ray_tmp: Path) -> float:
    """MiB the raylets of the sessions under ``ray_tmp`` said they spilled."""
    total = 0.0
    for log in ray_tmp.rglob("raylet.out"):
        for line in log.read_text(errors="replace").splitlines():
            if "Spilled " in line and " MiB" in line:
                total += float(line.split("Spilled ")[1].split(" MiB")[0])
    return total


def test_data_larger_than_the_object_store_spills_and_fits_the_same(tmp_path):
    data = tmp_path / "d"
    generate_synthetic(data, rows=400_000, users=40_000, items=4_000, rows_per_file=100_000)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))  # short: Ray's socket paths
    try:
        small = fit(data, tmp_path / "small", 80 / 1024, ray_tmp / "small")
        assert small.returncode == 0, small.stderr[-3000:]
        spilled = spilled_mib(ray_tmp / "small")
        assert spilled > 0, "nothing was spilled: the store was not too small"
        roomy = fit(data, tmp_path / "roomy", 1.0, ray_tmp / "roomy")
        assert roomy.returncode == 0, roomy.stderr[-3000:]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert models(tmp_path / "small") == models(tmp_path / "roomy")
    final = [json.loads((tmp_path / d / "summary.json").read_text())["final"] for d in ("small", "roomy")]  # fmt: skip
    assert final[0] == final[1]
