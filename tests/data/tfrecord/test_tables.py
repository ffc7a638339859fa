"""TFRecord reading/writing against GDMix's own test fixtures, decoded independently here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix.data.metadata import Metadata, TensorSpec, load_feature_list, load_metadata
from raymix.data.source import list_data_files, read_data_file
from raymix.data.tfrecord.tables import (
    read_grouped_tfrecord_file,
    read_tfrecord_file,
    validate_against_metadata,
    write_tfrecord_file,
)
from raymix.errors import DataError

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "data" / "gdmix-fixtures"
FE = FIXTURES / "fe_lbfgs"
FE_FILE = FE / "training_data" / "test.tfrecord"
GROUPED = FIXTURES / "grouped_per_member_train"
DETEXT_FILE = FIXTURES / "train" / "dataset" / "tfrecord" / "test.tfrecord"


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def raw_records(tf, path, compression=""):
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type=compression)]


def values(feature):
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def example(tf, **features):
    """A tf.train.Example from keyword lists: ints -> Int64List, floats -> FloatList, bytes."""
    out = tf.train.Example()
    for key, vals in features.items():
        f = out.features.feature[key]
        if vals and isinstance(vals[0], bytes):
            f.bytes_list.value.extend(vals)
        elif vals and isinstance(vals[0], float):
            f.float_list.value.extend(vals)
        else:
            f.int64_list.value.extend(vals)
    return out.SerializeToString()


def write_records(tf, path, records):
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    return path


@pytest.fixture(scope="module")
def fe_meta():
    return load_metadata(FE / "metadata" / "tensor_metadata.json")


# ----------------------------------------------------------------------------- fe_lbfgs


def test_fe_lbfgs_fixture_matches_raw_protos(tf, fe_meta):
    table = read_tfrecord_file(FE_FILE, fe_meta)
    assert table.schema == fe_meta.arrow_schema()
    assert table.num_rows == 32
    rows = table.to_pylist()
    for i, record in enumerate(raw_records(tf, FE_FILE)):
        feats = tf.train.Example.FromString(record).features.feature
        assert set(feats) == {"weight", "uid", "response", "global_indices", "global_values"}
        assert rows[i]["uid"] == values(feats["uid"])[0] == i
        assert rows[i]["weight"] == values(feats["weight"])[0] == 1.0
        assert rows[i]["response"] == values(feats["response"])[0]
        assert rows[i]["global_indices"] == values(feats["global_indices"])
        np.testing.assert_array_equal(
            np.float32(rows[i]["global_values"]), np.float32(values(feats["global_values"]))
        )
    # Concrete values, read off the raw protos.
    assert len(rows[0]["global_indices"]) == 67 and rows[0]["global_indices"][:4] == [0, 1, 2, 3]
    assert rows[0]["global_values"][1] == pytest.approx(0.0517318286)
    assert [r["response"] for r in rows[:6]] == [0, 0, 1, 1, 1, 1]
    assert sum(r["response"] for r in rows) == 17
    assert len(rows[2]["global_indices"]) == 108
    # Every index addresses a feature of featureList/global (306 names = the bag dim).
    assert len(load_feature_list(FE / "featureList" / "global")) == 306
    assert max(max(r["global_indices"]) for r in rows) < 306


@pytest.mark.parametrize("suffix", [".tfrecord", ".tfrecord.gz", ".tfrecord.deflate"])
def test_fe_lbfgs_round_trip(tf, fe_meta, tmp_path, suffix):
    table = read_tfrecord_file(FE_FILE, fe_meta)
    out = tmp_path / f"copy{suffix}"
    assert write_tfrecord_file(table, out, fe_meta) == 32
    assert read_tfrecord_file(out, fe_meta).equals(table)
    # Deterministic bytes; compression really is by suffix.
    again = tmp_path / f"again{suffix}"
    write_tfrecord_file(table, again, fe_meta)
    assert out.read_bytes() == again.read_bytes()
    head = out.read_bytes()[:2]
    assert (head == b"\x1f\x8b") == (suffix == ".tfrecord.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, again.name])


def test_columns_subset_and_order(fe_meta):
    table = read_tfrecord_file(FE_FILE, fe_meta, ["response", "uid"])
    assert table.column_names == ["response", "uid"]
    assert table.column("uid").to_pylist() == list(range(32))
    small = read_tfrecord_file(FE_FILE, fe_meta, ["global"], batch_size=5)  # several batches
    assert small.equals(read_tfrecord_file(FE_FILE, fe_meta, ["global"]))
    with pytest.raises(DataError, match="unknown tensor 'nope'"):
        read_tfrecord_file(FE_FILE, fe_meta, ["nope"])


# ----------------------------------------------------------------------------- DeText fixture


def test_detext_fixture_is_described_by_neither_metadata_fixture(tf):
    # train/dataset/tfrecord/test.tfrecord is a DeText ranking set (query, per-document lists);
    # neither metadata fixture describes it: their tensors are missing from the records.
    for name, missing in [
        ("valid_metadata.json", "weight_indices"),
        ("tensor_metadata.json", "global_indices"),
    ]:
        meta = load_metadata(FIXTURES / "metadata" / name)
        with pytest.raises(DataError) as info:
            read_tfrecord_file(DETEXT_FILE, meta)
        assert str(DETEXT_FILE) in str(info.value)
        assert info.value.column == missing
    raw = [tf.train.Example.FromString(r).features.feature for r in raw_records(tf, DETEXT_FILE)]
    assert len(raw) == 10
    assert "label" in raw[0] and len(values(raw[0]["label"])) == 3  # a list per query


def test_detext_fixture_scalar_features(tf):
    meta = Metadata(
        (
            TensorSpec("weight", "float"),
            TensorSpec("query", "string"),
            TensorSpec("usr_headline", "bytes"),
        )
    )
    table = read_tfrecord_file(DETEXT_FILE, meta)
    raw = [tf.train.Example.FromString(r).features.feature for r in raw_records(tf, DETEXT_FILE)]
    assert table.schema.field("query").type == pa.string()
    assert table.column("query").to_pylist() == [values(f["query"])[0].decode() for f in raw]
    assert table.column("query").to_pylist()[:5] == ["lyst"] * 4 + ["plaid"]
    assert table.column("weight").to_pylist()[0] == pytest.approx(5.341362953186035)
    assert table.column("usr_headline")[0].as_py() == "mba graduate at central saint martins"
    # 'label' holds one value per document: it is not a scalar.
    with pytest.raises(DataError, match="label") as info:
        read_tfrecord_file(DETEXT_FILE, Metadata((TensorSpec("label", "float"),)))
    assert info.value.row == 0


# ----------------------------------------------------------------------------- grouped


EXPECTED_GROUPED = [  # decoded from data.tfrecord's two SequenceExamples (see the test below)
    {"memberId": 100034, "uid": 10, "weight": 1.0, "offset": 0.5, "response": 0,
     "per_member_indices": [0, 7, 60, 80, 95], "per_member_values": [1.0, 2.0, 3.0, 5.0, 6.6]},
    {"memberId": 100034, "uid": 20, "weight": 2.0, "offset": 0.75, "response": 1,
     "per_member_indices": [34, 57], "per_member_values": [1.0, 2.0]},
    {"memberId": 100, "uid": 23, "weight": 1.0, "offset": 0.2, "response": 1,
     "per_member_indices": [10, 11], "per_member_values": [-3.5, 2.3]},
]  # fmt: skip


def assert_rows(table, expected):
    rows = table.to_pylist()
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert set(got) == set(want)
        for key, value in want.items():
            if isinstance(value, float) or (
                isinstance(value, list) and value and isinstance(value[0], float)
            ):
                np.testing.assert_allclose(got[key], value, rtol=1e-6)
            else:
                assert got[key] == value, key


def test_grouped_fixture_raw_layout(tf):
    seqs = [
        tf.train.SequenceExample.FromString(r) for r in raw_records(tf, GROUPED / "data.tfrecord")
    ]
    assert len(seqs) == 2
    ctx = seqs[0].context.feature
    assert values(ctx["memberId"]) == [100034]
    assert values(ctx["uid"]) == [10, 20] and values(ctx["response"]) == [0, 1]
    np.testing.assert_allclose(values(ctx["offset"]), [0.5, 0.75])
    lists = seqs[0].feature_lists.feature_list
    assert [values(f) for f in lists["per_member_indices"].feature] == [
        [0, 7, 60, 80, 95],
        [34, 57],
    ]
    assert values(seqs[1].context.feature["memberId"]) == [100]
    assert [
        values(f) for f in seqs[1].feature_lists.feature_list["per_member_indices"].feature
    ] == [[10, 11]]


def test_grouped_fixture_reads_flat(tmp_path):
    meta = load_metadata(GROUPED / "data.json")
    table = read_grouped_tfrecord_file(GROUPED / "data.tfrecord", meta, "memberId")
    assert table.schema == meta.arrow_schema()
    assert_rows(table, EXPECTED_GROUPED)
    # Written back as per-record Examples, it reads to the same table.
    write_tfrecord_file(table, tmp_path / "flat.tfrecord", meta)
    assert read_tfrecord_file(tmp_path / "flat.tfrecord", meta).equals(table)


def test_grouped_intercept_only_fixture():
    meta = load_metadata(GROUPED / "data_intercept_only.json")
    table = read_grouped_tfrecord_file(GROUPED / "data.tfrecord", meta, "memberId")
    assert table.column_names == ["weight", "offset", "uid", "memberId", "response"]
    drop = [
        {k: v for k, v in r.items() if not k.startswith("per_member")} for r in EXPECTED_GROUPED
    ]
    assert_rows(table, drop)
    only = read_grouped_tfrecord_file(GROUPED / "data.tfrecord", meta, "memberId", ["memberId"])
    assert only.column("memberId").to_pylist() == [100034, 100034, 100]


def test_string_entity_metadata_describes_another_file(tf, tmp_path):
    meta = load_metadata(GROUPED / "data_with_string_entity_id.json")
    # data.tfrecord has int64 member ids: the string-id metadata does not describe it.
    with pytest.raises(DataError, match="memberId") as info:
        read_grouped_tfrecord_file(GROUPED / "data.tfrecord", meta, "memberId")
    assert str(GROUPED / "data.tfrecord") in str(info.value)
    # GDMix's test builds its string-id file on the fly; build the same one here by hand.
    ids, uids = [b"abc102", b"zyz234"], [[1234, 5678], [1345, 3214]]
    offsets, responses = [[1.0, 2.0], [-1.0, -2.0]], [[1, 0], [0, 0]]
    weights = [[1.0, 0.8], [0.5, 0.74]]
    idx = [[[1, 5, 10], [1, 50, 99]], [[1, 3], [2, 20]]]
    val = [[[0.3, -2.3, 0.9], [1.4, 99.8, -1.2]], [[1.23, 4.5], [-1.0, 3.0]]]
    records = []
    for e in range(2):
        s = tf.train.SequenceExample()
        c = s.context.feature
        c["memberId"].bytes_list.value.append(ids[e])
        c["offset"].float_list.value.extend(offsets[e])
        c["response"].int64_list.value.extend(responses[e])
        c["uid"].int64_list.value.extend(uids[e])
        c["weight"].float_list.value.extend(weights[e])
        for rec in range(2):
            s.feature_lists.feature_list[
                "per_member_indices"
            ].feature.add().int64_list.value.extend(idx[e][rec])
            s.feature_lists.feature_list["per_member_values"].feature.add().float_list.value.extend(
                val[e][rec]
            )
        records.append(s.SerializeToString())
    path = write_records(tf, tmp_path / "train.tfrecord", records)
    table = read_grouped_tfrecord_file(path, meta, "memberId")
    assert table.schema.field("memberId").type == pa.string()
    expected = [
        {"memberId": ids[e].decode(), "uid": uids[e][r], "offset": offsets[e][r], "response": responses[e][r],
         "weight": weights[e][r], "per_member_indices": idx[e][r], "per_member_values": val[e][r]}
        for e in range(2) for r in range(2)
    ]  # fmt: skip
    assert_rows(table, expected)
    write_tfrecord_file(table, tmp_path / "flat.tfrecord", meta)
    assert read_tfrecord_file(tmp_path / "flat.tfrecord", meta).equals(table)


def test_grouped_errors(tf, tmp_path):
    meta = load_metadata(GROUPED / "data.json")
    with pytest.raises(DataError, match="dense scalar"):
        read_grouped_tfrecord_file(GROUPED / "data.tfrecord", meta, "per_member")
    with pytest.raises(DataError, match="unknown tensor"):
        read_grouped_tfrecord_file(GROUPED / "data.tfrecord", meta, "member")
    # Entity 1 has 2 uids but only 1 weight.
    records = []
    for uids, w in [([1], [1.0]), ([2, 3], [1.0])]:
        s = tf.train.SequenceExample()
        s.context.feature["memberId"].int64_list.value.append(7)
        s.context.feature["uid"].int64_list.value.extend(uids)
        s.context.feature["weight"].float_list.value.extend(w)
        records.append(s.SerializeToString())
    small = Metadata(
        (TensorSpec("uid", "long"), TensorSpec("weight", "float"), TensorSpec("memberId", "long"))
    )
    path = write_records(tf, tmp_path / "bad.tfrecord", records)
    with pytest.raises(DataError, match="2 records of 'uid' but 1 of 'weight'") as info:
        read_grouped_tfrecord_file(path, small, "memberId")
    assert info.value.row == 1 and str(path) in str(info.value)


# ----------------------------------------------------------------------------- bad input


def test_corrupt_and_truncated_files(fe_meta, tmp_path):
    data = FE_FILE.read_bytes()
    cases = {
        "truncated.tfrecord": data[: len(data) // 2],
        "truncated_head.tfrecord": data[:10],
        "garbage.tfrecord": b"\x01" * 1000,
        "garbage.tfrecord.gz": b"\x01" * 1000,
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError) as info:
            read_tfrecord_file(path, fe_meta)
        assert str(path) in str(info.value) and "corrupt or truncated" in str(info.value), name
    with pytest.raises(DataError, match="not found"):
        read_tfrecord_file(tmp_path / "missing.tfrecord", fe_meta)


def test_type_and_missing_feature_errors_name_feature_and_row(tf, tmp_path):
    meta = Metadata((TensorSpec("uid", "long"), TensorSpec("bag", "float", (4,), True)))
    good = [example(tf, uid=[i], bag_indices=[0, 3], bag_values=[1.0, 2.0]) for i in range(5)]
    cases = [
        (example(tf, uid=[5.0], bag_indices=[1], bag_values=[1.0]), "uid", "match"),
        (example(tf, bag_indices=[1], bag_values=[1.0]), "uid", "uid"),
        (
            example(tf, uid=[5], bag_indices=[1, 2], bag_values=[1.0]),
            "bag_indices",
            "2 indices but 1 values",
        ),
        (
            example(tf, uid=[5], bag_indices=[4], bag_values=[1.0]),
            "bag_indices",
            r"outside \[0, 4\)",
        ),
    ]
    for i, (bad, column, message) in enumerate(cases):
        path = write_records(tf, tmp_path / f"bad{i}.tfrecord", [*good, bad, *good])
        with pytest.raises(DataError, match=message) as info:
            read_tfrecord_file(path, meta, batch_size=4)
        assert info.value.column == column and str(path) in str(info.value)
        if column != "uid" or i == 0:
            assert info.value.row == 5
        # The cheap first-records check sees it too when the bad record comes first.
        first = write_records(tf, tmp_path / f"first{i}.tfrecord", [bad, *good])
        with pytest.raises(DataError) as info:
            validate_against_metadata(first, meta)
        assert info.value.row == 0 and info.value.column == column
    validate_against_metadata(write_records(tf, tmp_path / "good.tfrecord", good), meta)


def test_string_that_is_not_utf8_reads_as_binary(tf, tmp_path):
    meta = Metadata((TensorSpec("s", "bytes"),))
    path = write_records(
        tf, tmp_path / "s.tfrecord", [example(tf, s=[b"ok"]), example(tf, s=[b"\xff"])]
    )
    table = read_tfrecord_file(path, meta)
    assert table.schema.field("s").type == pa.binary()
    assert table.column("s").to_pylist() == [b"ok", b"\xff"]


def test_dense_vectors_and_doubles_round_trip(tmp_path):
    meta = Metadata(
        (
            TensorSpec("f1", "float", (3,)),
            TensorSpec("words", "string", (2,)),
            TensorSpec("d", "double"),
            TensorSpec("bag", "double", (5,), True),
        ),
        (TensorSpec("response", "int"),),
    )
    table = pa.Table.from_pydict(
        {
            "f1": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
            "words": [["a", "b"], ["c", "é"]],
            "d": [0.5, 0.25],
            "bag_indices": [[], [0, 4]],
            "bag_values": [[], [1.5, -2.0]],
            "response": [1, 0],
        },
        schema=meta.arrow_schema(),
    )
    write_tfrecord_file(table, tmp_path / "v.tfrecord", meta)
    back = read_tfrecord_file(tmp_path / "v.tfrecord", meta)
    assert back.schema == meta.arrow_schema()
    assert back.equals(table)


def test_write_errors(fe_meta, tmp_path):
    table = read_tfrecord_file(FE_FILE, fe_meta, ["uid"])
    with pytest.raises(DataError, match="no column 'weight'"):
        write_tfrecord_file(table, tmp_path / "x.tfrecord", fe_meta)
    nulls = pa.table({"uid": pa.array([1, None], pa.int64())})
    with pytest.raises(DataError, match="null") as info:
        write_tfrecord_file(nulls, tmp_path / "x.tfrecord", fe_meta, ["uid"])
    assert info.value.row == 1
    assert not (tmp_path / "x.tfrecord").exists()


# ----------------------------------------------------------------------------- files, parquet


def test_list_data_files(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    with pytest.raises(DataError) as info:
        list_data_files(d)
    assert str(d) in str(info.value)
    for name in ["b.tfrecord.gz", "a.tfrecord.gz", "c.parquet"]:
        (d / name).write_bytes(b"")
    assert list_data_files(d) == [str(d / "a.tfrecord.gz"), str(d / "b.tfrecord.gz")]
    (d / "z.tfrecord.deflate").write_bytes(b"")
    assert list_data_files(d) == [str(d / "z.tfrecord.deflate")]
    (d / "y.tfrecord").write_bytes(b"")
    (d / "x.tfrecord").write_bytes(b"")
    assert list_data_files(d) == [str(d / "x.tfrecord"), str(d / "y.tfrecord")]
    assert list_data_files(str(d / "*.parquet")) == [str(d / "c.parquet")]
    assert list_data_files(d / "c.parquet") == [str(d / "c.parquet")]
    p = tmp_path / "p"
    p.mkdir()
    (p / "part-1.parquet").write_bytes(b"")
    assert list_data_files(p) == [str(p / "part-1.parquet")]
    with pytest.raises(DataError, match="no data files match"):
        list_data_files(str(tmp_path / "*.nothing"))


def test_parquet_in_row_convention_reads_as_is(fe_meta, tmp_path):
    table = read_tfrecord_file(FE_FILE, fe_meta)
    pq.write_table(table, tmp_path / "x.parquet")
    assert read_data_file(tmp_path / "x.parquet", fe_meta).equals(table)
    validate_against_metadata(tmp_path / "x.parquet", fe_meta)
    # Wider numeric types are cast; a missing or non-numeric column is named.
    wide = table.set_column(
        2, "global_values", table.column("global_values").cast(pa.list_(pa.float64()))
    )
    pq.write_table(wide, tmp_path / "wide.parquet")
    assert read_data_file(tmp_path / "wide.parquet", fe_meta).equals(table)
    pq.write_table(table.drop_columns(["uid"]), tmp_path / "nouid.parquet")
    with pytest.raises(DataError, match="missing") as info:
        read_data_file(tmp_path / "nouid.parquet", fe_meta)
    assert info.value.column == "uid"
    bad = table.set_column(3, "uid", pa.array([str(i) for i in range(32)]))
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="does not match"):
        validate_against_metadata(tmp_path / "bad.parquet", fe_meta)


def test_tensorflow_is_imported_lazily():
    code = "import sys, raymix.data.tfrecord.tables, raymix.datasets.movielens; print('tensorflow' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"


def test_copy_of_fixture_dir_is_discovered(fe_meta, tmp_path):
    shutil.copy(FE_FILE, tmp_path / "part-00000.tfrecord")
    (files,) = [list_data_files(tmp_path)]
    assert files == [str(tmp_path / "part-00000.tfrecord")]
    assert read_data_file(files[0], fe_meta).num_rows == 32
