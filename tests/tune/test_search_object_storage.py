"""A search whose experiment and results live in an S3 bucket (a real S3 server on
loopback): Ray Tune's experiment state goes through raymix's pyarrow filesystem, an
interrupted search resumes from the bucket, and the results read back from it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from ray import tune

from raymix.recipe.load import load_recipe
from raymix.tune import SearchSpace, TuneResult, search
from tests.s3server import s3_server  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parents[2]
BUCKET = "s3://rm-tune"
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_a_search_in_the_bucket_resumes_there_and_reads_back(
    s3_server,  # noqa: F811
    movielens,
    ray_session,
    tmp_path,
    monkeypatch,
):
    s3_server.bucket(BUCKET.removeprefix("s3://"))
    monkeypatch.setenv("RAYMIX_MOVIELENS", str(movielens))
    recipe = load_recipe(REPO / "recipes" / "movielens_lr.py", [f"output={tmp_path / 'lr'}"])
    space = SearchSpace(
        {"coordinates.per-user.l2": tune.grid_search([1.0, 10.0])},
        num_samples=1,
        searcher="grid",
        max_concurrent=1,
    )
    out = f"{BUCKET}/search"
    first = search(recipe, space, out=out, stop_after=1)
    assert first.interrupted
    resumed = search(recipe, space, out=out, resume=True)
    assert not resumed.interrupted and len(resumed.trials) == 2
    keys = s3_server.keys(out)
    for name in ("search.json", "trials.csv", "best.json", "result.json", "search.png"):
        assert name in keys, keys
    assert any(k.startswith("experiment/") for k in keys)

    loaded = TuneResult.load(out)
    assert loaded.best == resumed.best and str(loaded.out) == out
    rows = list(csv.DictReader(io.StringIO(s3_server.get(f"{out}/trials.csv").decode())))
    assert sorted(float(r["coordinates.per-user.l2"]) for r in rows) == [1.0, 10.0]
    result = json.loads(s3_server.get(f"{out}/result.json"))
    assert result["best_recipe"] == f"{out}/best.json"
    with pytest.raises(Exception, match="not empty"):  # a plain rerun is refused
        search(recipe, space, out=out)
