"""movieLens with data and outputs only in an S3 bucket (a real S3 server on loopback).

The fit in the bucket gives the local fit's models and metrics exactly; ``raymix score``
reads a fit from the bucket; a killed driver resumes from the bucket's checkpoint to the
same models; bad URIs fail in one line naming them; a run that loses the object store
midway leaves the previous run in the bucket complete and readable.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import pytest

from raymix import storage
from raymix.cli import main
from raymix.recipe.load import load_recipe
from raymix.run import fit
from raymix.scoring import score_command
from tests.s3server import SECRET, free_port, s3_server  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "movielens_lr.py"
pytestmark = [pytest.mark.slow, pytest.mark.ray]
BUCKET = "s3://rm-movielens"


def recipe_for(data: str, output: str, *overrides: str):
    saved = os.environ.get("RAYMIX_MOVIELENS")
    os.environ["RAYMIX_MOVIELENS"] = data
    try:
        return load_recipe(RECIPE, [f"output={output}", *overrides])
    finally:
        if saved is None:
            os.environ.pop("RAYMIX_MOVIELENS")
        else:
            os.environ["RAYMIX_MOVIELENS"] = saved


def decoded(raw: bytes):
    """An Avro file's records (the bytes differ by their random sync markers)."""
    return list(fastavro.reader(io.BytesIO(raw)))


def output_contents(read, names: list[str]) -> dict:
    """What must be equal between two outputs: Avro records and metric files, by name."""
    out = {}
    for name in names:
        if name.endswith(".avro"):
            out[name] = decoded(read(name))
        elif name.endswith("evalSummary.json"):
            out[name] = read(name)
    return out


def local_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def bucket_data(s3_server, movielens):  # noqa: F811
    s3_server.bucket(BUCKET.removeprefix("s3://"))
    return s3_server.upload_tree(movielens, f"{BUCKET}/data")


