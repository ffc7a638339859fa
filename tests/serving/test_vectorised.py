"""The column-by-column reading of a request builds what the row-by-row checks build, bit for
bit, and gives up (to the checks, which name the culprit) on anything it does not read
exactly as they do. No Ray."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from raymix.serving.model import Bag, Layout
from raymix.serving.requests import RESERVED, RequestError, checked_rows, parse_rows
from raymix.serving.vectorised import batch_fields

LAYOUT = Layout(
    bags={
        "global": Bag("global", 6, dense=True, features={"age": 0, "genre,Drama": 1, "3": 5}),
        "per_user": Bag("per_user", 40, dense=False),
        "per_item": Bag("per_item", 9, dense=False, features={"a": 2, "b": 7}),
        "age+price": Bag("age+price", 2, dense=True, columns=("age", "price")),
    },
    entities=("user_id", "item_id"),
    texts=("title",),
)


def regular_rows(n: int, seed: int, dicts: bool) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        per_user = {str(j): float(rng.normal()) for j in rng.choice(40, 5, replace=False)}
        per_item = {"a": 1, "b": float(rng.normal()), str(int(rng.integers(0, 2))): 0.0}
        dense = [float(v) if v > 0 else 0 for v in rng.normal(size=6)]
        row = {
            "user_id": int(rng.integers(100)) if k % 3 else f"u{k}",
            "item_id": str(int(rng.integers(10))),
            "global": {"age": 0.5, "genre,Drama": 1, "3": -2.0, "2": 7} if dicts else dense,
            "per_user": per_user
            if dicts
            else [float(v) if v > 1 else 0.0 for v in rng.normal(size=40)],
            "per_item": per_item,
            "age": float(rng.normal()),
            "price": int(rng.integers(0, 50)),
            "title": f"item {k}",
        }
        if k % 2:
            row["uid"] = k if k % 4 == 1 else f"r{k}"
        if k % 5 == 0:
            row["offset"] = float(rng.normal())
        rows.append(row)
    return rows


def assert_identical(a, b) -> None:
    assert a.n == b.n and a.uid == b.uid
    assert a.offset.dtype == b.offset.dtype and np.array_equal(a.offset, b.offset)
    assert a.bags.keys() == b.bags.keys()
    for name, x in a.bags.items():
        y = b.bags[name]
        assert sp.issparse(x) == sp.issparse(y), name
        if sp.issparse(x):
            for part in ("indptr", "indices", "data"):
                u, v = getattr(x, part), getattr(y, part)
                assert u.dtype == v.dtype and np.array_equal(u, v), (name, part)
            assert x.shape == y.shape
        else:
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    for column, ids in a.entities.items():
        assert ids.dtype == object and ids.tolist() == b.entities[column].tolist()
        assert [type(v) for v in ids] == [type(v) for v in b.entities[column]]
    assert a.texts == b.texts


@pytest.mark.parametrize("dicts", [False, True], ids=["lists", "dicts"])
def test_a_regular_request_is_read_column_by_column_as_row_by_row(dicts):
    rows = regular_rows(200, seed=1, dicts=dicts)
    assert batch_fields(rows, LAYOUT, RESERVED) is not None  # the vectorised path ran
    assert_identical(parse_rows(rows, LAYOUT), checked_rows(rows, LAYOUT))


def edited(change) -> list[dict]:
    rows = regular_rows(6, seed=2, dicts=True)
    change(rows[3])
    return rows


IRREGULAR = {
    "a bool value": lambda r: r["per_user"].update({"1": True}),
    "a bool column": lambda r: r.update(age=False),
    "a string value": lambda r: r["global"].update(age="1"),
    "a null uid": lambda r: r.update(uid=None),
    "a bool uid": lambda r: r.update(uid=True),
    "a float entity": lambda r: r.update(user_id=1.0),
    "a missing bag": lambda r: r.pop("per_item"),
    "a missing column": lambda r: r.pop("price"),
    "a missing entity": lambda r: r.pop("item_id"),
    "a missing text": lambda r: r.pop("title"),
    "an unknown field": lambda r: r.update(other=1),
    "a feature twice": lambda r: r["global"].update({"0": 1.0}),
    "an index out of range": lambda r: r["per_user"].update({"40": 1.0}),
    "a key neither name nor index": lambda r: r["per_item"].update({"c": 1.0}),
    "a signed index": lambda r: r["per_user"].update({"-1": 1.0}),
    "an empty key": lambda r: r["per_user"].update({"": 1.0}),
    "a non-finite value": lambda r: r["per_user"].update({"2": float("nan")}),
    "an int beyond float64": lambda r: r.update(offset=10**400),
    "a short list": lambda r: r.__setitem__("global", [1.0] * 5),
    "a null offset": lambda r: r.update(offset=None),
}


@pytest.mark.parametrize("change", IRREGULAR.values(), ids=IRREGULAR.keys())
def test_an_irregular_request_is_left_to_the_checks(change):
    rows = edited(change)
    assert batch_fields(rows, LAYOUT, RESERVED) is None
    with pytest.raises(RequestError, match=r"^rows\[3\]"):
        parse_rows(rows, LAYOUT)


def test_rows_that_mix_lists_and_objects_are_read_row_by_row():
    rows = regular_rows(4, seed=3, dicts=True)
    rows[1]["global"] = [0.0, 1.0, 0.0, 0.0, 2.5, 0.0]
    assert batch_fields(rows, LAYOUT, RESERVED) is None
    assert parse_rows(rows, LAYOUT).bags["global"][1].tolist() == rows[1]["global"]
