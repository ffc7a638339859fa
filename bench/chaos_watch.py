"""Chaos: one ``raymix fit`` followed by its progress, and killed at a chosen moment.

The run's progress is its checkpoint pointer (``OUT/checkpoint/state.json``, switched
atomically after every coordinate update, see ``raymix/checkpoint.py``): the last step done,
``(pass, coordinate index)``, or ``START`` before the first. A :class:`Watch` polls it and the
run's processes (by the titles Ray gives them) every 0.1 s and records, per progress point,
when it was reached and which targets were alive during it. Armed with a :class:`Kill`, it
kills the first target seen once the run has reached the kill's point and a further
``delay`` seconds have passed, and says whether the kill *landed*: the run was still going
and the target process was alive, was signalled and is gone (for the driver: it was alive
and the interrupted command did not exit 0).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.loopback import LoopbackCluster, descendants, gone

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "movielens_lr.py"
RUN_TIMEOUT = 600.0
TARGETS = {  # process titles (Ray sets them) of what a kind kills
    "actor": ("ray::BucketActor",),
    "fe-worker": ("ray::RayTrainWorker",),
    "reading": ("ray::MapBatches(_read_files)", "ray::_route_task"),
    "node": ("ray::BucketActor",),  # the window: while the actors live
}
START = (-1, -1)  # the progress point before the first step


@dataclass(frozen=True)
class Kill:
    kind: str
    point: tuple[int, int]  # kill during the step after this one (START: before the first)
    delay: float  # seconds after the point was reached


def progress(state_file: Path) -> tuple[tuple[int, int], str]:
    """The last step done and its name (``pass P after COORDINATE``), from the pointer."""
    try:
        state = json.loads(state_file.read_text())
        done = tuple(state["completed"])
        return done, f"pass {done[0]} after {state['steps'][-1]['coordinate']}"
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return START, "start"


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Watch(threading.Thread):
    def __init__(self, process, sessions, state_file: Path, kill: Kill | None, cluster=None):
        super().__init__(daemon=True)
        self.process, self.sessions, self.state_file = process, sessions, state_file
        self.plan, self.cluster = kill, cluster
        self.start_time = time.monotonic()
        self.reached: dict[tuple[int, int], float] = {}  # point -> seconds when first reached
        self.alive: dict[str, set[tuple[int, int]]] = {}  # target -> points it was seen in
        self.killed = ""  # what was signalled
        self.at = ""  # when: the progress point's name, and seconds
        self.landed = False
        self.stopping = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self.start_time

    def seen(self) -> dict[str, list[tuple[int, str]]]:
        found: dict[str, list[tuple[int, str]]] = {}
        for pid in descendants({self.process.pid}, self.sessions):
            name = title(pid)
            for group, targets in TARGETS.items():
                if name.startswith(targets):
                    found.setdefault(group, []).append((pid, name))
        if self.process.poll() is None:
            found["driver"] = found["sigint"] = [(self.process.pid, "driver")]
        return found

    def run(self) -> None:
        while not self.stopping.is_set():
            point, name = progress(self.state_file)
            now = self.now()
            self.reached.setdefault(point, now)
            found = self.seen()
            for group in found:
                self.alive.setdefault(group, set()).add(point)
            plan = self.plan
            if (
                plan is not None
                and not self.killed
                and plan.kind in found
                and point >= plan.point
                and now >= self.reached.get(plan.point, self.reached[point]) + plan.delay
            ):
                self.kill(found[plan.kind])
                self.at = f"{name} +{now - self.reached[point]:.1f} s (at {now:.1f} s)"
            self.stopping.wait(0.1)

    def kill(self, found: list[tuple[int, str]]) -> None:
        running = self.process.poll() is None
        kind = self.plan.kind
        if kind in ("driver", "sigint"):
            sig = signal.SIGKILL if kind == "driver" else signal.SIGINT
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            self.killed = "driver (SIGKILL, with its Ray)" if kind == "driver" else "SIGINT"
            self.landed = running  # confirmed by the command's exit code afterwards
            return
        if kind == "node":
            pids = self.cluster.lose_second_node()
            self.killed = f"node 2 ({len(pids)} processes)"
        else:
            pid, name = found[0]
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                self.killed = f"{name.split()[0]} (pid {pid}, already gone)"
                return
            pids = {pid}
            self.killed = f"{name.split()[0]} (pid {pid})"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(gone(p) for p in pids):
            time.sleep(0.05)
        self.landed = running and bool(pids) and all(gone(p) for p in pids)


def raymix_env(data: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(extra or {})
    env.update(RAYMIX_MOVIELENS=str(data), PYTHONPATH=str(REPO))
    return env


def fit_command(out: Path, overrides: list[str], address: str | None) -> list[str]:
    sets = [a for o in [*overrides, f"output={out}"] for a in ("--set", o)]
    command = [sys.executable, "-m", "raymix.cli", "fit", str(RECIPE), *sets, "--quiet"]
    return command + (["--address", address] if address else [])


def run_command(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("a") as handle:
        return subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def finish(process: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> int | None:
    """The exit code, or None after killing the command's process group at the timeout."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def one_run(
    out: Path,
    overrides: list[str],
    data: Path,
    kill: Kill | None = None,
    cluster: LoopbackCluster | None = None,
) -> tuple[int | None, Watch, Path]:
    """``raymix fit`` into ``out``, watched, disturbed by ``kill`` (None: undisturbed)."""
    log = out.with_suffix(".log")
    log.write_text("")
    env = raymix_env(data, cluster.env if cluster else None)
    process = run_command(fit_command(out, overrides, cluster and cluster.gcs), env, log)
    sessions = set(cluster.sessions) if cluster else set()
    watch = Watch(process, sessions, out / "checkpoint" / "state.json", kill, cluster)
    watch.start()
    code = finish(process)
    watch.stopping.set()
    watch.join()
    if kill and kill.kind in ("driver", "sigint"):
        watch.landed = watch.landed and code != 0
    return code, watch, log
