"""Full and read-only disks (issue 16 item 7): a write that fails ends in one line naming the
path and what is intact, and a failed fresh run never blocks its own plain rerun.

ENOSPC and EROFS are real where this process may mount (a tiny tmpfs, a read-only bind
mount; root in the test container, where ``chmod`` alone does not stop a write), else the
atomic writer's error path is simulated."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from raymix import files, outputs
from raymix.errors import RaymixError, StorageError
from raymix.outputs import RUN_FILE, output_transaction
from raymix.storage import SUCCESS
from tests.s3server import s3_server  # noqa: F401 - a fixture


@contextlib.contextmanager
def mounted(where: Path, *options: str):
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", *options, str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def tmpfs(where: Path, size: str):
    return mounted(where, "-t", "tmpfs", "-o", f"size={size}", f"raymix-{uuid.uuid4().hex[:6]}")


def test_a_full_disk_names_the_file_being_written(tmp_path):
    with tmpfs(tmp_path / "disk", "8k") as disk:
        with pytest.raises(StorageError) as caught:
            files.write_text(disk / "big.txt", "x" * 100_000)
        assert caught.value.uri == str(disk / "big.txt")
        assert "No space left on device" in caught.value.reason
        assert [p.name for p in disk.iterdir()] == []  # no temporary file left behind


def test_a_disk_error_of_the_atomic_writer_is_one_line(tmp_path, monkeypatch):
    def refuse(*args):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(StorageError, match=r"a\.json: cannot write: Read-only file system"):
        files.write_json(tmp_path / "a.json", {})


def test_a_fresh_run_failing_on_a_full_disk_says_what_is_left_and_its_rerun_works(
    tmp_path, monkeypatch
):
    out, recipe = tmp_path / "out", '{"name": "r"}\n'
    failing = output_transaction(out, overwrite=False, run=recipe)
    with pytest.raises(StorageError) as caught, failing as where:
        files.write_text(where / RUN_FILE, recipe)
        (where / "checkpoint").mkdir()
        files.write_text(where / "checkpoint" / "state.json", "{}")
        monkeypatch.setattr(files.os, "replace", _full)
        files.write_text(where / "summary.json", "{}")
    monkeypatch.undo()
    message = caught.value.message
    assert str(out / "summary.json") in message and "No space left" in message
    assert f"this run's partial outputs stay in '{out}'" in message
    assert f"--resume {out}" in message
    # the plain rerun (same run.json, no --overwrite) replaces them
    with output_transaction(out, overwrite=False, run=recipe) as where:
        files.write_text(where / RUN_FILE, recipe)
    assert sorted(p.name for p in out.iterdir()) == [SUCCESS, RUN_FILE]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # another recipe's incomplete output still needs --overwrite
    (out / SUCCESS).unlink()
    other = output_transaction(out, overwrite=False, run='{"name": "other"}\n')
    with pytest.raises(RaymixError, match="is not empty"), other:
        pass


def _full(*args):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_overwriting_on_a_read_only_disk_keeps_the_previous_run(tmp_path):
    disk = tmp_path / "disk"
    out = disk / "out"
    out.mkdir(parents=True)
    files.write_text(out / RUN_FILE, "{}")
    files.write_text(out / SUCCESS, "")
    (tmp_path / "lock-free").mkdir()
    with mounted(disk, "--bind", str(disk)):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(disk)], check=True)
        with pytest.raises(RaymixError) as caught, output_transaction(out, overwrite=True):
            pass
    message = caught.value.message
    assert str(out) in message and "Read-only file system" in message
    assert f"nothing in '{out}' was changed" in message
    assert sorted(p.name for p in out.iterdir()) == [SUCCESS, RUN_FILE]


def test_success_is_written_inside_the_transaction(tmp_path, monkeypatch):
    """A full disk at the very last write still restores the previous run."""
    out = tmp_path / "out"
    out.mkdir()
    files.write_text(out / RUN_FILE, "old")
    files.write_text(out / SUCCESS, "")
    real = files.atomic_path

    def no_success(path):
        if Path(path).name == SUCCESS:
            raise StorageError("cannot write: No space left on device", str(path))
        return real(path)

    monkeypatch.setattr(outputs, "write_text", lambda p, t: files.write_text(p, t))
    monkeypatch.setattr(files, "atomic_path", no_success)
    replacing = output_transaction(out, overwrite=True)
    with pytest.raises(StorageError, match="the previous run in .* is unchanged"), replacing as w:
        (w / RUN_FILE).write_text("new")
    assert (out / RUN_FILE).read_text() == "old" and (out / SUCCESS).is_file()
    assert os.path.isdir(next(tmp_path.glob(".out.failed-*")))


def small_data(root: Path, n: int = 3000) -> Path:
    """Parquet train/validation splits and a recipe (fixed effect + per-user) as JSON."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raymix import Data, FixedEffect, RandomEffect, Recipe, Resources

    for split, uid0 in (("train", 0), ("validation", 10 * n)):
        rng = np.random.default_rng(uid0)
        table = pa.table(
            {
                "uid": pa.array(np.arange(uid0, uid0 + n), pa.int64()),
                "response": pa.array(rng.integers(0, 2, n), pa.int64()),
                "weight": pa.array(np.ones(n), pa.float32()),
                "user_id": pa.array(np.arange(n) % 7, pa.int64()),
                "global_indices": pa.array([[0, 1]] * n, pa.list_(pa.int64())),
                "global_values": pa.array(rng.normal(size=(n, 2)).tolist(), pa.list_(pa.float32())),
            }
        )
        (root / split).mkdir(parents=True)
        pq.write_table(table, root / split / "part-0.parquet")
    recipe = Recipe(
        data=Data(train=str(root / "train"), validation=str(root / "validation")),
        coordinates=[
            FixedEffect(name="global", feature_bag="global"),
            RandomEffect(name="per-user", entity="user_id", feature_bag="global"),
        ],
        output=str(root / "unused"),
        resources=Resources(actors=1, buckets=1),
    )
    path = root / "recipe.json"
    path.write_text(recipe.model_dump_json())
    return path


