"""Photon ML Avro files as a split (raymix.data.avro.photon_source through build_source): rows
numbered across files, a bag indexed from the train files (a feature seen only in validation
is dropped) or by its name<TAB>term list, string and integer ids, weights and offsets."""

from __future__ import annotations

import fastavro
import numpy as np
import pytest

from raymix.coordinates.inputs import build_source, feature_names
from raymix.data.rows import rows_from_table
from raymix.data.source import entity_kind, read_table
from raymix.errors import DataError
from raymix.recipe.spec import Columns, Data
from tests.photon_files import FEATURE

SCHEMA = {
    "type": "record",
    "name": "Row",
    "fields": [
        {"name": "member", "type": "string"},
        {"name": "response", "type": "double"},
        {"name": "weight", "type": ["null", "double"]},
        {"name": "offset", "type": "float"},
        {"name": "other", "type": {"type": "array", "items": FEATURE}},
        {"name": "bag", "type": {"type": "array", "items": "Feature"}},
    ],
}


def feature(name, term, value):
    return {"name": name, "term": term, "value": value}


def write(path, rows):
    with path.open("wb") as out:
        fastavro.writer(out, fastavro.parse_schema(SCHEMA), rows)
    return str(path)


def row(member, response, bag, weight=None, offset=0.0):
    other = [feature("x", None, 9.0)]
    return {"member": member, "response": response, "weight": weight, "offset": offset,
            "other": other, "bag": bag}  # fmt: skip


@pytest.fixture
def splits(tmp_path):
    a = write(tmp_path / "a.avro", [row("m1", 1.0, [feature("f", "2", 2.0), feature("f", None, 1.0)]),
                                    row("m2", 0.0, [], weight=3.0, offset=0.5)])  # fmt: skip
    b = write(tmp_path / "b.avro", [row("m1", 2.0, [feature("g", "", 4.0)])])
    v = write(
        tmp_path / "v.avro", [row("m3", 1.0, [feature("new", "", 5.0), feature("g", "", 6.0)])]
    )
    return Data(train=(a, b), validation=v)


def test_a_split_of_photon_files_reads_in_the_row_convention(splits):
    train = build_source(splits, Columns(), split="train", bag="bag", entity="member")
    assert train.format == "photon" and train.names == (("f", ""), ("f", "2"), ("g", ""))
    assert train.schema.offset == "offset" and entity_kind(train) == "strings"
    rows = [rows_from_table(read_table(train, f), train.schema) for f in train.files]
    assert [r.uid.tolist() for r in rows] == [[0, 1], [2]]  # numbered across the files
    np.testing.assert_array_equal(rows[0].X.toarray(), [[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(rows[1].X.toarray(), [[0.0, 0.0, 4.0]])
    assert rows[0].weight.tolist() == [1.0, 3.0] and rows[0].offset.tolist() == [0.0, 0.5]
    assert rows[0].entity.tolist() == ["m1", "m2"]
    validation = build_source(splits, Columns(), split="validation", bag="bag", entity="member")
    assert validation.names == train.names  # the train files' index; "new" is dropped
    (v,) = [rows_from_table(read_table(validation, f), validation.schema) for f in validation.files]
    np.testing.assert_array_equal(v.X.toarray(), [[0.0, 0.0, 6.0]])
    assert feature_names(splits, "bag", 3) == [("f", ""), ("f", "2"), ("g", "")]


def test_a_photon_feature_list_gives_the_index(splits, tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "bag").write_text("g\t\nf\t2\n")
    data = splits.model_copy(update={"feature_lists": str(tmp_path / "lists")})
    source = build_source(data, Columns(), split="train", bag="bag")
    (r, _) = [rows_from_table(read_table(source, f), source.schema) for f in source.files]
    np.testing.assert_array_equal(r.X.toarray(), [[0.0, 2.0], [0.0, 0.0]])  # ("f", "") dropped


def test_a_missing_field_names_the_file(splits):
    with pytest.raises(DataError, match=r"a\.avro.*no field 'user'"):
        build_source(splits, Columns(), split="train", bag="bag", entity="user")


def test_rows_without_a_response_read_for_scoring_only(splits, tmp_path):
    schema = {**SCHEMA, "fields": [f for f in SCHEMA["fields"] if f["name"] != "response"]}
    with (tmp_path / "u.avro").open("wb") as out:
        record = row("m9", 0.0, [feature("g", "", 1.0)])
        del record["response"]
        fastavro.writer(out, fastavro.parse_schema(schema), [record])
    data = splits.model_copy(update={"validation": str(tmp_path / "u.avro")})
    source = build_source(data, Columns(), split="validation", bag="bag", label_optional=True)
    r = rows_from_table(read_table(source, source.files[0]), source.schema)
    assert np.isnan(r.label).all() and r.X.toarray().tolist() == [[0.0, 0.0, 1.0]]
    with pytest.raises(DataError, match="u.avro.*response"):
        build_source(data, Columns(), split="validation", bag="bag")
