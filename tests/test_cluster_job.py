"""The movieLens recipe as a Ray job on a real two-node Ray cluster gives the local run's models.

A head and a second node are started with ``ray start`` as separate processes on this machine
(their own ``--temp-dir`` and ports, so the session's own Ray is untouched), the recipe is
submitted with ``ray job submit ... -- python -m raymix.cli fit RECIPE --address auto``, and
its outputs are compared with an in-process fit on the session Ray, run meanwhile:

* the random-effect models are identical, bit for bit, although their bucket actors run on
  both nodes in the job (a ``SPREAD`` placement group: Ray's plain ``SPREAD`` strategy left
  both zero-CPU actors on one node about half the time) and on one node locally: buckets,
  not nodes, decide which actor fits which entity;
* the fixed effect is identical too (one in-process worker: the job's driver);
* so are the metrics of every step and the validation scores.

Token authentication (on by default in Ray 2.60) stays on: head, second node and client all
get ``RAY_AUTH_MODE=token`` and one fresh ``RAY_AUTH_TOKEN``, which the job's driver and
workers inherit from the nodes' environment. A client without it is refused.

Cleanup never uses ``ray stop`` (it kills every Ray on the machine, including the session's):
each ``ray start`` runs in a new session, and exactly the processes of those sessions and
their descendants (the job's driver starts its own session under the job supervisor) are
killed.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from raymix.data.avro.models import read_models
from raymix.data.avro.scores import read_scores_avro
from raymix.recipe.load import load_recipe
from raymix.run import fit

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "movielens_lr.py"
COORDINATES = ("global", "per-user", "per-movie")
RAY = [sys.executable, "-m", "ray.scripts.scripts"]
JOB_TIMEOUT = 420

pytestmark = [pytest.mark.slow, pytest.mark.ray]


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


class LoopbackCluster:
    """A Ray head and one more node on 127.0.0.1, each started by ``ray start``."""

    def __init__(self, cpus_per_node: int = 2, object_store_bytes: int = 300_000_000):
        # Short: Ray's Unix sockets live under it (at most 107 characters).
        self.temp_dir = tempfile.mkdtemp(prefix="raymix-cluster-", dir="/tmp")
        self.cpus, self.store = cpus_per_node, object_store_bytes
        (self.gcs_port, self.dashboard_port, self.client_port, *self._node_ports) = free_ports(11)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            RAY_USAGE_STATS_ENABLED="0",
            RAY_DATA_DISABLE_PROGRESS_BARS="1",
            TF_CPP_MIN_LOG_LEVEL="3",
        )
        self.sessions: list[int] = []  # pids of our `ray start`s: session ids of their daemons
        self.log: list[str] = []

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _ray(self, args: list[str], timeout: float, env=None) -> subprocess.CompletedProcess:
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
        return subprocess.CompletedProcess(args, process.returncode, out, "")

    def _node_args(self, ports: list[int]) -> list[str]:
        agent, agent_grpc, metrics, runtime_env = ports
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
        head = self._ray(
            [
                "start",
                "--head",
                f"--port={self.gcs_port}",
                f"--temp-dir={self.temp_dir}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={self.client_port}",
                *self._node_args(self._node_ports[:4]),
            ],
            timeout=180,
        )
        assert head.returncode == 0, self.transcript()
        # On a very busy machine `ray start` gives up when its raylet takes more than 30 s to
        # register (a constant in Ray): then try again, on fresh ports.
        for attempt in range(3):
            ports = self._node_ports[4:8] if attempt == 0 else free_ports(4)
            node = self._ray(["start", f"--address={self.gcs}", *self._node_args(ports)], 180)
            patience = "90" if node.returncode == 0 else "20"
            waited = self.python(WAIT_FOR_NODES, self.dashboard, "2", patience, timeout=150)
            if waited.returncode == 0:
                return
        raise AssertionError(f"the second node never joined\n{self.transcript()}")

    def submit(self, submission_id: str, env_vars: dict, entrypoint: list[str]):
        """``ray job submit`` (waits for the end, tailing the driver's log)."""
        runtime_env = json.dumps({"env_vars": env_vars})
        return self._ray(
            [
                "job",
                "submit",
                f"--address={self.dashboard}",
                f"--submission-id={submission_id}",
                f"--runtime-env-json={runtime_env}",
                "--",
                *entrypoint,
            ],
            timeout=JOB_TIMEOUT,
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
        own = {os.getpid(), os.getppid(), 0, 1}
        assert os.getsid(0) not in self.sessions
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            table = process_table()
            children: dict[int, list[int]] = {}
            for pid, (parent, _) in table.items():
                children.setdefault(parent, []).append(pid)
            ours = {pid for pid, (_, sid) in table.items() if sid in self.sessions}
            pending = list(ours)
            while pending:
                for child in children.get(pending.pop(), []):
                    if child not in ours:
                        ours.add(child)
                        pending.append(child)
            ours -= own
            for pid in ours:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in ours):
                time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


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
    if len(alive) >= wanted:
        break
    if time.monotonic() > deadline:
        sys.exit(f"{len(alive)} of {wanted} nodes alive after {patience} s")
    time.sleep(2)
"""

STATE = """
import json, sys
from ray.job_submission import JobSubmissionClient
from ray.util.state import list_actors, list_nodes
from raymix.engine.cluster import ray_session
from raymix.recipe.spec import Resources

dashboard, submission_id, gcs = sys.argv[1:4]
info = JobSubmissionClient(dashboard).get_job_info(submission_id)
actors = list_actors(
    address=dashboard,
    filters=[("class_name", "=", "BucketActor"), ("job_id", "=", info.job_id)],
    detail=True,
    raise_on_missing_output=False,
)
nodes = list_nodes(address=dashboard, raise_on_missing_output=False)
with ray_session(Resources(), gcs) as ray:  # an explicit host:port joins too
    joined = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
print(json.dumps({
    "status": info.status.value,
    "driver_node": info.driver_node_id,
    "actor_nodes": [a.node_id for a in actors],
    "nodes": sorted(n.node_id for n in nodes if n.state == "ALIVE"),
    "head": [n.node_id for n in nodes if n.is_head_node],
    "joined": joined,
}))
"""


def models_of(out: Path, name: str) -> list[dict]:
    return sorted(read_models(out / name / "models"), key=lambda r: r["modelId"])


def deterministic(summary: dict) -> list[dict]:
    """Each step without its timings."""
    return [
        {k: v for k, v in step.items() if k not in ("seconds", "solver_seconds")}
        for step in summary["steps"]
    ]


def test_movielens_as_a_ray_job_on_two_nodes_equals_the_local_fit(
    movielens, ray_session, tmp_path, monkeypatch
):
    started = time.perf_counter()
    job_out, local_out = tmp_path / "job", tmp_path / "local"
    submission_id = f"raymix-test-{secrets.token_hex(4)}"
    cluster = LoopbackCluster()
    pool = ThreadPoolExecutor(1)

    def on_the_cluster():
        cluster.start()
        return cluster.submit(
            submission_id,
            # The driver runs with the cluster's Python, in the job's own working directory:
            # every path is absolute, and RAYMIX_MOVIELENS travels in the runtime env.
            {"RAYMIX_MOVIELENS": str(movielens), "PYTHONPATH": str(REPO)},
            [sys.executable, "-m", "raymix.cli", "fit", str(RECIPE)]
            + ["--set", f"output={job_out}", "--address", "auto"],
        )

    try:
        job = pool.submit(on_the_cluster)
        monkeypatch.setenv("RAYMIX_MOVIELENS", str(movielens))  # meanwhile, the local fit
        fit(load_recipe(RECIPE, [f"output={local_out}"]))
        submitted = job.result(timeout=JOB_TIMEOUT + 400)
        assert submitted.returncode == 0, cluster.transcript()
        state = cluster.python(STATE, cluster.dashboard, submission_id, cluster.gcs)
        assert state.returncode == 0, cluster.transcript()
        placement = json.loads(state.stdout.strip().splitlines()[-1])
        # A client without the cluster's token is refused.
        stranger = {**cluster.env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        refused = cluster._ray(["job", "list", f"--address={cluster.dashboard}"], 60, stranger)
    finally:
        cluster.stop()
        pool.shutdown(wait=True)

    assert placement["status"] == "SUCCEEDED", cluster.transcript()
    job_summary = json.loads((job_out / "summary.json").read_text())
    local_summary = json.loads((local_out / "summary.json").read_text())
    assert job_summary["final"] == local_summary["final"]
    assert deterministic(job_summary) == deterministic(local_summary)
    for name in COORDINATES:
        assert models_of(job_out, name) == models_of(local_out, name), name
        assert sorted(p.name for p in (job_out / name / "models").iterdir()) == sorted(
            p.name for p in (local_out / name / "models").iterdir()
        )
        metric = Path(name, "metric", "evalSummary.json")
        assert (job_out / metric).read_text() == (local_out / metric).read_text()
        job_uid, job_scores = read_scores_avro(job_out / name / "validation_scores")
        uid, scores = read_scores_avro(local_out / name / "validation_scores")
        assert (job_uid == uid).all() and (job_scores == scores).all(), name
    assert refused.returncode != 0 and "token" in refused.stdout.lower(), refused.stdout
    # Two (or, after a retried start, three) live nodes; the job's driver on the head, its two
    # bucket actors on two different nodes.
    assert len(placement["nodes"]) >= 2 and placement["joined"] == placement["nodes"]
    assert placement["driver_node"] == placement["head"][0]
    assert len(placement["actor_nodes"]) == 2
    assert len(set(placement["actor_nodes"])) == 2, placement
    assert set(placement["actor_nodes"]) <= set(placement["nodes"]), placement
    print(f"two-node job and local fit in {time.perf_counter() - started:.0f} s")
