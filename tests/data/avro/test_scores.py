"""The vectorised score-file writer produces Avro that fastavro reads back exactly."""

import fastavro
import numpy as np
import pytest

from raymix.data.avro.scores import read_scores_avro, write_scores_avro
from raymix.errors import DataError


@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_scores_round_trip_through_fastavro(tmp_path, codec, monkeypatch):
    import raymix.data.avro.container as module

    monkeypatch.setattr(module, "BLOCK_RECORDS", 1000)  # several blocks
    original = module.write_container
    monkeypatch.setattr(module, "write_container", lambda h, s, c: original(h, s, c, codec))
    rng = np.random.default_rng(0)
    n = 5000
    uid = rng.integers(-(2**62), 2**62, n)
    uid[:6] = [0, 1, -1, 63, 64, 2**63 - 1]
    uid[6] = -(2**63)
    total, own, weight = rng.normal(size=n) * 100, rng.normal(size=n), rng.uniform(size=n)
    label = rng.integers(0, 2, n).astype(float)
    label[::7] = np.nan
    path = write_scores_avro(tmp_path / "s.avro", uid, total, own, label, weight)
    with open(path, "rb") as handle:
        reader = fastavro.reader(handle)
        assert reader.codec == codec
        records = list(reader)
    assert [r["uid"] for r in records] == uid.tolist()
    for name, values in (
        ("predictionScore", total),
        ("predictionScorePerCoordinate", own),
        ("weight", weight),
    ):
        np.testing.assert_array_equal(
            np.array([r[name] for r in records], np.float32), values.astype(np.float32)
        )
    assert [r["response"] is None for r in records] == np.isnan(label).tolist()
    got = np.array([r["response"] for r in records if r["response"] is not None])
    np.testing.assert_array_equal(got, label[~np.isnan(label)])
    uids, scores = read_scores_avro(path)
    np.testing.assert_array_equal(uids, uid)


def test_same_scores_same_bytes(tmp_path):
    values = np.linspace(-3, 3, 100)
    a = write_scores_avro(tmp_path / "a.avro", np.arange(100), values, values, None, None)
    b = write_scores_avro(tmp_path / "b.avro", np.arange(100), values, values, None, None)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(
    "uid, score, says",
    [
        ([0, 1, 2], [0.0, float("nan"), 1.0], "row 1, column 'predictionScore': value is NaN"),
        ([0, 1, 2], [0.0, 1e13, 1.0], "row 1, column 'predictionScore': value 1e+13 is beyond"),
        ([0, 1, 0], [0.0, 0.5, 1.0], "row 2, column 'uid': duplicate uid 0"),
    ],
)
def test_bad_scores_fail_naming_the_file_and_row(tmp_path, uid, score, says):
    path = tmp_path / "scores" / "part-00000.avro"
    values = np.asarray(score)
    write_scores_avro(path, np.asarray(uid), values, values, None, None)
    with pytest.raises(DataError) as info:
        read_scores_avro(tmp_path / "scores")
    assert str(info.value).startswith(f"{path}, {says}")


def test_a_uid_scored_in_two_files_fails_naming_the_directory(tmp_path):
    for part, uid in enumerate(([0, 1], [1, 2])):
        values = np.zeros(2)
        write_scores_avro(
            tmp_path / f"part-{part:05d}.avro", np.asarray(uid), values, values, None, None
        )
    with pytest.raises(DataError, match="duplicate uid 1"):
        read_scores_avro(tmp_path)
