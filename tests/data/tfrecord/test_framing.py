"""The TensorFlow-free first-record reader agrees with tf.data and catches corruption."""

import gzip
import zlib

import pytest

from raymix.data.tfrecord.framing import crc32c, example_class, first_records
from raymix.errors import DataError
from tests.conftest import FIXTURES

FE = FIXTURES / "fe_lbfgs" / "training_data" / "test.tfrecord"


def test_crc32c_known_value():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_records_and_examples_match_tensorflow():
    tf = pytest.importorskip("tensorflow")
    ours = first_records(str(FE), 40)
    theirs = [r.numpy() for r in tf.data.TFRecordDataset([str(FE)])]
    assert ours == theirs and len(ours) == 32
    ours_example = example_class().FromString(ours[3])
    tf_example = tf.train.Example.FromString(theirs[3])
    for key, feature in tf_example.features.feature.items():
        kind = feature.WhichOneof("kind")
        assert ours_example.features.feature[key].WhichOneof("kind") == kind
        assert list(getattr(ours_example.features.feature[key], kind).value) == list(
            getattr(feature, kind).value
        )


def test_compressed_files(tmp_path):
    raw = FE.read_bytes()
    (tmp_path / "a.tfrecord.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "a.tfrecord.deflate").write_bytes(zlib.compress(raw))
    for name in ("a.tfrecord.gz", "a.tfrecord.deflate"):
        assert first_records(str(tmp_path / name), 5) == first_records(str(FE), 5)


def test_corruption_is_reported_with_the_record(tmp_path):
    raw = bytearray(FE.read_bytes())
    first_length = int.from_bytes(raw[:8], "little")
    raw[12 + first_length + 4 + 20] ^= 0xFF  # a byte of the second record's data
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"bad.tfrecord, row 1: corrupt or truncated TFRecord"):
        first_records(str(bad), 5)
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(FE.read_bytes()[:30])
    with pytest.raises(DataError, match="row 0: corrupt or truncated"):
        first_records(str(cut), 5)
