"""A normal ``raymix fit`` prints raymix's lines only: no Ray log line (the token-auth
notice, "Progress bars disabled", Ray Data's execution lines); ``--verbose`` shows them."""

from __future__ import annotations

import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from raymix import Data, FixedEffect, RandomEffect, Recipe, Resources
from tests.test_output_modes import rows

pytestmark = [pytest.mark.slow]

RAY_LINE = re.compile(r"\b(INFO|WARNING|ERROR|WARN)\b|\(pid=|ray::|Traceback")


def fit(recipe, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "raymix", "fit", str(recipe), "--overwrite", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_a_normal_fit_prints_no_line_from_ray_and_verbose_does(tmp_path):
    for split, n, uid0 in (("train", 40, 0), ("validation", 40, 1000)):
        (tmp_path / split).mkdir()
        pq.write_table(rows(n, uid0, uid0), tmp_path / split / "part-0.parquet")
    recipe = Recipe(
        data=Data(train=str(tmp_path / "train"), validation=str(tmp_path / "validation")),
        coordinates=[
            FixedEffect(name="global", feature_bag="global"),
            RandomEffect(name="per-user", entity="user_id", feature_bag="global"),
        ],
        output=str(tmp_path / "out"),
        resources=Resources(actors=1, buckets=2),
    )
    path = tmp_path / "recipe.json"
    path.write_text(recipe.model_dump_json())

    done = fit(path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    assert any("pass 1 per-user" in line for line in lines), lines
    assert [line for line in lines if RAY_LINE.search(line)] == [], lines

    loud = fit(path, "--verbose")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert any(RAY_LINE.search(line) for line in (loud.stdout + loud.stderr).splitlines())
