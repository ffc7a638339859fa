"""The common request, read column by column with numpy instead of value by value.

:func:`raymix.serving.requests.parse_rows` checks every value of every row in Python: ~30 us a
row of 70 features, a third of a second for a request of 10,000 rows. Most requests are
regular (every row an object with the same kinds of fields, numbers where numbers go), and for
those :func:`batch_fields` builds the same arrays from whole columns: one list comprehension
per field, one ``np.array`` per bag, the CSR structure by ``lexsort``.

It returns None at the first thing it does not read exactly as the checked path would (a
missing field, a bool, a string where a number goes, an unknown key, a feature given twice,
a value out of range...): the caller then reads the request row by row, which finds the
culprit and names it. So both paths accept the same requests and build the same arrays, bit
for bit (tests/serving/test_vectorised.py compares them).
"""

from __future__ import annotations

from itertools import chain, repeat

import numpy as np
import scipy.sparse as sp

from raymix.serving.model import Bag, Layout

NUMBERS = frozenset((float, int))
IDS = frozenset((int, str))


class _Absent:
    """A row without a uid (``None`` would be a uid given as null)."""


_ABSENT = _Absent()


def batch_fields(rows: list, layout: Layout, reserved: tuple[str, ...]) -> dict | None:
    """The fields of a :class:`~raymix.serving.requests.Batch` of ``rows``, or None."""
    n = len(rows)
    if not set(map(type, rows)) <= {dict}:
        return None
    columns = {c for bag in layout.bags.values() for c in bag.columns or ()}
    known = set(layout.bags) | columns | set(layout.entities) | set(layout.texts) | set(reserved)
    if not set().union(*rows) <= known:
        return None
    uid = [row.get("uid", _ABSENT) for row in rows]
    kinds = set(map(type, uid))
    if not kinds <= {int, str, _Absent}:  # a null uid is refused by the checked path
        return None
    if _Absent in kinds:
        uid = [None if u is _ABSENT else u for u in uid]
    offset = finite_numbers([row.get("offset", 0.0) for row in rows])
    if offset is None:
        return None
    entities = {}
    for column in layout.entities:
        ids = _field(rows, column)
        if ids is None or not set(map(type, ids)) <= IDS:
            return None
        entities[column] = np.asarray(ids, dtype=object)
    texts = {}
    for column in layout.texts:
        values = _field(rows, column)
        if values is None or not set(map(type, values)) <= {str}:
            return None
        texts[column] = values
    bags = {}
    for name, bag in layout.bags.items():
        X = _bag(rows, name, bag, n)
        if X is None:
            return None
        bags[name] = X
    return {
        "n": n,
        "uid": uid,
        "offset": offset,
        "bags": bags,
        "entities": entities,
        "texts": texts,
    }


def _field(rows: list[dict], name: str) -> list | None:
    try:
        return [row[name] for row in rows]
    except KeyError:
        return None


def finite_numbers(values: list) -> np.ndarray | None:
    """``values`` as float64 if every one is a finite int or float (not a bool), else None."""
    if not set(map(type, values)) <= NUMBERS:
        return None
    try:
        out = np.fromiter(values, np.float64, len(values))  # float(v) each, as the checks
    except OverflowError:  # an int beyond float64
        return None
    return out if np.isfinite(out).all() else None


def _bag(rows: list[dict], name: str, bag: Bag, n: int):
    if bag.columns:  # scalar columns, one feature each: a dense (n, k) array
        parts = []
        for column in bag.columns:
            values = _field(rows, column)
            part = None if values is None else finite_numbers(values)
            if part is None:
                return None
            parts.append(part)
        return np.stack(parts, axis=1) if parts else np.zeros((n, 0))
    given = _field(rows, name)
    if given is None:
        return None
    kinds = set(map(type, given))
    if kinds == {list}:
        return _from_lists(given, bag, n)
    if kinds == {dict}:
        return _from_dicts(given, bag, n)
    return None


def _from_lists(given: list[list], bag: Bag, n: int):
    if set(map(len, given)) != {bag.dim}:
        return None
    flat = finite_numbers(list(chain.from_iterable(given)))
    if flat is None:
        return None
    dense = flat.reshape(n, bag.dim)
    if bag.dense:
        return dense
    return csr_of_dense(dense, bag, n)


def csr_of_dense(dense: np.ndarray, bag: Bag, n: int):
    """A sparse bag given as lists: its non-zero values, as the row-by-row path keeps them."""
    r, j = np.nonzero(dense != 0.0)
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=ptr[1:])
    return sp.csr_matrix((dense[r, j], j.astype(index_type(bag)), ptr), shape=(n, bag.dim))


def _from_dicts(given: list[dict], bag: Bag, n: int):
    counts = np.fromiter(map(len, given), np.int64, n)
    keys = list(chain.from_iterable(given))
    values = finite_numbers(list(chain.from_iterable(d.values() for d in given)))
    if values is None:
        return None
    index = feature_indices(keys, bag)
    if index is None:
        return None
    return pairs_matrix(counts, index, values, bag)


def pairs_matrix(counts: np.ndarray, index: np.ndarray, values: np.ndarray, bag: Bag):
    """The bag's matrix of ``(feature index, value)`` pairs, ``counts[r]`` of them for row
    ``r`` in row order (any feature order; indices already in ``[0, dim)``): CSR with each
    row's features sorted (the checked path's order), or dense for a dense bag; None if a
    row gives a feature twice."""
    n = counts.size
    row = np.repeat(np.arange(n), counts)
    if not np.all((index[1:] > index[:-1]) | (row[1:] != row[:-1])):  # not yet in order
        order = np.lexsort((index, row))  # by row, then by feature: the checked path's order
        index, row, values = index[order], row[order], values[order]
        if np.any((index[1:] == index[:-1]) & (row[1:] == row[:-1])):  # a feature given twice
            return None
    if bag.dense:
        dense = np.zeros((n, bag.dim))
        dense[row, index] = values
        return dense
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return sp.csr_matrix((values, index.astype(index_type(bag)), ptr), shape=(n, bag.dim))


def feature_indices(keys: list[str], bag: Bag) -> np.ndarray | None:
    """Each key's feature index (a name of the feature list first, else a decimal index
    below ``dim``), or None if one is neither."""
    index = np.fromiter(map(bag.keys.get, keys, repeat(-1)), np.int64, len(keys))
    missing = np.flatnonzero(index < 0)
    if missing.size:
        digits = [keys[k] for k in missing.tolist()]
        joined = "".join(digits)
        if not (joined.isascii() and joined.isdigit()) or not all(digits):
            return None
        found = list(map(int, digits))
        if max(found) >= bag.dim:
            return None
        index[missing] = found
    return index


def index_type(bag: Bag):
    return np.int32 if bag.dim < 2**31 - 1 else np.int64
