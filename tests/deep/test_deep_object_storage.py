"""The deep coordinate with its data, vocabulary and outputs only in an S3 bucket (a real S3
server on loopback): the SavedModel is written locally and uploaded, read back from a local
copy; the fit equals the local fit, scores from the bucket equal local scores, and a run
stopped after a pass resumes from the bucket's checkpoint to the uninterrupted network."""

from __future__ import annotations

import io

import fastavro
import numpy as np
import pytest

from raymix import Recipe, storage
from raymix.deep.export import load_weights
from raymix.run import fit
from raymix.scoring import score_command
from tests.deep.conftest import small_deep_recipe
from tests.s3server import s3_server  # noqa: F401 - a fixture

pytestmark = [pytest.mark.slow, pytest.mark.ray]
BUCKET = "s3://rm-deep"


class Interrupted(Exception):
    pass


def recipe(root: str, output: str) -> Recipe:
    return small_deep_recipe(root, output, steps=20, passes=2)


def records(raw: bytes) -> list:
    return list(fastavro.reader(io.BytesIO(raw)))


def test_a_deep_fit_in_the_bucket_equals_the_local_fit_and_resumes_there(
    s3_server,  # noqa: F811
    text_data,
    ray_session,
    tmp_path,
):
    s3_server.bucket(BUCKET.removeprefix("s3://"))
    remote = s3_server.upload_tree(text_data, f"{BUCKET}/data")
    local = fit(recipe(str(text_data), str(tmp_path / "local")))
    fit(recipe(remote, f"{BUCKET}/runs/a"))

    keys = s3_server.keys(f"{BUCKET}/runs/a")
    assert "deep/models/saved_model.pb" in keys and keys[0] == "_SUCCESS"
    _, expected = load_weights(local.output / "deep" / "models")
    _, got = load_weights(f"{BUCKET}/runs/a/deep/models")  # read from a downloaded copy
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)

    # raymix score reads the SavedModel from the bucket inside its reading tasks
    score_command(f"{BUCKET}/runs/a", [], f"{BUCKET}/scores/a")
    mine = score_command(local.output, [], tmp_path / "scores")
    assert records(s3_server.get(f"{BUCKET}/scores/a/scores/part-00000.avro")) == records(
        mine.read_bytes()
    )

    # stopped after the first pass, resumed from the checkpoint in the bucket
    def stop_after_the_first_pass(message: str) -> None:
        if message.startswith("pass 1 deep"):
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(recipe(remote, f"{BUCKET}/runs/b"), progress=stop_after_the_first_pass)
    assert storage.exists(f"{BUCKET}/runs/b/checkpoint/state.json")
    fit(recipe(remote, f"{BUCKET}/runs/b"), resume=True)
    _, resumed = load_weights(f"{BUCKET}/runs/b/deep/models")
    for name, value in expected.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
