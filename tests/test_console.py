"""A normal ``raymix fit`` prints raymix's lines only: no Ray log line (the token-auth
notice, "Progress bars disabled", Ray Data's execution lines); ``--verbose`` shows them."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from raymix import Data, FixedEffect, RandomEffect, Recipe, Resources
from raymix.console import Progress, plain_line
from raymix.descent import Step
from raymix.run import step_message
from tests.test_output_modes import rows

RAY_LINE = re.compile(r"\b(INFO|WARNING|ERROR|WARN)\b|\(pid=|ray::|Traceback")


def fit(recipe, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "raymix", "fit", str(recipe), "--overwrite", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
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


def test_plain_lines_carry_the_time_and_the_seconds_since_the_start():
    line = plain_line("reading data", now=0.0, elapsed=12.34)
    assert re.fullmatch(r"\d\d:\d\d:\d\d \[  12\.3s\] reading data", line), line


def test_progress_off_a_terminal_prints_plain_lines_and_quiet_nothing():
    stream = io.StringIO()
    with Progress(stream=stream) as say:
        say("pass 1 global: auc=0.6000")
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d \[ +\d+\.\ds\] pass 1 global: auc=0.6000\n", stream.getvalue()
    )
    quiet = io.StringIO()
    with Progress(stream=quiet, quiet=True) as say:
        say("anything")
    assert quiet.getvalue() == ""


def test_progress_on_a_terminal_is_live_and_ends_clean():
    stream = io.StringIO()
    with Progress(stream=stream, live=True) as say:
        say("reading data for 2 coordinates [not markup]")
    out = stream.getvalue()
    assert "reading data for 2 coordinates [not markup]" in out
    assert "\x1b[" in out  # a terminal's escapes: the live status drawn and cleared


def test_a_step_line_names_the_pass_the_metrics_and_the_entities_fitted():
    step = Step(1, "per-user", {"auc": 0.70301, "per_entity_auc": 0.5911}, {"entities": 943}, 0.04)
    assert step_message(step, 3) == (
        "pass 2 per-user: auc=0.7030, per_entity_auc=0.5911; 943 entities fitted "
        "(0.04 s; pass 2 of 3)"
    )
    late = Step(0, "per-user", {"auc": 0.7}, {"entities": 1500, "not_converged": 2}, 1.5)
    assert "1,500 entities fitted (2 not converged)" in step_message(late, 1)
    fixed = Step(0, "global", {"auc": 0.6}, {"iterations": 12}, 0.2)
    assert step_message(fixed, 1) == "pass 1 global: auc=0.6000 (0.20 s; pass 1 of 1)"
