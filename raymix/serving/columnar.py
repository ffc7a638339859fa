"""``POST /predict`` bodies given column by column: JSON ``{"columns": {...}}`` or an Arrow IPC
stream (``Content-Type: application/vnd.apache.arrow.stream``), read into the same
:class:`~raymix.serving.requests.Batch` as the row form, with numpy, no Python object per
value. The columns have the row form's names (:mod:`raymix.serving.requests`), one value a
row; every column has the same length, 1 to :data:`~raymix.serving.requests.MAX_ROWS`::

    {"columns": {
      "uid": [17, 18],                            optional, echoed back
      "offset": [0.25, 0.0],                      optional, default 0
      "user_id": [42, 43], "movie_id": ["7", "9"],  every entity column of the run
      "global": [[0.3, 0.0, 1.0], [0.0, 2.0, 0.5]],   every bag: a list of dim values a row ...
      "per_user": {"indices": [[0, 5], []],         ... or its (feature, value) pairs a row:
                   "values": [[0.1, 2.0], []]},     indices all integers, or all the row form's
                                                    keys (a name of the feature list, a decimal)
      "age": [31, 40], "price": [9.5, 3.0],       a bag of scalar columns: a column each
      "title": ["toy story", "heat"]}}            every text column (deep coordinates)

An Arrow stream (known by its Content-Type, or by its first bytes) holds the same columns
(any number of record batches): numbers as integer or floating columns; ids and uids as
integer or string columns; a bag as a ``list`` (or ``fixed_size_list``) of numbers, or a
``struct<indices: list<int|string>, values: list<number>>``; texts as strings. No nulls.

A column the run does not know, a missing one, a ragged length, a wrong dimension, a value
that is not a finite number, an index out of range or given twice is refused with a
:class:`~raymix.serving.requests.RequestError` naming the column and the row, e.g.
``columns.global[3]: expected 44 values, got 2``. The response of a columnar request is
columnar too (:mod:`raymix.serving.responses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymix.serving.model import Bag, Layout
from raymix.serving.requests import (
    MAX_ROWS,
    RESERVED,
    Batch,
    RequestError,
    body_rows,
    json_body,
    show,
)
from raymix.serving.vectorised import csr_of_dense, feature_indices, finite_numbers, pairs_matrix

ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_MARKER = b"\xff\xff\xff\xff"  # an Arrow IPC stream's first bytes
PAIRS = ("indices", "values")


@dataclass(frozen=True)
class Columns:
    """A columnar body of ``n`` rows: ``columns[name]`` a JSON list (a bag's pairs: a dict
    ``{"indices", "values"}``) or an Arrow array."""

    n: int
    columns: dict


def parse_request(body: bytes | str, content_type: str = "") -> list | Columns:
    """A row-form body's rows, or a columnar body's :class:`Columns`: an Arrow stream when
    ``content_type`` says so or the body starts as one (its continuation marker, never JSON)."""
    if isinstance(body, str):
        body = body.encode()
    if content_type.split(";")[0].strip().lower() == ARROW_STREAM or body[:4] == ARROW_MARKER:
        return arrow_columns(body)
    data = json_body(body)
    if isinstance(data, dict) and "columns" in data:
        return json_columns(data)
    return body_rows(data)


def arrow_columns(body: bytes) -> Columns:
    try:
        table = pa.ipc.open_stream(body).read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise RequestError(f"not an Arrow IPC stream ({_line(str(exc))})", "body") from None
    names = table.column_names
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise RequestError("column given twice", f"columns.{twice[0]}")
    columns = {}
    for name in names:
        column = table.column(name).combine_chunks()
        columns[name] = (
            column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
        )
    return _counted(columns)


def json_columns(data: dict) -> Columns:
    unknown = sorted(set(data) - {"columns"})
    if unknown:
        raise RequestError("unknown field", unknown[0])
    columns = data["columns"]
    if not isinstance(columns, dict) or not columns:
        raise RequestError("expected a non-empty object {name: [value, ...]}", "columns")
    for name, column in columns.items():
        if isinstance(column, dict):
            if set(column) != set(PAIRS):
                raise RequestError(
                    'expected {"indices": [...], "values": [...]}', f"columns.{name}"
                )
            for part in PAIRS:
                if not isinstance(column[part], list):
                    raise RequestError("expected a list, one item a row", f"columns.{name}.{part}")
        elif not isinstance(column, list):
            raise RequestError("expected a list, one value a row", f"columns.{name}")
    return _counted(columns)


def _counted(columns: dict) -> Columns:
    """``columns`` and their common length, checked."""
    n = None
    for name, column in columns.items():
        parts = [(f"{name}.{p}", column[p]) for p in PAIRS] if isinstance(column, dict) else []
        for where, part in parts or [(name, column)]:
            if n is None:
                n, first = len(part), where
            elif len(part) != n:
                raise RequestError(
                    f"expected {n} rows (as columns.{first}), got {len(part)}", f"columns.{where}"
                )
    if not n or n > MAX_ROWS:
        raise RequestError(f"expected 1 to {MAX_ROWS} rows, got {n or 0}", "columns")
    return Columns(n, columns)


def read_columns(given: Columns, layout: Layout) -> Batch:
    """Check ``given`` against ``layout`` and build the :class:`Batch` the row form builds."""
    n, columns = given.n, given.columns
    scalar = [c for bag in layout.bags.values() for c in bag.columns or ()]
    bags = [name for name, bag in layout.bags.items() if not bag.columns]
    known = [*layout.entities, *bags, *scalar, *layout.texts, *RESERVED]
    for name in columns:
        if name not in known:
            raise RequestError(f"unknown column (expected {', '.join(known)})", f"columns.{name}")

    def column(name: str, what: str) -> tuple[Any, str]:
        if name not in columns:
            raise RequestError(f"missing {what}", f"columns.{name}")
        if what != "bag" and isinstance(columns[name], dict):  # pairs are for bags alone
            raise RequestError("expected a list, one value a row", f"columns.{name}")
        return columns[name], f"columns.{name}"

    uid = _ids(*column("uid", ""), "an integer or a string").tolist() if "uid" in columns else None
    out = {}
    for name, bag in layout.bags.items():
        if bag.columns:
            parts = [_numbers(*column(c, "feature column")) for c in bag.columns]
            out[name] = np.stack(parts, axis=1) if parts else np.zeros((n, 0))
        else:
            out[name] = _bag(*column(name, "bag"), bag, n)
    return Batch(
        n=n,
        uid=uid if uid is not None else [None] * n,
        offset=_numbers(*column("offset", "")) if "offset" in columns else np.zeros(n),
        bags=out,
        entities={
            c: _ids(*column(c, "entity column"), "an integer or a string entity id")
            for c in layout.entities
        },
        texts={c: _strings(*column(c, "text column")) for c in layout.texts},
    )


def _bag(column, where: str, bag: Bag, n: int):
    if isinstance(column, dict | pa.StructArray):
        return _pairs(column, where, bag)
    lengths, flat = _number_lists(column, where)
    wrong = np.flatnonzero(lengths != bag.dim)
    if wrong.size:
        r = int(wrong[0])
        raise RequestError(f"expected {bag.dim} values, got {lengths[r]}", f"{where}[{r}]")
    dense = flat.reshape(n, bag.dim)
    return dense if bag.dense else csr_of_dense(dense, bag, n)


def _pairs(column, where: str, bag: Bag):
    if isinstance(column, pa.StructArray):
        _no_nulls(column, where)
        names = [column.type.field(k).name for k in range(column.type.num_fields)]
        if sorted(names) != sorted(PAIRS):
            raise RequestError(f"expected struct<indices, values>, got {column.type}", where)
        column = dict(zip(names, column.flatten(), strict=True))
    lengths, index = _index_lists(column["indices"], f"{where}.indices", bag)
    counts, values = _number_lists(column["values"], f"{where}.values")
    wrong = np.flatnonzero(lengths != counts)
    if wrong.size:
        r = int(wrong[0])
        raise RequestError(
            f"expected {lengths[r]} values (one per index), got {counts[r]}", f"{where}.values[{r}]"
        )
    X = pairs_matrix(lengths, index, values, bag)
    if X is None:  # a feature given twice: the first row that does
        row = np.repeat(np.arange(lengths.size), lengths)
        order = np.lexsort((index, row))
        i, rows = index[order], row[order]
        k = int(np.argmax((i[1:] == i[:-1]) & (rows[1:] == rows[:-1])))
        raise RequestError(f"feature {i[k]} given twice", f"{where}.indices[{rows[k]}]")
    return X


def _numbers(column, where: str) -> np.ndarray:
    """A column of one finite number a row, as float64."""
    if isinstance(column, list):
        out = finite_numbers(column)
        if out is None:
            r = _first_bad_number(column)
            raise RequestError(f"expected a finite number, got {show(column[r])}", f"{where}[{r}]")
        return out
    _numeric(column.type, where, "numbers")
    return _finite(column, where, None)


def _number_lists(column, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A column of a list of finite numbers a row: each row's length and all the values."""
    if isinstance(column, list):
        lengths = _lengths(column, where, "numbers")
        flat = list(chain.from_iterable(column))
        values = finite_numbers(flat)
        if values is None:
            p = _first_bad_number(flat)
            raise RequestError(
                f"expected a finite number, got {show(flat[p])}", _at(where, lengths, p)
            )
        return lengths, values
    _list_type(column, where)
    _numeric(column.type.value_type, where, "lists of numbers")
    lengths = _arrow_lengths(column, where)
    return lengths, _finite(pc.list_flatten(column), where, lengths)


