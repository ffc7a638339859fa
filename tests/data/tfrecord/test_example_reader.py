"""The compiled TFRecord / tf.train.Example reader against TensorFlow, the oracle.

``tf_read`` is the reader raymix used before: the first-record check, then ``tf.data`` +
``tf.io.parse_example`` with the ``example_codec`` spec, converted by the same helpers. Every
table must be equal to its table, and every error must name the same file, column (and row
when TensorFlow says which). Records for the edge cases are built byte by byte here, so that
the wire format is exactly what each test says it is.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raymix.data.metadata import Metadata, TensorSpec, load_metadata
from raymix.data.tfrecord import example_codec as codec
from raymix.data.tfrecord.example_reader import Field, decode_examples, read_examples
from raymix.data.tfrecord.framing import example_class, masked_crc
from raymix.data.tfrecord.tables import read_tfrecord_file
from raymix.errors import DataError
from tests.conftest import FIXTURES

from .tf_reference import read_with_tensorflow

REPO = Path(__file__).resolve().parents[3]
FE_FILE = FIXTURES / "fe_lbfgs" / "training_data" / "test.tfrecord"
FE_META = FIXTURES / "fe_lbfgs" / "metadata" / "tensor_metadata.json"
GROUPED = FIXTURES / "grouped_per_member_train"
DETEXT_FILE = FIXTURES / "train" / "dataset" / "tfrecord" / "test.tfrecord"


@pytest.fixture(scope="module")
def tf():
    return codec.tf()


tf_read = read_with_tensorflow  # the TensorFlow oracle


def outcome(read, *args, **kwargs):
    try:
        return read(*args, **kwargs), None
    except DataError as e:
        return None, e


def assert_like_tf(path, metadata, columns=None, **kwargs):
    """Our table equals TensorFlow's, or both fail at the same place; returns ours (or error)."""
    ours, our_error = outcome(read_tfrecord_file, path, metadata, columns, **kwargs)
    theirs, their_error = outcome(tf_read, path, metadata, columns, **kwargs)
    if their_error is None:
        assert our_error is None, f"TensorFlow reads {path} but we raise {our_error}"
        assert ours.schema == theirs.schema
        assert ours.equals(theirs)
        return ours
    assert our_error is not None, f"we read {path} but TensorFlow raises {their_error}"
    assert our_error.path == their_error.path == str(path)
    if "corrupt or truncated" in str(their_error):
        assert "corrupt or truncated" in str(our_error)
    else:
        assert our_error.column == their_error.column, (our_error, their_error)
    if their_error.row is not None:
        assert our_error.row == their_error.row, (our_error, their_error)
    return our_error


