"""GDMix tensor_metadata.json, feature lists and the Arrow row schema."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow as pa
import pytest

from raymix.data.metadata import (
    Metadata,
    TensorSpec,
    load_feature_list,
    load_metadata,
    write_feature_list,
)
from raymix.errors import DataError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FIXTURES = SHARED / "data" / "gdmix-fixtures"


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def tensor(name="x", dtype="float", shape=(), sparse=False, **extra):
    return {"name": name, "dtype": dtype, "shape": list(shape), "isSparse": sparse, **extra}


# ----------------------------------------------------------------------------- valid files


def test_valid_metadata_fixture():
    meta = load_metadata(FIXTURES / "metadata" / "valid_metadata.json")
    assert meta.features == (
        TensorSpec("weight", "float", (234,), True),
        TensorSpec("f1", "float", (3,), False),
    )
    assert meta.labels == (TensorSpec("response", "int", (), False),)
    assert meta["weight"].dim == 234
    assert meta["weight"].columns == ("weight_indices", "weight_values")


def test_scala_metadata_with_num_unique_values():
    # GDMix's Scala MetadataGenerator writes "numUniqueValues" (null or a count).
    meta = load_metadata(FIXTURES / "metadata" / "tensor_metadata.json")
    assert meta.names == ("global", "weight", "uid", "label")
    assert meta["global"] == TensorSpec("global", "float", (2,), True)
    assert meta["uid"].dtype == "long"
    assert meta.labels[0].dtype == "int"


def test_fe_lbfgs_metadata():
    meta = load_metadata(FIXTURES / "fe_lbfgs" / "metadata" / "tensor_metadata.json")
    assert meta.names == ("weight", "global", "uid", "response")
    assert meta["global"].dim == 306


def test_extra_top_level_keys_are_ignored(tmp_path):
    path = write_json(
        tmp_path / "m.json",
        {"features": [tensor()], "labels": [], "numberOfTrainingSamples": 79959, "foo": 1},
    )
    assert load_metadata(path) == Metadata((TensorSpec("x", "float"),), ())


# ----------------------------------------------------------------------------- invalid files


@pytest.mark.parametrize(
    "name, fragments",
    [
        ("invalid_name.json", ["features[0]", "name 9", "field 'name'", "string"]),
        ("invalid_shape.json", ["features[0]", "'textFeature'", "field 'shape'", "list", "7"]),
        ("invalid_type.json", ["features[0]", "'textFeature'", "field 'dtype'", "'text'"]),
        ("duplicated_names.json", ["features[1]", "'weight'", "field 'name'", "features[0]"]),
    ],
)
def test_invalid_fixtures_are_rejected_specifically(name, fragments):
    path = FIXTURES / "metadata" / name
    with pytest.raises(DataError) as info:
        load_metadata(path)
    assert info.value.path == str(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    "item, fragments",
    [
        (tensor(shape=(2, 3)), ["field 'shape'", "rank"]),
        (tensor(shape=(True,)), ["field 'shape'"]),
        (tensor(shape=(0,)), ["field 'shape'", ">= 1"]),
        (tensor(sparse=True), ["field 'shape'", "sparse"]),
        (tensor(dtype="string", shape=(5,), sparse=True), ["field 'dtype'", "sparse"]),
        (tensor(sparse="yes"), ["field 'isSparse'"]),
        (tensor(numUniqueValues="many"), ["field 'numUniqueValues'"]),
        ({"name": "x", "dtype": "float", "shape": []}, ["missing", "isSparse"]),
        (tensor(extra=1), ["unknown field", "extra"]),
        ("x", ["features[1]", "object"]),
    ],
)
def test_invalid_tensors(tmp_path, item, fragments):
    path = write_json(tmp_path / "m.json", {"features": [tensor("ok"), item], "labels": []})
    with pytest.raises(DataError) as info:
        load_metadata(path)
    message = str(info.value)
    assert str(path) in message and "features[1]" in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_names_unique_across_features_and_labels(tmp_path):
    path = write_json(
        tmp_path / "m.json",
        {"features": [tensor("response")], "labels": [tensor("response", "int")]},
    )
    with pytest.raises(DataError, match=r"labels\[0\].*'response'.*features\[0\]"):
        load_metadata(path)


@pytest.mark.parametrize(
    "obj, fragment",
    [
        ([], "JSON object"),
        ({"features": []}, "'labels'"),
        ({"features": {}, "labels": []}, "'features' must be a list"),
    ],
)
def test_invalid_top_level(tmp_path, obj, fragment):
    with pytest.raises(DataError, match=fragment):
        load_metadata(write_json(tmp_path / "m.json", obj))


def test_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_metadata(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="invalid JSON") as info:
        load_metadata(tmp_path / "bad.json")
    assert info.value.path == str(tmp_path / "bad.json")


def test_programmatic_validation():
    with pytest.raises(DataError, match="dtype"):
        TensorSpec("x", "text")
    with pytest.raises(DataError, match="duplicated"):
        Metadata((TensorSpec("x", "float"), TensorSpec("x", "int")))
    with pytest.raises(DataError, match="clashes"):
        Metadata((TensorSpec("g", "float", (3,), True), TensorSpec("g_values", "float")))
    with pytest.raises(DataError, match="not sparse"):
        _ = TensorSpec("x", "float").dim


def test_errors_pickle():
    try:
        load_metadata(FIXTURES / "metadata" / "invalid_type.json")
    except DataError as e:
        again = pickle.loads(pickle.dumps(e))
        assert str(again) == str(e) and again.path == e.path


# ----------------------------------------------------------------------------- writing, schema


def test_to_json_round_trip(tmp_path):
    meta = load_metadata(FIXTURES / "fe_lbfgs" / "metadata" / "tensor_metadata.json")
    meta.write(tmp_path / "out" / "tensor_metadata.json", {"numberOfTrainingSamples": 32})
    raw = json.loads((tmp_path / "out" / "tensor_metadata.json").read_text())
    assert raw["numberOfTrainingSamples"] == 32
    assert raw["features"][1] == {
        "name": "global",
        "dtype": "float",
        "shape": [306],
        "isSparse": True,
    }
    assert load_metadata(tmp_path / "out" / "tensor_metadata.json") == meta
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["tensor_metadata.json"]


def test_arrow_schema_row_convention():
    meta = Metadata(
        (
            TensorSpec("bag", "float", (10,), True),
            TensorSpec("dbag", "double", (4,), True),
            TensorSpec("vec", "float", (3,)),
            TensorSpec("words", "string", (2,)),
            TensorSpec("uid", "long"),
            TensorSpec("count", "int"),
            TensorSpec("w", "float"),
            TensorSpec("d", "double"),
            TensorSpec("s", "string"),
            TensorSpec("b", "bytes"),
        ),
        (TensorSpec("response", "int"),),
    )
    assert meta.arrow_schema() == pa.schema(
        [
            ("bag_indices", pa.list_(pa.int64())),
            ("bag_values", pa.list_(pa.float32())),
            ("dbag_indices", pa.list_(pa.int64())),
            ("dbag_values", pa.list_(pa.float64())),
            ("vec", pa.list_(pa.float32(), 3)),
            ("words", pa.list_(pa.string())),
            ("uid", pa.int64()),
            ("count", pa.int64()),
            ("w", pa.float32()),
            ("d", pa.float64()),
            ("s", pa.string()),
            ("b", pa.string()),
            ("response", pa.int64()),
        ]
    )
    assert meta.arrow_schema(["response", "bag"]).names == ["response", "bag_indices", "bag_values"]
    with pytest.raises(DataError, match=r"unknown tensor 'nope'.*'bag'"):
        meta.arrow_schema(["nope"])
    with pytest.raises(DataError, match="list of tensor names"):
        meta.arrow_schema("bag")


# ----------------------------------------------------------------------------- feature lists


def test_feature_list_fixture():
    path = FIXTURES / "fe_lbfgs" / "featureList" / "global"
    assert not path.read_bytes().endswith(b"\n")  # the last line lacks its newline
    features = load_feature_list(path)
    assert len(features) == 306  # = the bag dimension in the fixture's metadata
    assert features[0] == ("n1", "t1")
    assert features[305] == ("n306", "t306")


def test_feature_list_round_trip(tmp_path):
    features = [("age", ""), ("M", ""), ("a,b", "x"), ('q"uote', "t")]
    write_feature_list(tmp_path / "bag", features)
    assert (tmp_path / "bag").read_text().startswith("age,\nM,\n")
    assert load_feature_list(tmp_path / "bag") == features


@pytest.mark.parametrize("text, line", [("a,b\nc,d,e\n", 2), ("a,b\nonly\n", 2), ("a,b\n\nc,d", 2)])
def test_feature_list_needs_two_fields(tmp_path, text, line):
    (tmp_path / "bag").write_text(text)
    with pytest.raises(DataError) as info:
        load_feature_list(tmp_path / "bag")
    assert str(tmp_path / "bag") in str(info.value)
    assert f"line {line}" in str(info.value)


def test_a_feature_list_names_each_feature_once(tmp_path):
    """Two indices of one (name, term): a model's coefficient of it would be ambiguous."""
    (tmp_path / "bag").write_text("a,x\nb,\na,y\nb,\n")
    with pytest.raises(DataError, match=r"line 4: feature \('b', ''\) repeats line 2"):
        load_feature_list(tmp_path / "bag")
