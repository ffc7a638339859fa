"""The movieLens job on a two-node loopback Ray cluster with data and outputs only in S3.

As ``tests/test_cluster_job.py`` (whose ``LoopbackCluster`` it uses: ``ray start`` on this
machine, its own temp dir and ports), but nothing is shared through a filesystem: the data
is in a bucket of the test's S3 server on loopback, the job writes its output there (the
bucket actors on both nodes write their own model files), and the job's driver runs in the
job's own working directory. The models, metrics and scores equal a local fit's.
"""

from __future__ import annotations

import io
import json
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import fastavro
import pytest

from raymix.recipe.load import load_recipe
from raymix.run import fit
from tests.loopback import LoopbackCluster
from tests.s3server import s3_server  # noqa: F401 - a fixture
from tests.test_cluster_job import (
    COORDINATES,
    JOB_TIMEOUT,
    RECIPE,
    REPO,
    STATE,
    deterministic,
    models_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def records(s3_server, uri: str) -> list[dict]:  # noqa: F811
    keys = [k for k in s3_server.keys(uri) if k.endswith(".avro")]
    return [r for k in keys for r in fastavro.reader(io.BytesIO(s3_server.get(f"{uri}/{k}")))]


def test_movielens_on_two_nodes_with_everything_in_s3_equals_the_local_fit(
    s3_server,  # noqa: F811
    movielens,
    ray_session,
    tmp_path,
    monkeypatch,
):
    started = time.perf_counter()
    bucket = s3_server.bucket("rm-cluster")
    data = s3_server.upload_tree(movielens, f"{bucket}/movielens")
    job_out, local_out = f"{bucket}/runs/job", tmp_path / "local"
    submission_id = f"raymix-s3-{secrets.token_hex(4)}"
    cluster = LoopbackCluster()  # inherits the AWS_* variables of the S3 fixture
    pool = ThreadPoolExecutor(1)

    def on_the_cluster():
        cluster.start()
        return cluster.submit(
            submission_id,
            {"RAYMIX_MOVIELENS": data, "PYTHONPATH": str(REPO)},
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
    finally:
        cluster.stop()
        pool.shutdown(wait=True)

    assert placement["status"] == "SUCCEEDED", cluster.transcript()
    assert len(set(placement["actor_nodes"])) == 2, placement  # models written from both nodes
    keys = s3_server.keys(job_out)
    local = sorted(str(p.relative_to(local_out)) for p in local_out.rglob("*") if p.is_file())
    assert keys == local and "_SUCCESS" in keys
    job_summary = json.loads(s3_server.get(f"{job_out}/summary.json"))
    local_summary = json.loads((local_out / "summary.json").read_text())
    assert job_summary["final"] == local_summary["final"]
    assert deterministic(job_summary) == deterministic(local_summary)
    for name in COORDINATES:
        remote = sorted(records(s3_server, f"{job_out}/{name}/models"), key=lambda r: r["modelId"])
        assert remote == models_of(local_out, name), name
        metric = f"{name}/metric/evalSummary.json"
        assert s3_server.get(f"{job_out}/{metric}") == (local_out / metric).read_bytes()
        assert records(s3_server, f"{job_out}/{name}/validation_scores") == list(
            fastavro.reader((local_out / name / "validation_scores" / "part-00000.avro").open("rb"))
        )
    print(f"two-node S3 job and local fit in {time.perf_counter() - started:.0f} s")
