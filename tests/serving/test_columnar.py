"""A columnar body (JSON ``{"columns": ...}`` or an Arrow IPC stream) builds the batch the row
form builds from the same rows, bit for bit, and a bad one is refused in one line naming the
column and the row. No Ray."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pyarrow as pa
import pytest

from raymix.serving.columnar import ARROW_STREAM, Columns, parse_request, read_columns
from raymix.serving.requests import RequestError, parse_rows

from .rows import arrow_body, as_columns, ipc_stream
from .test_vectorised import LAYOUT, assert_identical, regular_rows


def rows_for(n: int, dicts: bool, seed: int = 1) -> list[dict]:
    """regular_rows with every field in every row (a column has a value a row); string ids."""
    rows = regular_rows(n, seed=seed, dicts=dicts)
    for k, row in enumerate(rows):
        row["uid"] = k
        row.setdefault("offset", 0.25 * k)
        row["user_id"] = str(row["user_id"])
    return rows


def read(body: bytes, content_type: str = "application/json"):
    given = parse_request(body, content_type)
    assert isinstance(given, Columns)
    return read_columns(given, LAYOUT)


@pytest.mark.parametrize("dense", ["lists", "pairs"])
@pytest.mark.parametrize("dicts", [False, True], ids=["lists", "dicts"])
def test_json_columns_build_the_row_forms_batch(dicts, dense):
    rows = rows_for(200, dicts)
    body = orjson.dumps({"columns": as_columns(rows, dense=dense)})
    assert_identical(read(body), parse_rows(rows, LAYOUT))


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("dicts", [False, True], ids=["lists", "dicts"])
def test_arrow_columns_build_the_row_forms_batch(dicts, chunk):
    rows = rows_for(200, dicts)
    fixed = {"per_user": 40} if not dicts else {}  # a sparse bag as fixed_size_list<double>[40]
    body = arrow_body(as_columns(rows), chunk=chunk, fixed=fixed)
    assert_identical(read(body, f"{ARROW_STREAM}; charset=binary"), parse_rows(rows, LAYOUT))
    assert_identical(read(body, "application/octet-stream"), parse_rows(rows, LAYOUT))


def test_float32_features_read_as_their_float64_values():
    """Features sent as float32 (as GDMix's TFRecords hold them; 43% smaller bodies) read as
    the same batch as float64 columns holding the float32-rounded values."""
    rows = rows_for(200, dicts=True)
    columns = as_columns(rows)

    def rounded(values: list) -> list:
        return [float(np.float32(v)) for v in values]

    wide = {
        name: ({**given, "values": [rounded(v) for v in given["values"]]} if isinstance(given, dict)
               else [rounded(v) for v in given] if isinstance(given[0], list) else given)
        for name, given in columns.items()
    }  # fmt: skip
    narrow = arrow_body(columns, number=pa.float32())
    assert len(narrow) < len(arrow_body(columns))
    assert_identical(read(narrow, ARROW_STREAM), read(arrow_body(wide), ARROW_STREAM))


def test_a_columnar_body_without_uids_or_offsets_gets_none_and_zero():
    rows = [
        {k: v for k, v in row.items() if k not in ("uid", "offset")} for row in rows_for(5, True)
    ]
    batch = read(orjson.dumps({"columns": as_columns(rows)}))
    assert batch.uid == [None] * 5 and batch.offset.tolist() == [0.0] * 5
    assert_identical(batch, parse_rows(rows, LAYOUT))


def indices(c: dict, bag: str) -> list:
    return c[bag]["indices"]


JSON_ERRORS = {
    "unknown column": (
        lambda c: c.update(other=[1] * 6),
        "columns.other: unknown column (expected",
    ),
    "missing entity": (lambda c: c.pop("item_id"), "columns.item_id: missing entity column"),
    "missing bag": (lambda c: c.pop("per_item"), "columns.per_item: missing bag"),
    "missing scalar": (lambda c: c.pop("price"), "columns.price: missing feature column"),
    "missing text": (lambda c: c.pop("title"), "columns.title: missing text column"),
    "ragged": (lambda c: c.update(age=[1.0] * 5), "columns.age: expected 6 rows (as columns."),
    "ragged pairs": (
        lambda c: c["per_item"].update(values=[[]] * 7),
        "columns.per_item.values: expected 6 rows",
    ),
    "wrong dimension": (
        lambda c: c["global"].__setitem__(3, [1.0] * 5),
        "columns.global[3]: expected 6 values, got 5",
    ),
    "a string value": (
        lambda c: c["global"][3].__setitem__(2, "x"),
        'columns.global[3][2]: expected a finite number, got "x"',
    ),
    "NaN": (
        lambda c: c["per_user"]["values"][2].__setitem__(1, float("nan")),
        "columns.per_user.values[2][1]: expected a finite number, got nan",
    ),
    "a bool offset": (
        lambda c: c["offset"].__setitem__(1, True),
        "columns.offset[1]: expected a finite number, got true",
    ),
    "a float id": (
        lambda c: c["user_id"].__setitem__(4, 1.5),
        "columns.user_id[4]: expected an integer or a string entity id, got 1.5",
    ),
    "a null uid": (
        lambda c: c["uid"].__setitem__(0, None),
        "columns.uid[0]: expected an integer or a string, got null",
    ),
    "index out of range": (
        lambda c: indices(c, "per_user")[1].__setitem__(0, 40),
        "columns.per_user.indices[1][0]: feature index 40 outside [0, 40)",
    ),
    "a negative index": (
        lambda c: indices(c, "per_user")[5].__setitem__(4, -1),
        "columns.per_user.indices[5][4]: feature index -1 outside [0, 40)",
    ),
    "a huge index": (
        lambda c: indices(c, "per_user")[5].__setitem__(0, 10**400),
        "columns.per_user.indices[5][0]: feature index 1000000",
    ),
    "a feature twice": (
        lambda c: indices(c, "per_user")[2].__setitem__(1, indices(c, "per_user")[2][0]),
        "columns.per_user.indices[2]: feature ",
    ),
    "no such feature": (
        lambda c: indices(c, "per_item")[0].__setitem__(0, "c"),
        'columns.per_item.indices[0][0]: no such feature "c"',
    ),
    "names and indices mixed": (
        lambda c: indices(c, "per_user")[3].__setitem__(0, "7"),
        'columns.per_user.indices[3][0]: expected all integer indices or all feature names, got "7"',
    ),
    "pairs and values disagree": (
        lambda c: c["per_user"]["values"].__setitem__(0, [1.0] * 6),
        "columns.per_user.values[0]: expected 5 values (one per index), got 6",
    ),
    "a row not a list": (
        lambda c: c["global"].__setitem__(0, 3),
        "columns.global[0]: expected a list of numbers, got 3",
    ),
    "a text not a string": (
        lambda c: c["title"].__setitem__(0, 3),
        "columns.title[0]: expected a string, got 3",
    ),
    "pairs without values": (
        lambda c: c["per_user"].pop("values"),
        'columns.per_user: expected {"indices": [...], "values": [...]}',
    ),
    "a column not a list": (lambda c: c.update(age=3.0), "columns.age: expected a list"),
    "pairs for an entity": (
        lambda c: c.update(user_id=c["per_user"]),
        "columns.user_id: expected a list, one value a row",
    ),
}


@pytest.mark.parametrize("case", JSON_ERRORS.values(), ids=JSON_ERRORS.keys())
def test_a_bad_json_column_is_refused_naming_the_column_and_the_row(case):
    change, reason = case
    columns = as_columns(rows_for(6, dicts=True))
    columns["global"] = as_columns(rows_for(6, dicts=False))["global"]  # lists
    change(columns)
    with pytest.raises(RequestError) as caught:
        read(json.dumps({"columns": columns}).encode())  # json: NaN and huge ints as given
    message = caught.value.message
    assert message.startswith(reason), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"columns": [1]}, "columns: expected a non-empty object"),
        ({"columns": {}}, "columns: expected a non-empty object"),
        ({"columns": {"age": []}}, "columns: expected 1 to 10000 rows, got 0"),
        ({"columns": {"age": [1.0]}, "x": 1}, "x: unknown field"),
        ({"columns": {"age": [1.0] * 10_001}}, "columns: expected 1 to 10000 rows, got 10001"),
    ],
)
def test_a_bad_columns_object_is_refused(body, reason):
    with pytest.raises(RequestError, match=f"^{reason}"):
        parse_request(orjson.dumps(body))


def arrow_replacing(name: str, array) -> bytes:
    """A good Arrow body of 6 rows with column ``name`` replaced by ``array``."""
    body = arrow_body(as_columns(rows_for(6, dicts=False)))
    table = pa.ipc.open_stream(body).read_all()
    return ipc_stream(table.set_column(table.schema.get_field_index(name), name, array))


ARROW_ERRORS = {
    "a null id": (
        "user_id",
        pa.array(["1", "2", None, "4", "5", "6"]),
        "columns.user_id[2]: null",
    ),
    "NaN": (
        "global",
        pa.array([[1.0] * 6, [1.0, 2.0, 3.0, np.nan, 1.0, 1.0]] + [[0.0] * 6] * 4),
        "columns.global[1][3]: expected a finite number, got nan",
    ),
    "a null value": (
        "global",
        pa.array([[1.0] * 6, [1.0, None, 3.0, 1.0, 1.0, 1.0]] + [[0.0] * 6] * 4),
        "columns.global[1][1]: expected a finite number, got null",
    ),
    "strings for a bag": ("global", pa.array(["a"] * 6), "columns.global: expected a list column"),
    "wrong dimension": (
        "global",
        pa.array([[1.0] * 5] * 6, pa.list_(pa.float64(), 5)),
        "columns.global[0]: expected 6 values, got 5",
    ),
    "bools for numbers": (
        "age",
        pa.array([True] * 6),
        "columns.age: expected numbers, got bool",
    ),
    "floats for ids": ("item_id", pa.array([1.5] * 6), "columns.item_id: expected a column of"),
    "a struct not of pairs": (
        "per_user",
        pa.StructArray.from_arrays([pa.array([[1]] * 6)], names=["indices"]),
        "columns.per_user: expected struct<indices, values>",
    ),
}


@pytest.mark.parametrize("case", ARROW_ERRORS.values(), ids=ARROW_ERRORS.keys())
def test_a_bad_arrow_column_is_refused_naming_the_column_and_the_row(case):
    name, array, reason = case
    with pytest.raises(RequestError) as caught:
        read(arrow_replacing(name, array), ARROW_STREAM)
    assert caught.value.message.startswith(reason), caught.value.message


def test_a_body_that_is_not_arrow_is_refused():
    with pytest.raises(RequestError, match=r"^body: not an Arrow IPC stream \("):
        parse_request(b'{"columns": {"age": [1]}}', ARROW_STREAM)
    with pytest.raises(RequestError, match=r"^body: not an Arrow IPC stream"):
        parse_request(arrow_replacing("age", pa.array([1.0] * 6))[:-40], ARROW_STREAM)
