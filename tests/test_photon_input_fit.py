"""Photon ML's GAME Avro input through the command line: ``raymix fit`` of
recipes/photon_yahoo_music.py on a split of Photon's own Yahoo! Music fixture, then
``raymix score`` of the fitted run, and a bad Photon file refused in one line (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fastavro
import numpy as np
import pytest

from raymix.data.avro.scores import read_scores_avro

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "data" / "photon-fixtures"
RATINGS = FIXTURES / "input" / "yahoo-music-test.avro"
RECIPE = REPO / "recipes" / "photon_yahoo_music.py"

needs_fixture = pytest.mark.skipif(not RATINGS.exists(), reason="no Photon ML fixture")


def raymix(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAYMIX_PHOTON": str(FIXTURES)}
    return subprocess.run(
        [sys.executable, "-m", "raymix", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path]:
    """The fixture's rows, every fifth in validation, as two Avro files of its schema."""
    root = tmp_path_factory.mktemp("photon-split")
    with RATINGS.open("rb") as f:
        reader = fastavro.reader(f)
        schema, records = reader.writer_schema, list(reader)
    paths = root / "train.avro", root / "validation.avro"
    for k, path in enumerate(paths):
        part = [r for i, r in enumerate(records) if (i % 5 == 0) == (k == 1)]
        with path.open("wb") as out:
            fastavro.writer(out, fastavro.parse_schema(schema), part, codec="deflate")
    return paths


@needs_fixture
def test_the_yahoo_music_recipe_fits_and_scores_from_photon_avro(split, tmp_path):
    train, validation = split
    out = tmp_path / "fit"
    done = raymix(
        "fit", str(RECIPE), "--quiet", "--set", f"data.train={train}",
        "--set", f"data.validation={validation}", "--set", f"output={out}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == {"train": 7356, "validation": 1839}
    fitted = summary["final"]["per-song"]["rmse"]

    def ratings(path):
        with path.open("rb") as f:
            return np.array([r["response"] for r in fastavro.reader(f)], float)

    mean_only = float(np.sqrt(np.mean((ratings(validation) - ratings(train).mean()) ** 2)))
    assert fitted < 0.95 * mean_only, (fitted, mean_only)

    uid, scores = read_scores_avro(out / "per-song" / "validation_scores" / "part-00000.avro")
    assert np.sqrt(np.mean((scores[np.argsort(uid)] - ratings(validation)) ** 2)) == (
        pytest.approx(fitted, rel=1e-9)
    )
    done = raymix("score", str(out), "--out", str(tmp_path / "scored"))
    assert done.returncode == 0, done.stderr[-3000:]
    s_uid, scored = read_scores_avro(tmp_path / "scored" / "scores" / "part-00000.avro")
    np.testing.assert_allclose(
        scored[np.argsort(s_uid)], scores[np.argsort(uid)], rtol=0, atol=1e-9
    )


@needs_fixture
@pytest.mark.parametrize("damage", ["truncated", "not avro"])
def test_a_bad_photon_file_is_one_line_naming_it(damage, tmp_path):
    bad = tmp_path / "bad.avro"
    raw = RATINGS.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else b"rating,user\n5,1\n")
    done = raymix(
        "fit", str(RECIPE), "--quiet", "--set", f"data.train={bad}",
        "--set", f"data.validation={bad}", "--set", f"output={tmp_path / 'out'}",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0], done.stderr
    assert "Traceback" not in done.stderr