def _index_lists(column, where: str, bag: Bag) -> tuple[np.ndarray, np.ndarray]:
    """A column of a list of feature indices (or the row form's keys) a row."""
    if isinstance(column, list):
        lengths = _lengths(column, where, "indices")
        flat = list(chain.from_iterable(column))
    else:
        _list_type(column, where)
        lengths = _arrow_lengths(column, where)
        flat_array = pc.list_flatten(column)
        if flat_array.null_count:
            p = int(np.flatnonzero(flat_array.is_null().to_numpy(zero_copy_only=False))[0])
            raise RequestError("expected a feature index, got null", _at(where, lengths, p))
        kind = flat_array.type
        if not (
            pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
        ):
            raise RequestError(f"expected lists of integers or strings, got {column.type}", where)
        if pa.types.is_integer(kind):
            return lengths, _in_range(flat_array.to_numpy().astype(np.int64), where, lengths, bag)
        flat = flat_array.to_pylist()
    kinds = set(map(type, flat))
    if kinds <= {int}:
        try:
            index = np.fromiter(flat, np.int64, len(flat))
        except OverflowError:  # an index beyond int64
            index = np.array([j if 0 <= j < bag.dim else -1 for j in flat], dtype=np.int64)
        return lengths, _in_range(index, where, lengths, bag, flat)
    if kinds == {str}:
        found = feature_indices(flat, bag)
        if found is not None:
            return lengths, found
        p = next(k for k, key in enumerate(flat) if feature_indices([key], bag) is None)
        raise RequestError(f"no such feature {show(flat[p])}", _at(where, lengths, p))
    p = next(
        k
        for k, key in enumerate(flat)
        if type(key) is not type(flat[0]) or type(key) not in (int, str)
    )
    raise RequestError(
        f"expected all integer indices or all feature names, got {show(flat[p])}",
        _at(where, lengths, p),
    )


