"""A Ray head and more nodes on 127.0.0.1, each started by ``ray start``: the one loopback
cluster of the two-node tests (``tests/test_cluster_job*.py``), of ``bench/chaos.py`` and of
``bench/cluster_fit.py`` (four nodes).

Test and benchmark support, not part of raymix: it starts daemons and signals processes, which
the package never does on a user's machine (so it lives beside ``tests/s3server.py``, and the
benchmark imports it as ``tests.loopback`` with the repository on ``PYTHONPATH``).

Every ``ray start`` runs in a new session on its own ports and ``--temp-dir``, with token
authentication (``RAY_AUTH_MODE=token`` and one fresh ``RAY_AUTH_TOKEN``), so the session's
own Ray is untouched. Cleanup never uses ``ray stop`` (it kills every Ray on the machine):
exactly the processes of our sessions and their descendants are killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

RAY = [sys.executable, "-m", "ray.scripts.scripts"]

WAIT_FOR_NODES = """
import sys, time
from ray.util.state import list_nodes

dashboard, wanted, patience = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + patience
while True:
    try:
        alive = [n for n in list_nodes(address=dashboard) if n.state == "ALIVE"]
    except Exception:  # the dashboard may still be starting
        alive = []
    if len(alive) == wanted:
        break
    if time.monotonic() > deadline:
        sys.exit(f"{len(alive)} of {wanted} nodes alive after {patience} s")
    time.sleep(1)
"""


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


def descendants(roots=frozenset(), sessions=frozenset()) -> set[int]:
    """``roots``, every process in ``sessions``, and all their descendants (never this
    process, its parent, or pids 0 and 1)."""
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
    return ours - {os.getpid(), os.getppid(), 0, 1}


def signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def gone(pid: int) -> bool:
    """No such process any more, or a zombie (killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class LoopbackCluster:
    """A Ray head and ``nodes - 1`` more nodes on 127.0.0.1; the second node can be lost
    (every process of its session SIGKILLed) and started again."""

    def __init__(
        self, cpus_per_node: int = 2, object_store_bytes: int = 300_000_000, nodes: int = 2
    ):
        if nodes < 2:
            raise ValueError("a loopback cluster has a head and at least one more node")
        self.nodes = nodes
        # Short: Ray's Unix sockets live under it (at most 107 characters).
        self.temp_dir = tempfile.mkdtemp(prefix="raymix-cluster-", dir="/tmp")
        self.cpus, self.store = cpus_per_node, object_store_bytes
        self.gcs_port, self.dashboard_port, self.client_port = free_ports(3)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            RAY_USAGE_STATS_ENABLED="0",
            RAY_DATA_DISABLE_PROGRESS_BARS="1",
            TF_CPP_MIN_LOG_LEVEL="3",
        )
        self.sessions: list[int] = []  # pids of our `ray start`s: session ids of their daemons
        self.node_session = 0  # the second node's
        self.more_sessions: list[int] = []  # the third node's and on
        self.log: list[str] = []

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def ray(self, args: list[str], timeout: float = 180, env=None) -> subprocess.CompletedProcess:
        """``ray ARGS`` in a new session; the pid of a ``ray start`` is its daemons' session."""
        process = subprocess.Popen(
            RAY + args,
            env=env or self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        if args[0] == "start":
            self.sessions.append(process.pid)
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
            out += f"\n[timed out after {timeout} s]"
        self.log.append(f"$ ray {' '.join(args[:3])} ...\n{out[-3000:]}")
        result = subprocess.CompletedProcess(args, process.returncode, out, "")
        result.pid = process.pid
        return result

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
        head = self.ray(
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
        if head.returncode != 0:
            raise RuntimeError(f"ray start --head failed\n{self.transcript()}")
        self.start_second_node()
        for k in range(3, self.nodes + 1):
            self.more_sessions.append(self._join(k))

    def alive_nodes(self, wanted: int, patience: float) -> bool:
        """Exactly ``wanted`` nodes alive within ``patience`` seconds."""
        args = (self.dashboard, str(wanted), str(patience))
        return self.python(WAIT_FOR_NODES, *args, timeout=patience + 60).returncode == 0

    def start_second_node(self) -> None:
        others = len(self.more_sessions)
        if self.sessions and not self.alive_nodes(1 + others, 120):  # a lost node dies first
            raise RuntimeError(f"a node too many stays alive\n{self.transcript()}")
        self.node_session = self._join(2 + others)

    def _join(self, wanted: int) -> int:
        """Start one more node, until ``wanted`` nodes are alive; its session."""
        # On a very busy machine `ray start` gives up when its raylet takes more than 30 s to
        # register (a constant in Ray): then try again, on fresh ports.
        for _ in range(3):
            node = self.ray(["start", f"--address={self.gcs}", *self._node_args()])
            if self.alive_nodes(wanted, 90 if node.returncode == 0 else 20):
                return node.pid
            signal_all(descendants(sessions={node.pid}), signal.SIGKILL)
            self.alive_nodes(wanted - 1, 60)
        raise RuntimeError(f"node {wanted} never joined\n{self.transcript()}")

    def lose_second_node(self) -> set[int]:
        """SIGKILL every process of the second node; the pids signalled."""
        pids = descendants(sessions={self.node_session}) if self.node_session else set()
        signal_all(pids, signal.SIGKILL)
        self.node_session = 0
        return pids

    def submit(self, submission_id: str, env_vars: dict, entrypoint: list[str], timeout: float):
        """``ray job submit`` (waits for the end, tailing the driver's log)."""
        runtime_env = json.dumps({"env_vars": env_vars})
        return self.ray(
            [
                "job",
                "submit",
                f"--address={self.dashboard}",
                f"--submission-id={submission_id}",
                f"--runtime-env-json={runtime_env}",
                "--",
                *entrypoint,
            ],
            timeout=timeout,
        )

    def python(self, code: str, *args: str, env=None, timeout: float = 120):
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.log.append(f"$ python -c ...\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
        return result

    def transcript(self) -> str:
        return "\n".join(self.log)[-12000:]

    def stop(self) -> None:
        """Kill exactly our processes: those in our `ray start` sessions, and descendants."""
        assert os.getsid(0) not in self.sessions
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            pids = descendants(sessions=set(self.sessions))
            signal_all(pids, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not all(gone(p) for p in pids):
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
