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

The cluster is ``tests.loopback.LoopbackCluster`` (shared with ``bench/chaos.py``); its
cleanup kills exactly the processes of its ``ray start`` sessions, never with ``ray stop``.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from raymix.data.avro.models import read_models
from raymix.data.avro.scores import read_scores_avro
from raymix.recipe.load import load_recipe
from raymix.run import fit
from tests.loopback import LoopbackCluster

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "movielens_lr.py"
COORDINATES = ("global", "per-user", "per-movie")
JOB_TIMEOUT = 420

pytestmark = [pytest.mark.slow, pytest.mark.ray]


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
            timeout=JOB_TIMEOUT,
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
        refused = cluster.ray(["job", "list", f"--address={cluster.dashboard}"], 60, stranger)
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