def _in_range(index: np.ndarray, where: str, lengths: np.ndarray, bag: Bag, given=None):
    """``index`` if every one is in ``[0, dim)``; ``given``: the values as the request gave
    them (named in the message)."""
    bad = np.flatnonzero((index < 0) | (index >= bag.dim))
    if bad.size:
        p = int(bad[0])
        j = index[p] if given is None else show(given[p])
        raise RequestError(f"feature index {j} outside [0, {bag.dim})", _at(where, lengths, p))
    return index


def _ids(column, where: str, what: str) -> np.ndarray:
    """A column of int or string ids, as an object array of Python ints and strings."""
    if isinstance(column, list):
        if set(map(type, column)) - {int, str}:
            r = next(r for r, v in enumerate(column) if type(v) not in (int, str))
            raise RequestError(f"expected {what}, got {show(column[r])}", f"{where}[{r}]")
        values = column
    else:
        kind = column.type
        if not (
            pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
        ):
            raise RequestError(f"expected a column of integers or strings, got {kind}", where)
        _no_nulls(column, where)
        values = column.to_pylist()
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _strings(column, where: str) -> list[str]:
    if isinstance(column, list):
        if set(map(type, column)) - {str}:
            r = next(r for r, v in enumerate(column) if type(v) is not str)
            raise RequestError(f"expected a string, got {show(column[r])}", f"{where}[{r}]")
        return column
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise RequestError(f"expected a column of strings, got {column.type}", where)
    _no_nulls(column, where)
    return column.to_pylist()


def _lengths(column: list, where: str, what: str) -> np.ndarray:
    if set(map(type, column)) - {list}:
        r = next(r for r, v in enumerate(column) if type(v) is not list)
        raise RequestError(f"expected a list of {what}, got {show(column[r])}", f"{where}[{r}]")
    return np.fromiter(map(len, column), np.int64, len(column))


def _arrow_lengths(column: pa.Array, where: str) -> np.ndarray:
    _no_nulls(column, where)
    return pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)


def _finite(values: pa.Array, where: str, lengths: np.ndarray | None) -> np.ndarray:
    """Arrow numbers as float64 (a copy), every one present and finite."""
    if values.null_count:
        p = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise RequestError("expected a finite number, got null", _at(where, lengths, p))
    out = np.array(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        p = int(bad[0])
        raise RequestError(
            f"expected a finite number, got {float(out[p])!r}", _at(where, lengths, p)
        )
    return out


def _numeric(kind: pa.DataType, where: str, what: str) -> None:
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        raise RequestError(f"expected {what}, got {kind}", where)


def _list_type(column: pa.Array, where: str) -> None:
    kind = column.type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        raise RequestError(f"expected a list column, got {kind}", where)


def _no_nulls(column: pa.Array, where: str) -> None:
    if column.null_count:
        r = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise RequestError("null", f"{where}[{r}]")


def _at(where: str, lengths: np.ndarray | None, p: int) -> str:
    """The field of the ``p``-th value of a flattened list column: ``where[row][k]``
    (``where[p]`` for a column of one value a row, ``lengths`` None)."""
    if lengths is None:
        return f"{where}[{p}]"
    ends = np.cumsum(lengths)
    r = int(np.searchsorted(ends, p, side="right"))
    return f"{where}[{r}][{p - (int(ends[r - 1]) if r else 0)}]"


def _first_bad_number(values: list) -> int:
    return next(k for k, v in enumerate(values) if finite_numbers([v]) is None)


def _line(text: str) -> str:
    return " ".join(text.split())