@pytest.mark.slow
def test_a_fit_on_a_full_disk_is_one_line_and_its_plain_rerun_succeeds(tmp_path):
    """The checkpoint (~150 KB of scores) does not fit in a 32 KB disk; run.json does."""
    import sys

    recipe = small_data(tmp_path / "data")
    with tmpfs(tmp_path / "disk", "32k") as disk:
        out = disk / "out"
        fit = [sys.executable, "-m", "raymix", "fit", str(recipe), "--set", f"output={out}"]
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        done = subprocess.run([*fit, "--quiet"], capture_output=True, text=True, env=env)
        assert done.returncode == 2, done.stderr[-3000:]
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, done.stderr[-3000:]
        assert lines[0].startswith(f"raymix: error: {out}/checkpoint/"), lines[0]
        assert "No space left on device" in lines[0], lines[0]
        assert f"this run's partial outputs stay in '{out}'" in lines[0], lines[0]
        assert (out / RUN_FILE).is_file() and not (out / SUCCESS).exists()
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = subprocess.run([*fit, "--quiet"], capture_output=True, text=True, env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        assert (out / SUCCESS).is_file() and not (out / "checkpoint").exists()
        assert [p.name for p in disk.iterdir()] == ["out"]


# ------------------------------------------------ moved-aside directories (issue 16 item 5)


def previous_run(out: Path) -> None:
    out.mkdir(parents=True)
    files.write_text(out / RUN_FILE, "{}")
    files.write_text(out / SUCCESS, "")


def test_moved_aside_directories_are_named_on_failure_and_removed_on_success(tmp_path):
    out = tmp_path / "out"
    previous_run(out)
    old = [tmp_path / ".out.failed-11", tmp_path / ".out.previous-12"]
    for leftover in old:
        previous_run(leftover)
    (tmp_path / ".other.failed-13").mkdir()  # another output's: left alone
    failing = output_transaction(out, overwrite=True)
    with pytest.raises(StorageError) as caught, failing:
        raise StorageError("cannot write: No space left on device", "x")
    message = caught.value.message
    for leftover in old:
        assert f"'{leftover}'" in message, message
    assert "removed by the next successful run" in message
    failed = [p for p in tmp_path.glob(".out.failed-*") if p not in old]
    assert len(failed) == 1 and f"'{failed[0]}'" in message
    with output_transaction(out, overwrite=True) as where:
        files.write_text(where / RUN_FILE, "{}")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        ".other.failed-13"
    ]


def test_nothing_to_resume_names_the_interrupted_runs_checkpoint(tmp_path):
    from raymix.checkpoint import Checkpoint

    out = tmp_path / "out"
    previous_run(out)
    aside = tmp_path / ".out.failed-7"
    (aside / "checkpoint").mkdir(parents=True)
    files.write_json(aside / "checkpoint" / "state.json", {})
    with pytest.raises(RaymixError, match=f"checkpoint of an interrupted run is in '{aside}'"):
        Checkpoint(out).load()


def test_an_interrupt_says_where_the_runs_are(tmp_path, monkeypatch, capsys):
    import raymix.run
    from raymix.cli import main

    def interrupted(*args, **kwargs):
        exc = KeyboardInterrupt()
        exc.add_note("the previous run in 'o' is unchanged; this run's partial outputs are in 'f'")
        raise exc

    monkeypatch.setattr(raymix.run, "fit", interrupted)
    recipe = Path(__file__).parents[1] / "recipes" / "movielens_lr.py"
    code = main(["fit", str(recipe), "--set", f"output={tmp_path / 'o'}"])
    err = capsys.readouterr().err
    assert code == 130
    assert err == (
        "raymix: interrupted (the previous run in 'o' is unchanged; this run's partial "
        "outputs are in 'f')\n"
    )


def test_stale_staging_prefixes_are_named_and_removed_by_the_next_success(s3_server):  # noqa: F811
    from raymix import storage

    bucket = s3_server.bucket("safety-staging")
    root = f"{bucket}/runs/a"
    for where in (root, f"{bucket}/runs/.a.staging-99"):
        storage.write_text(f"{where}/{RUN_FILE}", "{}")
    storage.write_text(f"{root}/{SUCCESS}", "")
    storage.write_text(f"{bucket}/runs/.b.staging-98/{RUN_FILE}", "{}")  # another output's
    failing = output_transaction(root, overwrite=True)
    with pytest.raises(StorageError) as caught, failing as out:
        storage.write_text(out / RUN_FILE, "{}")
        raise StorageError("cannot write: gone", "x")
    assert f"'{bucket}/runs/.a.staging-99'" in caught.value.message
    assert "removed by the next successful run" in caught.value.message
    with output_transaction(root, overwrite=True) as out:
        storage.write_text(out / RUN_FILE, '{"new": 1}')
    assert storage.list_dir(f"{bucket}/runs") == [".b.staging-98", "a"]
    assert storage.read_text(f"{root}/{RUN_FILE}") == '{"new": 1}'