@pytest.fixture(scope="module")
def local_fit(movielens, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "fit"
    return fit(recipe_for(str(movielens), str(out)))


@pytest.fixture(scope="module")
def bucket_fit(s3_server, bucket_data, ray_session):  # noqa: F811
    return fit(recipe_for(bucket_data, f"{BUCKET}/runs/a"))


def test_a_fit_in_the_bucket_equals_the_local_fit(s3_server, bucket_fit, local_fit, tmp_path):  # noqa: F811
    root = Path(local_fit.output)
    names = local_files(root)
    assert "_SUCCESS" in names and not any(n.startswith("checkpoint") for n in names)
    keys = s3_server.keys(f"{BUCKET}/runs/a")
    assert keys == names  # the same files, _SUCCESS included; the checkpoint discarded
    remote = output_contents(lambda n: s3_server.get(f"{BUCKET}/runs/a/{n}"), names)
    here = output_contents(lambda n: (root / n).read_bytes(), names)
    assert remote.keys() == here.keys() and len(remote) >= 9
    for name in here:
        assert remote[name] == here[name], name
    assert bucket_fit.final == local_fit.final
    assert [s["metrics"] for s in bucket_fit.steps] == [s["metrics"] for s in local_fit.steps]
    summary = json.loads(s3_server.get(f"{BUCKET}/runs/a/summary.json"))
    assert summary["files"]["per-user"]["models"][0].startswith(f"{BUCKET}/runs/a/per-user/")
    assert str(bucket_fit.output) == f"{BUCKET}/runs/a"
    for name in keys:  # no credential in any output
        assert SECRET.encode() not in s3_server.get(f"{BUCKET}/runs/a/{name}")
    assert not Path("s3:").exists()  # nothing was written locally under a folded URI


def test_score_from_the_bucket(
    s3_server,  # noqa: F811
    bucket_data,
    bucket_fit,
    local_fit,
    tmp_path,
    capsys,
    monkeypatch,
):
    code = main(["score", f"{BUCKET}/runs/a", "--out", f"{BUCKET}/scores/a"])
    assert code == 0, capsys.readouterr().err
    assert s3_server.keys(f"{BUCKET}/scores/a") == [
        "_SUCCESS",
        "score.json",
        "scores/part-00000.avro",
    ]
    local = score_command(local_fit.output, [], tmp_path / "scores")
    remote = decoded(s3_server.get(f"{BUCKET}/scores/a/scores/part-00000.avro"))
    assert remote == decoded(local.read_bytes()) and len(remote) > 10_000
    # a fit output without _SUCCESS is refused, naming it
    storage.copy_tree(f"{BUCKET}/runs/a", f"{BUCKET}/runs/unfinished")
    storage.delete_file(f"{BUCKET}/runs/unfinished/_SUCCESS")
    capsys.readouterr()
    code = main(["score", f"{BUCKET}/runs/unfinished", "--out", f"{BUCKET}/scores/b"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"'{BUCKET}/runs/unfinished' is an incomplete raymix fit output" in err
    assert "no _SUCCESS" in err and s3_server.keys(f"{BUCKET}/scores/b") == []
    # so is a warm start from it
    monkeypatch.setenv("RAYMIX_MOVIELENS", bucket_data)
    capsys.readouterr()
    code = main(
        [
            "fit",
            str(RECIPE),
            "--set",
            f"output={BUCKET}/runs/warm",
            "--set",
            f"coordinates.per-user.warm_start={BUCKET}/runs/unfinished/per-user/models",
            "--dry-run",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is in an incomplete raymix output" in err, err


@pytest.mark.parametrize(
    ("data", "output", "expected"),
    [
        (
            "s3://no-such-bucket-x/data",
            f"{BUCKET}/runs/never",
            "raymix: error: s3://no-such-bucket-x/data/global/trainingData: no such bucket",
        ),
        (
            f"{BUCKET}/nothing-here",
            f"{BUCKET}/runs/never",
            f"raymix: error: {BUCKET}/nothing-here/global/trainingData: data.train: no such file",
        ),
        (
            "bucket-data",
            "ftp://host/out",
            "raymix: error: output: 'ftp://host/out' has an unknown scheme",
        ),
        (
            "bucket-data",
            "s3://no-such-bucket-x/out",
            "raymix: error: s3://no-such-bucket-x/out: no such bucket",
        ),
        (
            "ftp://host/data",
            f"{BUCKET}/runs/never",
            "raymix: error: ftp://host/data/global/trainingData: unknown scheme 'ftp://'",
        ),
    ],
)
def test_bad_uris_fail_in_one_line_naming_them(
    s3_server,  # noqa: F811
    bucket_data,
    ray_session,
    capsys,
    monkeypatch,
    data,
    output,
    expected,
):
    monkeypatch.setenv("RAYMIX_MOVIELENS", bucket_data if data == "bucket-data" else data)
    code = main(["fit", str(RECIPE), "--set", f"output={output}", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(expected), err
    assert SECRET not in err
    assert s3_server.keys(f"{BUCKET}/runs/never") == []


def models_in_bucket(s3_server, root: str, name: str):  # noqa: F811
    keys = [k for k in s3_server.keys(f"{root}/{name}/models") if k.endswith(".avro")]
    records = [r for k in keys for r in decoded(s3_server.get(f"{root}/{name}/models/{k}"))]
    return sorted((r["modelId"], [(m["name"], m["value"]) for m in r["means"]]) for r in records)


def models_local(root: Path, name: str):
    from raymix.data.avro.models import read_models

    return sorted(
        (r["modelId"], [(m["name"], m["value"]) for m in r["means"]])
        for r in read_models(root / name / "models")
    )


def cli(*args: str, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "raymix.cli", *args],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def wait_for_state(root: str, at_least, proc, seconds: float = 240) -> str:
    """Wait until the run writing ``root`` (or, replacing it, its staging prefix) has
    checkpointed ``at_least``; return where its checkpoint is."""
    from raymix.outputs import interrupted_staging

    deadline = time.time() + seconds
    while time.time() < deadline:
        where = interrupted_staging(root) or root
        state = f"{where}/checkpoint/state.json"
        if storage.is_file(state) and json.loads(storage.read_text(state))["completed"] >= at_least:
            return where
        assert proc.poll() is None, (
            "the run ended before it could be stopped: " + proc.stderr.read()
        )
        time.sleep(0.1)
    pytest.fail("no checkpoint appeared")


def test_a_killed_driver_resumes_from_the_bucket(
    s3_server,  # noqa: F811
    bucket_data,
    bucket_fit,
    movielens,
    ray_session,
    tmp_path,
):
    """The killed run replaces a previous run (``--overwrite``): it writes under a staging
    prefix, the previous run stays complete meanwhile, and ``--resume`` goes on there."""
    killed = f"{BUCKET}/runs/killed"
    storage.copy_tree(f"{BUCKET}/runs/a", killed)  # a previous, complete run
    before = s3_server.keys(killed)
    env = dict(os.environ, RAYMIX_MOVIELENS=bucket_data)
    env.pop("RAY_ADDRESS", None)
    proc = cli(
        "fit",
        str(RECIPE),
        "--set",
        f"output={killed}",
        "--set",
        "passes=3",
        "--overwrite",
        "--quiet",
        env=env,
    )
    try:
        staged = wait_for_state(killed, [0, 1], proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    assert staged != killed and "/.killed.staging-" in staged
    completed = json.loads(storage.read_text(f"{staged}/checkpoint/state.json"))["completed"]
    assert completed < [2, 2], "the run had finished; nothing to resume"
    assert s3_server.keys(killed) == before  # the previous run, untouched and complete
    resumed = cli("fit", "--resume", killed, "--quiet", env=env)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    whole = tmp_path / "whole"
    fit(recipe_for(str(movielens), str(whole), "passes=3"))
    for name in ("global", "per-user", "per-movie"):
        assert models_in_bucket(s3_server, killed, name) == models_local(whole, name)
    keys = s3_server.keys(killed)
    assert "_SUCCESS" in keys and not any(k.startswith("checkpoint/") for k in keys)
    assert not storage.list_dir(staged)  # published, and the staging prefix removed
    after = json.loads(s3_server.get(f"{killed}/summary.json"))
    uninterrupted = json.loads((whole / "summary.json").read_text())
    assert [s["metrics"] for s in after["steps"]] == [s["metrics"] for s in uninterrupted["steps"]]


def test_losing_the_store_midway_leaves_the_previous_run_complete(
    s3_server,  # noqa: F811
    bucket_data,
    bucket_fit,
    ray_session,
):
    """An --overwrite run writes under a staging prefix; its object store goes away (the
    server it talks to stops) mid-run: it fails in one line, and the previous run in the
    bucket is untouched, complete and readable."""
    from moto.server import ThreadedMotoServer

    root = f"{BUCKET}/runs/a"
    before = {k: s3_server.get(f"{root}/{k}") for k in s3_server.keys(root)}
    port = free_port()  # a second server on the same (process-wide) moto backend
    doomed = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    doomed.start()
    env = dict(os.environ, RAYMIX_MOVIELENS=bucket_data)
    env["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{port}"
    env.pop("RAY_ADDRESS", None)
    args = ["fit", str(RECIPE), "--set", f"output={root}", "--set", "passes=3", "--overwrite"]
    proc = cli(*args, "--quiet", env=env)
    try:
        staging = [k for k in s3_server.keys(f"{BUCKET}/runs") if k.startswith(".a.staging-")]
        deadline = time.time() + 240
        while not staging and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
            staging = [k for k in s3_server.keys(f"{BUCKET}/runs") if k.startswith(".a.staging-")]
        stage = f"{BUCKET}/runs/" + staging[0].split("/")[0]
        wait_for_state(stage, [0, 0], proc)
        doomed.stop()
        code = proc.wait(timeout=300)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("raymix:")]  # not Ray's logs
    assert len(lines) == 1 and lines[0].startswith("raymix: error: s3://"), err
    assert "Traceback" not in err
    assert "cannot reach the object store" in err and SECRET not in err
    assert f"the previous run in '{root}' is unchanged" in err
    after = {k: s3_server.get(f"{root}/{k}") for k in s3_server.keys(root)}
    assert after == before and "_SUCCESS" in after
    assert models_in_bucket(s3_server, root, "per-user")  # readable


def test_a_recipe_file_in_the_bucket(s3_server, bucket_data, monkeypatch, capsys):  # noqa: F811
    uri = f"{BUCKET}/recipes/movielens_lr.py"
    storage.write_bytes(uri, RECIPE.read_bytes())
    monkeypatch.setenv("RAYMIX_MOVIELENS", bucket_data)
    code = main(["fit", uri, "--set", f"output={BUCKET}/runs/dry", "--dry-run"])
    assert code == 0, capsys.readouterr().err
    broken = f"{BUCKET}/recipes/broken.py"
    storage.write_text(broken, "from raymix import Recipe\nrecipe = Recipe(dat=1)\n")
    capsys.readouterr()
    for path, expected in [
        (broken, f"raymix: error: {broken} line 2: "),
        (f"{BUCKET}/recipes/none.py", f"raymix: error: recipe file not found: {BUCKET}/recipes/"),
    ]:
        code = main(["fit", path, "--dry-run"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(expected) and err.count("\n") == 1, err
