"""Chaos: seeded ``raymix fit`` runs that each kill one thing at a random moment, compared
with an undisturbed run, model file by model file and metric by metric.

    python bench/chaos.py --runs 40 --seed 0 --out /tmp/chaos

Kinds of kill (run ``i`` gets kind ``KINDS[i % 6]``; its moment is drawn from ``seed``):

* ``actor``: SIGKILL a bucket actor's process (``ray::BucketActor*``);
* ``fe-worker``: SIGKILL the fixed effect's Ray Train worker (``workers=1``);
* ``reading``: SIGKILL the worker running a read task (``MapBatches(_read_files)`` or the
  routing task ``_route_task``, which reads a file for the bucket actors);
* ``node``: on a two-node loopback cluster (``ray start`` on 127.0.0.1, free ports, token
  auth), SIGKILL every process of the second node (its raylet, object store, workers);
* ``driver``: SIGKILL the driver and the local Ray it started (its process group), then
  ``raymix fit --resume OUT``;
* ``sigint``: SIGINT to the driver's process group (Ctrl-C), then ``raymix fit --resume OUT``.

The moment is uniform within the lifetime of the target in the undisturbed run (from the
first time such a process, or the first checkpoint for ``driver`` and ``sigint``, is seen to
the end of the run), counted from the target's first appearance in the disturbed run. A run
*finished* when its command (and the resume) exited 0 within the time limit; it is
*identical* when every output file equals the undisturbed run's: Avro files (models, score
files) record by record with every float by its exact ``repr``, ``summary.json`` and every
``evalSummary.json`` by their numbers (without timings, process ids and restart counts).
Only processes this script started (or their descendants) are ever signalled; the cluster
is torn down by session id, never with ``ray stop``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import fastavro

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "movielens_lr.py"
MOVIELENS_SOURCE = REPO.parent / "shared" / "data" / "ml-100k"
KINDS = ("actor", "fe-worker", "reading", "node", "driver", "sigint")
BASE = ["passes=2"]
OVERRIDES = {"fe-worker": [*BASE, "coordinates.global.workers=1"]}
TARGETS = {  # process titles (Ray sets them) of what a kind kills
    "actor": ("ray::BucketActor",),
    "fe-worker": ("ray::RayTrainWorker",),
    "reading": ("ray::MapBatches(_read_files)", "ray::_route_task"),
    "node": ("ray::BucketActor",),  # the window: while the actors live
}
RUN_TIMEOUT = 900.0
RAY = [sys.executable, "-m", "ray.scripts.scripts"]
#: JSON keys whose numbers differ between identical runs by nature
VOLATILE = ("seconds", "per_second", "timings", "pid", "restarts", "rebuilds")


# ----------------------------------------------------------------------------- processes


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), int(fields[3]))
    return table


def descendants(roots: set[int] = frozenset(), sessions: set[int] = frozenset()) -> set[int]:
    """``roots``, every process in ``sessions``, and all their descendants."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    ours = {p for p in roots if p in table} | {p for p, (_, s) in table.items() if s in sessions}
    pending = list(ours)
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in ours:
                ours.add(child)
                pending.append(child)
    return ours - {os.getpid(), 0, 1}


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# ----------------------------------------------------------------------------- the cluster

WAIT_FOR_NODES = """
import sys, time
from ray.util.state import list_nodes
dashboard, wanted, patience = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + patience
while True:
    try:
        alive = [n for n in list_nodes(address=dashboard) if n.state == "ALIVE"]
    except Exception:
        alive = []
    if len(alive) == wanted:
        break
    if time.monotonic() > deadline:
        sys.exit(f"{len(alive)} of {wanted} nodes alive after {patience} s")
    time.sleep(1)
"""