# ----------------------------------------------------------------------------- wire format


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # negative int64: two's complement, 10 bytes
    out = bytearray()
    while True:
        low, v = v & 0x7F, v >> 7
        out.append(low | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(number: int, wire: int, payload: bytes) -> bytes:
    tag = varint(number << 3 | wire)
    return tag + (varint(len(payload)) + payload if wire == 2 else payload)


def floats(*values, packed=True) -> bytes:
    """A FloatList."""
    if packed:
        return field(1, 2, struct.pack(f"<{len(values)}f", *values)) if values else b""
    return b"".join(field(1, 5, struct.pack("<f", v)) for v in values)


def ints(*values, packed=True) -> bytes:
    """An Int64List."""
    if packed:
        return field(1, 2, b"".join(varint(v) for v in values)) if values else b""
    return b"".join(field(1, 0, varint(v)) for v in values)


def byte_values(*values) -> bytes:
    """A BytesList."""
    return b"".join(field(1, 2, v) for v in values)


BYTES, FLOAT, INT64 = 1, 2, 3


def feature(kind: int, values: bytes) -> bytes:
    return field(kind, 2, values)


def entry(key: str, feat: bytes | None) -> bytes:
    body = field(1, 2, key.encode()) + (b"" if feat is None else field(2, 2, feat))
    return field(1, 2, body)


def example(*entries: bytes) -> bytes:
    return field(1, 2, b"".join(entries))


def framed(records) -> bytes:
    out = bytearray()
    for r in records:
        head = struct.pack("<Q", len(r))
        out += head + struct.pack("<I", masked_crc(head)) + r + struct.pack("<I", masked_crc(r))
    return bytes(out)


def write(path: Path, records, compress=None) -> Path:
    data = framed(records)
    if compress == "gz":
        data = gzip.compress(data)
    elif compress == "deflate":
        data = zlib.compress(data)
    path.write_bytes(data)
    return path


META = Metadata(
    (
        TensorSpec("uid", "long"),
        TensorSpec("bag", "float", (8,), True),
        TensorSpec("vec", "float", (2,)),
    ),
    (TensorSpec("response", "int"),),
)


def good(i: int, **override) -> bytes:
    parts = {
        "uid": feature(INT64, ints(i)),
        "bag_indices": feature(INT64, ints(i % 8, 7)),
        "bag_values": feature(FLOAT, floats(0.5 * i, -1.25)),
        "vec": feature(FLOAT, floats(i, 2.0 * i)),
        "response": feature(INT64, ints(i % 2)),
    }
    parts.update(override)
    return example(*(entry(k, v) for k, v in parts.items() if v is not ...))


# ----------------------------------------------------------------------------- fixtures


def test_gdmix_fe_lbfgs_fixture_like_tf(tmp_path):
    meta = load_metadata(FE_META)
    table = assert_like_tf(FE_FILE, meta)
    assert table.num_rows == 32
    for name in ("response", "global", "uid"):
        assert_like_tf(FE_FILE, meta, [name])
    assert_like_tf(FE_FILE, meta, batch_size=5)
    raw = FE_FILE.read_bytes()
    (tmp_path / "a.tfrecord.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "a.tfrecord.deflate").write_bytes(zlib.compress(raw))
    for name in ("a.tfrecord.gz", "a.tfrecord.deflate"):
        assert assert_like_tf(tmp_path / name, meta).equals(table)


@pytest.mark.parametrize(
    "metadata", ["data.json", "data_intercept_only.json", "data_with_string_entity_id.json"]
)
def test_gdmix_grouped_fixture_read_as_examples_like_tf(metadata):
    # SequenceExamples: their context (field 1) reads as an Example's features, with one value
    # per record where the metadata wants a scalar: both readers refuse at the same place.
    meta = load_metadata(GROUPED / metadata)
    assert isinstance(assert_like_tf(GROUPED / "data.tfrecord", meta), DataError)
    assert_like_tf(GROUPED / "data.tfrecord", meta, ["memberId"])


@pytest.mark.parametrize("metadata", ["tensor_metadata.json", "valid_metadata.json", None])
def test_gdmix_detext_fixture_like_tf(metadata):
    if metadata is None:
        meta = Metadata(
            (
                TensorSpec("weight", "float"),
                TensorSpec("query", "string"),
                TensorSpec("usr_headline", "bytes"),
                TensorSpec("label", "float"),
            )
        )
        table = assert_like_tf(DETEXT_FILE, meta, ["weight", "query", "usr_headline"])
        assert table.column("query").type == pa.string() and table.num_rows == 10
        assert isinstance(assert_like_tf(DETEXT_FILE, meta), DataError)  # label: a list
    else:
        meta = load_metadata(FIXTURES / "metadata" / metadata)
        assert isinstance(assert_like_tf(DETEXT_FILE, meta), DataError)


MOVIELENS_FILES = [
    ("global", "metadata", ["global"]),
    ("per_user", "metadata", ["per_user"]),
    ("per_movie", "metadata", ["per_movie"]),
    ("detext", "detext/metadata", ["global", "title"]),
]


@pytest.mark.parametrize("split", ["trainingData", "validationData"])
@pytest.mark.parametrize(("name", "meta_dir", "bags"), MOVIELENS_FILES)
def test_movielens_like_tf(movielens, split, name, meta_dir, bags):
    meta = load_metadata(movielens / meta_dir / "tensor_metadata.json")
    columns = [*bags, "uid", "weight", "user_id", "movie_id", "response"]
    path = movielens / name / split / "part-00000.tfrecord"
    table = assert_like_tf(path, meta, columns)
    assert table.num_rows == {"trainingData": 79959, "validationData": 20041}[split]


# ----------------------------------------------------------------------------- edge cases


def test_hand_built_records_like_tf(tmp_path):
    path = write(tmp_path / "a.tfrecord", [good(i) for i in range(20)])
    table = assert_like_tf(path, META)
    assert table.column("uid").to_pylist() == list(range(20))
    assert table.column("bag_values")[3].as_py() == [1.5, -1.25]
    assert table.column("vec")[2].as_py() == [2.0, 4.0]
    assert assert_like_tf(path, META, batch_size=3).equals(table)


def test_unpacked_lists_and_negative_ints_like_tf(tmp_path):
    big = [-1, -(2**63), 2**63 - 1, 0, 127, 128, -300]
    records = [
        good(0),
        good(1, uid=feature(INT64, ints(-5, packed=False))),
        good(2, bag_indices=feature(INT64, ints(1, 2, packed=False))),
        good(3, bag_values=feature(FLOAT, floats(1.5, 2.5, packed=False))),
        good(4, vec=feature(FLOAT, floats(7.0, 8.0, packed=False))),
        good(5, uid=feature(INT64, ints(-(2**63)))),
    ]
    table = assert_like_tf(write(tmp_path / "a.tfrecord", records), META)
    assert table.column("uid").to_pylist()[:6] == [0, -5, 2, 3, 4, -(2**63)]
    assert table.column("bag_indices")[2].as_py() == [1, 2]
    assert table.column("bag_values")[3].as_py() == [1.5, 2.5]
    assert table.column("vec")[4].as_py() == [7.0, 8.0]
    meta = Metadata((TensorSpec("x", "long", (7,)),))
    path = write(tmp_path / "b.tfrecord", [example(entry("x", feature(INT64, ints(*big))))])
    assert assert_like_tf(path, meta).column("x")[0].as_py() == big


def test_empty_lists_and_missing_bag_keys_like_tf(tmp_path):
    records = [
        good(0),
        good(1, bag_indices=feature(INT64, b""), bag_values=feature(FLOAT, b"")),
        good(2, bag_indices=..., bag_values=...),
        good(3, bag_indices=b"", bag_values=b""),  # Features with no kind: absent
        good(4, bag_values=...),
    ]
    path = write(tmp_path / "a.tfrecord", records)
    error = assert_like_tf(path, META)  # record 4 has 2 indices but no values
    assert error.row == 4 and "2 indices but 0 values" in str(error)
    table = assert_like_tf(write(tmp_path / "b.tfrecord", records[:4]), META)
    assert table.column("bag_indices").to_pylist()[1:] == [[], [], []]
    # The first record must hold a bag's keys (the first-record check), even empty.
    path = write(tmp_path / "c.tfrecord", [records[2], records[0]])
    error = assert_like_tf(path, META)
    assert error.row == 0 and "missing from the records" in str(error)
    assert assert_like_tf(write(tmp_path / "d.tfrecord", records[1:3]), META).num_rows == 2


def test_duplicate_keys_last_one_wins_like_tf(tmp_path):
    twice = good(1) + example(entry("uid", feature(INT64, ints(99))))  # merged Examples
    switch = example(entry("uid", feature(FLOAT, floats(1.0)))) + good(2)
    inside = example(
        entry("uid", feature(INT64, ints(5))),
        entry("uid", feature(INT64, ints(6))),
        entry("bag_indices", feature(INT64, ints(0))),
        entry("bag_values", feature(FLOAT, floats(1.0))),
        entry("vec", feature(FLOAT, floats(0.0, 0.0))),
        entry("response", feature(INT64, ints(1))),
    )
    table = assert_like_tf(write(tmp_path / "a.tfrecord", [good(0), twice, switch, inside]), META)
    assert table.column("uid").to_pylist() == [0, 99, 2, 6]


def test_unknown_fields_are_skipped(tmp_path):
    junk = field(7, 0, varint(300)) + field(8, 1, b"12345678") + field(9, 5, b"1234")
    junk += field(10, 2, b"anything")
    records = [
        good(0) + junk,  # in the Example
        good(1, uid=feature(INT64, ints(1)) + junk),  # in a Feature, after its list
    ]
    table = assert_like_tf(write(tmp_path / "a.tfrecord", records), META)
    assert table.column("uid").to_pylist() == [0, 1]
    # TensorFlow's parser refuses these, protobuf (and we) skip them: compare with protobuf.
    group = field(11, 3, field(12, 0, varint(1)) + field(13, 3, b"") + field(13, 4, b""))
    group += field(11, 4, b"")
    stricter = [
        example(junk, entry("uid", feature(INT64, ints(2)))) + good(2, uid=...),  # in Features
        example(field(1, 2, field(1, 2, b"uid") + junk + field(2, 2, feature(INT64, ints(3)))))
        + good(3, uid=...),  # in a map entry
        good(4, uid=junk + feature(INT64, ints(4))),  # in a Feature, before its list
        good(5, uid=feature(INT64, ints(5) + junk)),  # in an Int64List
        good(6, vec=feature(FLOAT, junk + floats(1.0, 2.0))),  # in a FloatList
        good(7) + group,  # a group, with a group inside
    ]
    path = write(tmp_path / "b.tfrecord", [good(0), *stricter])
    table = read_tfrecord_file(path, META)
    assert table.column("uid").to_pylist() == [0, 2, 3, 4, 5, 6, 7]
    assert table.column("vec")[5].as_py() == [1.0, 2.0]
    # Python's protobuf (upb) agrees, except that it files a map entry holding unknown fields
    # under the Features' unknown fields (so 'uid' is absent); C++ protobuf keeps the entry.
    parse = example_class().FromString
    uids = [parse(r).features.feature["uid"].int64_list.value for r in stricter]
    assert [list(u) for u in uids] == [[2], [], [4], [5], [6], [7]]


def test_protobuf_merge_rules_where_tf_differs(tmp_path):
    # A list seen twice in a Feature is merged; the last field of the oneof wins; a map entry
    # without a value is an empty Feature (absent); packed and unpacked values mix in any
    # order. TensorFlow's parser reads only the first list, refuses a value-less entry and
    # mixed int64 lists; protobuf (and we) follow the rules.
    three = {"bag_indices": feature(INT64, ints(1, 2, 3))}
    records = [
        good(0, bag_indices=feature(INT64, ints(1)) + feature(INT64, ints(2))),
        good(1, uid=feature(FLOAT, floats(1.0)) + feature(INT64, ints(11))),
        good(2, bag_values=None, bag_indices=None),
        good(3, bag_values=feature(FLOAT, floats(1.5, packed=False) + floats(2.5, 3.5)), **three),
        good(
            4,
            bag_indices=feature(INT64, ints(3) + ints(4, 5, packed=False)),
            bag_values=feature(FLOAT, floats(1.0, 2.0, 3.0)),
        ),
    ]
    table = read_tfrecord_file(write(tmp_path / "a.tfrecord", [good(9), *records]), META)
    assert table.column("bag_indices").to_pylist()[1] == [1, 2]
    assert table.column("uid").to_pylist()[2] == 11
    assert table.column("bag_indices").to_pylist()[3] == []
    assert table.column("bag_values").to_pylist()[4] == [1.5, 2.5, 3.5]
    assert table.column("bag_indices").to_pylist()[5] == [3, 4, 5]
    feats = [example_class().FromString(r).features.feature for r in records]
    assert list(feats[0]["bag_indices"].int64_list.value) == [1, 2]
    assert feats[1]["uid"].WhichOneof("kind") == "int64_list"
    assert feats[2]["bag_values"].WhichOneof("kind") is None
    assert list(feats[3]["bag_values"].float_list.value) == [1.5, 2.5, 3.5]
    assert list(feats[4]["bag_indices"].int64_list.value) == [3, 4, 5]


def test_wrong_kinds_and_counts_like_tf(tmp_path):
    cases = {
        "uid": good(5, uid=feature(FLOAT, floats(1.0))),
        "vec": good(5, vec=feature(FLOAT, floats(1.0))),
        "response": good(5, response=feature(INT64, b"")),
        "bag_values": good(5, bag_values=feature(INT64, ints(1, 2))),
        "bag_indices": good(5, bag_indices=feature(BYTES, byte_values(b"a", b"b"))),
    }
    for column, bad in cases.items():
        path = write(tmp_path / f"{column}.tfrecord", [good(i) for i in range(5)] + [bad])
        error = assert_like_tf(path, META)
        assert error.column == column and error.row == 5
        assert str(path) in str(error) and f"tensor '{column.split('_')[0]}'" in str(error)
        assert "does not match the metadata" in str(error), error
    missing = write(tmp_path / "missing.tfrecord", [good(0), good(1, uid=...)])
    error = assert_like_tf(missing, META)
    assert (error.row, error.column) == (1, "uid") and "missing from a record" in str(error)
    empty_feature = write(tmp_path / "kindless.tfrecord", [good(0), good(1, uid=b"")])
    assert assert_like_tf(empty_feature, META).row == 1


def test_strings_and_doubles_like_tf(tmp_path):
    meta = Metadata(
        (
            TensorSpec("s", "string"),
            TensorSpec("b", "bytes"),
            TensorSpec("words", "string", (2,)),
            TensorSpec("d", "double"),
            TensorSpec("bag", "double", (4,), True),
        )
    )

    def rec(s: bytes, words) -> bytes:
        return example(
            entry("s", feature(BYTES, byte_values(s))),
            entry("b", feature(BYTES, byte_values(b"\xff" + s))),
            entry("words", feature(BYTES, byte_values(*words))),
            entry("d", feature(FLOAT, floats(0.1))),
            entry("bag_indices", feature(INT64, ints(3))),
            entry("bag_values", feature(FLOAT, floats(-2.5))),
        )

    records = [rec("é".encode(), [b"a", b""]), rec(b"", [b"xyz", "ü".encode()])]
    table = assert_like_tf(write(tmp_path / "a.tfrecord", records), meta)
    assert table.column("s").to_pylist() == ["é", ""]
    assert table.schema.field("b").type == pa.binary()
    assert table.column("words").to_pylist() == [["a", ""], ["xyz", "ü"]]


@pytest.mark.parametrize("compress", ["gz", "deflate"])
def test_compressed_files_like_tf(tmp_path, compress):
    records = [good(i) for i in range(7)]
    plain = read_tfrecord_file(write(tmp_path / "a.tfrecord", records), META)
    path = write(tmp_path / f"a.tfrecord.{compress}", records, compress)
    assert assert_like_tf(path, META).equals(plain)
    # A stream cut short is an error, even when the records before the cut are whole
    # (TensorFlow's gzip reader then stops quietly: records could have been lost).
    cut = tmp_path / f"cut.tfrecord.{compress}"
    cut.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(DataError, match="corrupt or truncated TFRecord") as info:
        read_tfrecord_file(cut, META)
    assert info.value.path == str(cut)
    trailing = tmp_path / f"trailing.tfrecord.{compress}"
    trailing.write_bytes(path.read_bytes() + b"\x01\x02")
    with pytest.raises(DataError, match="corrupt or truncated TFRecord"):
        read_tfrecord_file(trailing, META)


@pytest.mark.parametrize("suffix", [".tfrecord", ".tfrecord.gz", ".tfrecord.deflate"])
def test_empty_files_like_tf(tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    table = assert_like_tf(empty, META)
    assert table.num_rows == 0 and table.schema == META.arrow_schema()
    if suffix != ".tfrecord":
        stream = tmp_path / f"stream{suffix}"
        write(stream, [], suffix.rsplit(".", 1)[1])
        assert assert_like_tf(stream, META).num_rows == 0


def test_truncated_and_flipped_bytes(tmp_path):
    records = [good(i) for i in range(6)]
    data = framed(records)
    ends = np.cumsum([len(r) + 16 for r in records])
    cases = {
        "cut_header": (data[: ends[2] + 5], 3, "partial record header"),
        "cut_record": (data[: ends[3] + 20], 4, "partial record"),
        "cut_footer": (data[: ends[4] - 2], 4, "partial record"),
        "length_crc": (flip(data, ends[1] + 9), 2, "bad length checksum"),
        "length": (flip(data, ends[1] + 1), 2, "bad length checksum"),
        "data_crc": (flip(data, ends[4] - 1), 4, "bad data checksum"),
        "data": (flip(data, ends[2] + 14), 3, "bad data checksum"),
    }
    for name, (content, row, message) in cases.items():
        path = tmp_path / f"{name}.tfrecord"
        path.write_bytes(content)
        error = assert_like_tf(path, META)
        assert (error.row, error.path) == (row, str(path)), name
        assert f"corrupt or truncated TFRecord: {message}" in str(error), name
    path = tmp_path / "first.tfrecord"
    path.write_bytes(flip(data, 20))
    assert assert_like_tf(path, META).row == 0


def flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x40
    return bytes(out)


def test_malformed_protobuf(tmp_path):
    cases = [
        b"\xff\xff",  # a varint that never ends
        good(1)[:-3],  # a length beyond the message
        good(1, uid=feature(INT64, field(1, 2, b"\x80\x80"))),  # a packed varint cut short
        good(1, vec=feature(FLOAT, field(1, 2, b"\x00\x00\x80\x3f\x00"))),  # 5 bytes of floats
        good(1, uid=feature(INT64, field(1, 2, b"\xff" * 10 + b"\x01"))),  # an 11-byte varint
        good(1) + field(3, 4, b""),  # an end-group tag with no group
    ]
    for i, bad in enumerate(cases):
        path = write(tmp_path / f"bad{i}.tfrecord", [good(0), bad])
        with pytest.raises(DataError, match="not a tf.train.Example") as info:
            read_tfrecord_file(path, META)
        assert info.value.row == 1 and str(path) in str(info.value), i
        with pytest.raises(Exception, match="rror"):  # protobuf's DecodeError
            example_class().FromString(bad)


def test_decode_examples_columns(tmp_path):
    records = [
        example(entry("a", feature(INT64, ints(1, -2))), entry("s", feature(BYTES, b""))),
        example(entry("s", feature(BYTES, byte_values(b"xy", b"", b"z")))),
        b"",  # an empty Example: every key absent
    ]
    fields = [Field("a", "int64_list"), Field("s", "bytes_list"), Field("f", "float_list")]
    data = np.frombuffer(framed(records), np.uint8)
    columns = decode_examples(data, fields, "mem")
    assert list(columns) == ["a", "s", "f"]
    assert columns["a"].splits.tolist() == [0, 2, 2, 2]
    assert columns["a"].values.dtype == np.int64 and columns["a"].values.tolist() == [1, -2]
    assert columns["s"].splits.tolist() == [0, 0, 3, 3]
    assert columns["s"].values.to_pylist() == [b"xy", b"", b"z"]
    assert columns["f"].values.dtype == np.float32 and len(columns["f"].values) == 0
    with pytest.raises(DataError, match=r"mem, row 1, column 'a'.*missing"):
        decode_examples(data, [Field("a", "int64_list", 2)], "mem")
    with pytest.raises(DataError, match=r"row 0, column 'a'.*has 2 values"):
        decode_examples(data, [Field("a", "int64_list", 1)], "mem")
    empty = decode_examples(np.empty(0, np.uint8), fields, "mem")
    assert [len(c.splits) for c in empty.values()] == [1, 1, 1]
    path = write(tmp_path / "x.tfrecord", records)
    assert read_examples(path, fields)["s"].values.equals(columns["s"].values)


def test_reading_never_imports_tensorflow(tmp_path):
    copy = tmp_path / "copy.tfrecord.gz"
    copy.write_bytes(gzip.compress(FE_FILE.read_bytes()))
    code = (
        "import sys\n"
        "from raymix.data.metadata import load_metadata\n"
        "from raymix.data.source import read_data_file\n"
        f"meta = load_metadata({str(FE_META)!r})\n"
        f"for path in [{str(FE_FILE)!r}, {str(copy)!r}]:\n"
        "    assert read_data_file(path, meta).num_rows == 32\n"
        "print('tensorflow' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"
