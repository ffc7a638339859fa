"""An exclusive lock on a local output directory for the whole life of a run.

Two runs writing one output (two ``fit --overwrite`` at once, a fit and a score) would each
move the other's files aside and both exit 0 with one run's results gone. The lock is a
hidden sibling ``.NAME.lock`` (a sibling, because ``--overwrite`` moves the directory
itself aside) created with ``O_EXCL`` and holding the holder's host, pid and start time. A
lock whose holder is a dead process of this host is stale: it is taken over. A live holder,
or one on another host (which cannot be checked from here), makes the second run fail at
once, naming it. :func:`leftovers` lists the other hidden siblings earlier runs of an output
left (moved aside, see :mod:`raymix.outputs`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from pathlib import Path

from raymix.errors import RecipeError, StorageError
from raymix.files import DISK_ERRORS


def lock_path(output: Path) -> Path:
    return output.parent / f".{output.name}.lock"


@contextlib.contextmanager
def output_lock(output: Path):
    """Hold ``output``'s lock while the body runs; refuse at once if another run holds it."""
    path = lock_path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file where a parent directory should be
        blocker = next((p for p in output.parents if p.exists() and not p.is_dir()), None)
        reason = f"'{blocker}' is not a directory" if blocker else exc.strerror
        raise RecipeError(f"cannot create output '{output}': {reason}", field="output") from None
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    for _ in range(2):  # a second try after removing a stale lock
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None and not _is_stale(holder):
                raise RecipeError(
                    f"output '{output}' is in use by another raymix run (pid {holder['pid']} on "
                    f"{holder['host']}, lock {path}); wait for it, or delete the lock if that "
                    "run is gone",
                    field="output",
                ) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        except OSError as exc:  # a read-only, full or forbidden directory: nothing touched
            if exc.errno not in DISK_ERRORS:
                raise
            raise StorageError(
                f"cannot take the lock {path}: {exc.strerror} (nothing in '{output}' was changed)",
                str(output),
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f)
        break
    else:
        raise RecipeError(f"cannot take the lock {path} of output '{output}'", field="output")
    try:
        yield
    finally:
        if _holder(path) == mine:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _holder(path: Path) -> dict | None:
    """The lock's holder; None for a lock being written or unreadable (then it is stale)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and {"host", "pid"} <= holder.keys() else None


def _is_stale(holder: dict) -> bool:
    if holder["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def leftovers(out: Path) -> list[Path]:
    """The hidden siblings earlier runs of ``out`` moved aside and left (killed, or failed):
    ``.NAME.failed-PID`` (a failed run's partial outputs) and ``.NAME.previous-PID`` (the run
    it was replacing), oldest first. The output's lock makes them no running run's."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(failed|previous)-\d+(-\d+)?$")
    try:
        found = [p for p in out.parent.iterdir() if pattern.match(p.name) and p.is_dir()]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.stat().st_mtime_ns)