class LoopbackCluster:
    """A Ray head and a second node on 127.0.0.1 (``ray start``, free ports, token auth);
    the second node can be lost and started again."""

    def __init__(self, cpus: int = 2, store: int = 300_000_000):
        self.temp_dir = tempfile.mkdtemp(prefix="raymix-chaos-", dir="/tmp")
        self.cpus, self.store = cpus, store
        self.gcs_port, self.dashboard_port, self.client_port = free_ports(3)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            RAY_USAGE_STATS_ENABLED="0",
            RAY_DATA_DISABLE_PROGRESS_BARS="1",
            TF_CPP_MIN_LOG_LEVEL="3",
        )
        self.head_session = 0
        self.node_session = 0
        self.log: list[str] = []

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _ray(self, args: list[str], timeout: float = 180) -> tuple[int, int]:
        process = subprocess.Popen(
            RAY + args,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        self.log.append(f"$ ray {' '.join(args[:2])}\n{out[-2000:]}")
        return process.returncode, process.pid

    def _node_args(self) -> list[str]:
        agent, agent_grpc, metrics, runtime_env = free_ports(4)
        return [
            f"--num-cpus={self.cpus}",
            f"--object-store-memory={self.store}",
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}",
        ]

    def start(self) -> None:
        code, self.head_session = self._ray(
            [
                "start",
                "--head",
                f"--port={self.gcs_port}",
                f"--temp-dir={self.temp_dir}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={self.client_port}",
                *self._node_args(),
            ]
        )
        if code != 0:
            raise RuntimeError(f"ray start --head failed\n{self.transcript()}")
        self.start_second_node()

    def alive_nodes(self, wanted: int, patience: float) -> bool:
        done = subprocess.run(
            [sys.executable, "-c", WAIT_FOR_NODES, self.dashboard, str(wanted), str(patience)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=patience + 60,
        )
        self.log.append(f"$ wait for {wanted} nodes\n{done.stdout[-500:]}{done.stderr[-1500:]}")
        return done.returncode == 0

    def start_second_node(self) -> None:
        if self.head_session and not self.alive_nodes(1, 120):  # the lost node, marked dead
            raise RuntimeError(f"the lost node stays alive\n{self.transcript()}")
        for _ in range(3):  # a busy machine: a raylet may take > 30 s to register
            code, self.node_session = self._ray(
                ["start", f"--address={self.gcs}", *self._node_args()]
            )
            if self.alive_nodes(2, 90 if code == 0 else 20):
                return
            self.lose_second_node()
        raise RuntimeError(f"the second node never joined\n{self.transcript()}")

    def lose_second_node(self) -> set[int]:
        """SIGKILL every process of the second node; the pids killed."""
        pids = descendants(sessions={self.node_session}) if self.node_session else set()
        signal_all(pids, signal.SIGKILL)
        self.node_session = 0
        return pids

    def transcript(self) -> str:
        return "\n".join(self.log)[-8000:]

    def stop(self) -> None:
        """Kill exactly our processes (our sessions and their descendants), then the files."""
        sessions = {s for s in (self.head_session, self.node_session) if s}
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            pids = descendants(sessions=sessions)
            signal_all(pids, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- one run


@dataclass
class Outcome:
    run: int
    kind: str
    moment: float  # the drawn fraction of the target's lifetime
    killed: str = ""  # what was killed ("" if the run ended first)
    killed_at: float = 0.0  # seconds after the start of the command
    finished: bool = False
    identical: bool = False
    resumed: bool = False
    seconds: float = 0.0
    differ: list[str] = field(default_factory=list)
    note: str = ""


class Watch(threading.Thread):
    """Follows a run's processes: when each group of ``targets`` titles (and the first
    checkpoint) is first and last seen, and, if armed, kills ``armed`` ``delay`` seconds after
    its first appearance."""

    def __init__(self, roots, sessions, checkpoint: Path, armed=None, kill=None, delay=0.0):
        super().__init__(daemon=True)
        self.roots, self.sessions, self.checkpoint = roots, sessions, checkpoint
        self.armed, self.kill, self.delay = armed, kill, delay
        self.start_time = time.monotonic()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.killed = ""
        self.killed_at = 0.0
        self.stopping = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self.start_time

    def seen(self) -> dict[str, list[tuple[int, str]]]:
        found: dict[str, list[tuple[int, str]]] = {}
        for pid in descendants(self.roots, self.sessions):
            name = title(pid)
            for group, targets in TARGETS.items():
                if name.startswith(targets):
                    found.setdefault(group, []).append((pid, name))
        if self.checkpoint.is_file():
            found["checkpoint"] = [(0, "checkpoint")]
        return found

    def run(self) -> None:
        while not self.stopping.is_set():
            now = self.now()
            for group, found in self.seen().items():
                self.first.setdefault(group, now)
                self.last[group] = now
                if (
                    group == self.armed
                    and not self.killed
                    and now >= self.first[group] + self.delay
                ):
                    self.killed = self.kill(found) or ""
                    self.killed_at = now
            self.stopping.wait(0.1)


def raymix_env(data: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(extra or {})
    env.update(RAYMIX_MOVIELENS=str(data), PYTHONPATH=str(REPO))
    return env


def fit_command(out: Path, overrides: list[str], address: str | None) -> list[str]:
    sets = [a for o in [*overrides, f"output={out}"] for a in ("--set", o)]
    command = [sys.executable, "-m", "raymix.cli", "fit", str(RECIPE), *sets, "--quiet"]
    return command + (["--address", address] if address else [])


def wait(process: subprocess.Popen, timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def one_run(
    out: Path,
    kind: str | None,
    overrides: list[str],
    data: Path,
    delay: float = 0.0,
    cluster: LoopbackCluster | None = None,
) -> tuple[int | None, Watch, Path]:
    """``raymix fit`` into ``out``, disturbed by ``kind`` (None: undisturbed, timed)."""
    log = out.with_suffix(".log")
    env = raymix_env(data, cluster.env if cluster else None)
    address = cluster.gcs if cluster else None
    with log.open("w") as handle:
        process = subprocess.Popen(
            fit_command(out, overrides, address),
            env=env,
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sessions = {cluster.head_session, cluster.node_session} if cluster else set()
    roots = {process.pid}

    def kill_process(found):
        pid, name = found[0]
        os.kill(pid, signal.SIGKILL)
        return f"{name.split()[0]} (pid {pid})"

    def kill_node(found):
        return f"node 2 ({len(cluster.lose_second_node())} processes)"

    def kill_driver(found, sig=signal.SIGKILL):
        os.killpg(process.pid, sig)
        return "driver (SIGKILL, with its Ray)" if sig == signal.SIGKILL else "SIGINT"

    kill = {
        "driver": kill_driver,
        "sigint": lambda found: kill_driver(found, signal.SIGINT),
        "node": kill_node,
    }.get(kind or "", kill_process)
    armed = "checkpoint" if kind in ("driver", "sigint") else kind
    watch = Watch(roots, sessions, out / "checkpoint" / "state.json", armed, kill, delay)
    watch.start()
    code = wait(process, RUN_TIMEOUT)
    if code is None:
        kill_group(process)
    watch.stopping.set()
    watch.join()
    return code, watch, log


# ----------------------------------------------------------------------------- comparing


def numbers(value, path: str = "") -> dict[str, float]:
    """Every number in a JSON value by its path, without the volatile ones."""
    found: dict[str, float] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if not any(word in k for word in VOLATILE):
                found.update(numbers(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for k, v in enumerate(value):
            found.update(numbers(v, f"{path}[{k}]"))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        found[path] = repr(value)
    return found


def exact(value):
    if isinstance(value, dict):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [exact(v) for v in value]
    return repr(value) if isinstance(value, float) else value


def digests(out: Path) -> dict[str, str]:
    """Relative path -> digest of every model, score file and metric file of a run."""
    found = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file() or "checkpoint" in path.relative_to(out).parts:
            continue
        digest = hashlib.sha256()
        if path.suffix == ".avro":
            with path.open("rb") as handle:
                for record in fastavro.reader(handle):
                    digest.update(json.dumps(exact(record), sort_keys=True).encode())
        elif path.name in ("summary.json", "evalSummary.json"):
            content = numbers(json.loads(path.read_text()))
            digest.update(json.dumps(content, sort_keys=True).encode())
        else:
            continue  # run.json, report.html, _SUCCESS
        found[str(path.relative_to(out))] = digest.hexdigest()
    return found


# ----------------------------------------------------------------------------- the benchmark


def make_data(work: Path) -> Path:
    dest = work / "movielens-parquet"
    if not (dest / "_done").exists():
        subprocess.run(
            [sys.executable, "-m", "raymix.cli", "data", "movielens", "--source",
             str(MOVIELENS_SOURCE), "--dest", str(dest), "--format", "parquet", "--overwrite"],
            check=True, cwd=REPO, env=raymix_env(dest), stdout=subprocess.DEVNULL,
        )  # fmt: skip
        (dest / "_done").write_text("")
    return dest


@dataclass
class Baseline:
    digests: dict[str, str]
    windows: dict[str, tuple[float, float]]  # target group -> (first, last) seen, seconds
    seconds: float


def baseline(work: Path, name: str, overrides, data, cluster=None) -> Baseline:
    out = work / "baseline" / name
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    code, watch, log = one_run(out, None, overrides, data, cluster=cluster)
    seconds = time.monotonic() - started
    if code != 0:
        raise RuntimeError(f"the undisturbed run '{name}' failed ({code}): {log}")
    windows = {g: (watch.first[g], watch.last[g]) for g in watch.first}
    shown = ", ".join(f"{g} {a:.1f}-{b:.1f} s" for g, (a, b) in windows.items())
    print(f"baseline {name}: {seconds:.1f} s; seen: {shown}", flush=True)
    return Baseline(digests(out), windows, seconds)


def disturbed(work, n, kind, moment, data, base: Baseline, window, cluster=None) -> Outcome:
    outcome = Outcome(n, kind, round(moment, 4))
    out = work / "runs" / f"{n:03d}-{kind}"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    overrides = OVERRIDES.get(kind, BASE)
    started = time.monotonic()
    if cluster is not None and not cluster.node_session:  # lost in the run before
        cluster.start_second_node()
    delay = moment * 0.8 * max(window[1] - window[0], 0.5)  # 0.8: a disturbed run may be faster
    code, watch, log = one_run(out, kind, overrides, data, delay, cluster)
    outcome.killed, outcome.killed_at = watch.killed, round(watch.killed_at, 1)
    if kind in ("driver", "sigint") and code != 0:
        if code is None:
            outcome.note = "the interrupted driver did not end"
        outcome.resumed = True
        with log.open("a") as handle:
            resumed = subprocess.Popen(
                [sys.executable, "-m", "raymix.cli", "fit", "--resume", str(out), "--quiet"],
                env=raymix_env(data), cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        code = wait(resumed, RUN_TIMEOUT)
        if code is None:
            kill_group(resumed)
    outcome.seconds = round(time.monotonic() - started, 1)
    outcome.finished = code == 0
    if not outcome.finished:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        outcome.note = outcome.note or f"exit {code}: {' '.join(tail)[:300]}"
        return outcome
    mine = digests(out)
    outcome.differ = sorted(
        k for k in base.digests.keys() | mine.keys() if base.digests.get(k) != mine.get(k)
    )
    outcome.identical = not outcome.differ
    if outcome.identical:
        shutil.rmtree(out, ignore_errors=True)  # keep what differs, for a look
        log.unlink(missing_ok=True)
    return outcome


def table(outcomes: list[Outcome]) -> str:
    lines = [f"{'kind':10} {'runs':>4} {'killed':>6} {'finished':>8} {'identical':>9}"]
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        if mine:
            lines.append(
                f"{kind:10} {len(mine):4d} {sum(bool(o.killed) for o in mine):6d} "
                f"{sum(o.finished for o in mine):8d} {sum(o.identical for o in mine):9d}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "raymix-chaos")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    plan = [(n, KINDS[n % len(KINDS)], rng.random()) for n in range(args.runs)]
    plan = [p for p in plan if p[1] in args.kinds]
    data = make_data(args.out)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    results = args.out / "results.json"

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        print(
            f"run {outcome.run:3d} {outcome.kind:9} moment {outcome.moment:.2f}: killed "
            f"{outcome.killed or '-'} at {outcome.killed_at} s; finished={outcome.finished} "
            f"identical={outcome.identical} ({outcome.seconds} s) {outcome.note} "
            f"{' '.join(outcome.differ[:4])}",
            flush=True,
        )
        results.write_text(
            json.dumps({"seed": args.seed, "runs": [asdict(o) for o in outcomes]}, indent=1) + "\n"
        )

    local = [p for p in plan if p[1] != "node"]
    bases: dict[str, Baseline] = {}
    for n, kind, moment in local:
        name = "fe-worker" if kind == "fe-worker" else "lr"
        if name not in bases:
            bases[name] = baseline(args.out, name, OVERRIDES.get(kind, BASE), data)
        base = bases[name]
        window = base.windows["checkpoint" if kind in ("driver", "sigint") else kind]
        record(disturbed(args.out, n, kind, moment, data, base, window))
    nodes = [p for p in plan if p[1] == "node"]
    if nodes:
        cluster = LoopbackCluster()
        try:
            cluster.start()
            on_cluster = baseline(args.out, "cluster", BASE, data, cluster)
            reference = bases.get("lr", on_cluster)
            if reference.digests != on_cluster.digests:
                print("note: the undisturbed run on the cluster differs from the local one")
            for n, kind, moment in nodes:
                window = on_cluster.windows["node"]
                record(disturbed(args.out, n, kind, moment, data, reference, window, cluster))
        finally:
            cluster.stop()
    print(table(outcomes))
    finished = sum(o.finished for o in outcomes)
    identical = sum(o.identical for o in outcomes)
    killed = sum(bool(o.killed) for o in outcomes)
    print(
        f"{len(outcomes)} runs (seed {args.seed}), {killed} kills landed: {finished} finished "
        f"({100 * finished / max(len(outcomes), 1):.0f}%), {identical} bit-identical "
        f"({100 * identical / max(len(outcomes), 1):.0f}%) in {time.monotonic() - started:.0f} s; "
        f"results in {results}"
    )
    return 0 if finished == identical == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
