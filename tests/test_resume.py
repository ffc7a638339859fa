"""Driver failure: kill ``raymix fit`` between coordinates; ``--resume`` ends identically."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raymix.data.avro.models import read_models
from raymix.recipe.load import load_recipe
from raymix.run import fit

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def models_of(out: Path, name: str):
    return sorted(
        (r["modelId"], [(m["name"], m["value"]) for m in r["means"]])
        for r in read_models(out / name / "models")
    )


def test_killed_driver_resumes_to_identical_models_and_metrics(movielens, ray_session, tmp_path):
    env = dict(os.environ, RAYMIX_MOVIELENS=str(movielens))
    env.pop("RAY_ADDRESS", None)
    killed = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "raymix.cli",
        "fit",
        str(REPO / "recipes" / "movielens_lr.py"),
        "--set",
        f"output={killed}",
        "--set",
        "passes=3",
        "--quiet",
    ]
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state = killed / "checkpoint" / "state.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if state.is_file() and json.loads(state.read_text())["completed"] >= [0, 1]:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint appeared")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    completed = json.loads(state.read_text())["completed"]
    assert completed < [2, 2], "the run had finished; nothing to resume"
    assert not (killed / "summary.json").exists()

    # resumed from a copy: OUT is the truth, not the output its run.json names (a copied run
    # once resumed into the original directory)
    copy = tmp_path / "copy"
    shutil.copytree(killed, copy)
    original = {p: p.stat().st_mtime_ns for p in killed.rglob("*")}
    code = subprocess.call(
        [sys.executable, "-m", "raymix.cli", "fit", "--resume", str(copy), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    assert code == 0
    assert {p: p.stat().st_mtime_ns for p in killed.rglob("*")} == original
    assert json.loads((copy / "run.json").read_text())["output"] == str(copy)
    killed = copy

    whole = tmp_path / "whole"
    monkey = pytest.MonkeyPatch()
    monkey.setenv("RAYMIX_MOVIELENS", str(movielens))
    try:
        recipe = load_recipe(REPO / "recipes" / "movielens_lr.py", [f"output={whole}", "passes=3"])
    finally:
        monkey.undo()
    fit(recipe)
    for name in ("global", "per-user", "per-movie"):
        assert models_of(killed, name) == models_of(whole, name)
    resumed = json.loads((killed / "summary.json").read_text())
    uninterrupted = json.loads((whole / "summary.json").read_text())
    assert [s["metrics"] for s in resumed["steps"]] == [
        s["metrics"] for s in uninterrupted["steps"]
    ]
    assert resumed["final"] == uninterrupted["final"]


def test_a_run_stopped_while_summarizing_resumes(movielens, ray_session, tmp_path, monkeypatch):
    """Ctrl-C after the last step, while the summary and the report are written: the run's
    checkpoint is still there (it once was discarded before, and --resume found nothing),
    and --resume finishes the run with the metrics of the uninterrupted one."""
    import raymix.report

    monkeypatch.setenv("RAYMIX_MOVIELENS", str(movielens))
    recipe = load_recipe(REPO / "recipes" / "movielens_lr.py", [f"output={tmp_path / 'out'}"])
    summarize = raymix.report.summarize

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(raymix.report, "summarize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(recipe)
    assert (tmp_path / "out" / "checkpoint" / "state.json").is_file()
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    monkeypatch.setattr(raymix.report, "summarize", summarize)
    resumed = fit(recipe, resume=True)
    assert (tmp_path / "out" / "_SUCCESS").is_file()
    assert not (tmp_path / "out" / "checkpoint").exists()
    whole = fit(recipe.model_copy(update={"output": str(tmp_path / "whole")}))
    assert resumed.final == whole.final
