"""One run at a time per output directory: a second run fails at once naming the holder;
a dead holder's lock is taken over; the lock goes when the run ends, however it ends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from raymix import Data, FixedEffect, Recipe
from raymix.errors import RecipeError
from raymix.lock import lock_path, output_lock
from raymix.outputs import output_transaction
from tests.test_output_modes import rows


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "out"
    with output_lock(out):
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        refused = f"in use by another raymix run \\(pid {os.getpid()}"
        with pytest.raises(RecipeError, match=refused), output_lock(out):
            pass
    assert not lock_path(out).exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError), output_transaction(out, overwrite=False):
        assert lock_path(out).is_file()
        raise ValueError("the run failed")
    assert not lock_path(out).exists()
    with output_transaction(out, overwrite=True):  # and the rerun is not blocked
        pass


def test_a_dead_holders_lock_is_taken_over_another_hosts_is_not(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    lock_path(out).parent.mkdir(parents=True, exist_ok=True)
    stale = {"host": socket.gethostname(), "pid": int(dead.stdout), "started": time.time()}
    lock_path(out).write_text(json.dumps(stale))
    with output_lock(out):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    elsewhere = {"host": "another-node", "pid": 1, "started": time.time()}
    lock_path(out).write_text(json.dumps(elsewhere))
    with pytest.raises(RecipeError, match="pid 1 on another-node"), output_lock(out):
        pass


def test_a_fit_into_an_output_another_run_holds_fails_at_once(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from raymix.lock import output_lock\n"
            f"with output_lock(Path({str(out)!r})):\n"
            "    print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        (tmp_path / "train").mkdir()
        pq.write_table(rows(30, 0, 0), tmp_path / "train" / "part-0.parquet")
        recipe = tmp_path / "recipe.json"
        spec = Recipe(
            data=Data(train=str(tmp_path / "train")),
            coordinates=[FixedEffect(name="global", feature_bag="global")],
            output=str(out),
        )
        recipe.write_text(spec.model_dump_json())
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "raymix", "fit", str(recipe), "--overwrite"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            f"raymix: error: output: output '{out}' is in use by another raymix run (pid "
            f"{holder.pid} on {socket.gethostname()}, lock {lock_path(out)}); wait for it, or "
            "delete the lock if that run is gone"
        ]
        assert time.monotonic() - started < 60  # at once: before Ray starts
    finally:
        holder.kill()
        holder.wait()
