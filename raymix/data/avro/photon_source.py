"""Photon ML's GAME Avro input as a split's files (``data.format: photon``, or ``*.avro``).

What :mod:`raymix.data.source` needs to read Photon files in the row convention
(:mod:`raymix.data.rows`): the fields and row counts of each file (every file is read through
the compiled reader of :mod:`raymix.data.avro.photon_input` when the split is checked, so a
bad file fails on the driver, naming it), a bag's ``(name, term)`` index, and one file as an
Arrow table with the bag as ``B_indices``/``B_values``.

- **Rows are numbered** across the split's files (Photon's ``uid`` is a free-form string, not
  raymix's int64 uid): the reader adds the uid column (``RowSchema.uid_from_row``).
- **A bag's index** is its Photon feature list, ``<feature_lists>/<bag>`` (``name<TAB>term``
  lines; feature ``j`` is line ``j``; features not in it are dropped, as Photon ML does), or,
  without one, the distinct ``(name, term)`` pairs of the **train** files, sorted, so that
  both splits and ``raymix score`` map a feature to the same index.
- A missing ``weight`` is 1, a missing ``offset`` 0 (Photon's defaults).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import fastavro
import numpy as np
import pyarrow as pa

from raymix import storage
from raymix.data.avro.photon_input import PhotonColumns, read_photon
from raymix.data.metadata import load_feature_list
from raymix.data.rows import RowSchema
from raymix.errors import DataError

PHOTON = "photon"
PHOTON_SUFFIXES = (".avro",)


def photon_columns(schema: RowSchema) -> PhotonColumns:
    """What the reader takes from a record for a coordinate's ``schema``."""
    return PhotonColumns(
        ids=(schema.entity,) if schema.entity else (),
        bags=(schema.bag,) if schema.bag else (),
        response=schema.label,
        weight=schema.weight,
        offset=schema.offset,
        uid=None,
    )


def photon_fields(path: str) -> dict[str, object]:
    """A Photon file's top-level fields and their Avro types, from its header only."""
    try:
        with storage.open_input(path) as f:
            schema = fastavro.reader(f).writer_schema
    except (OSError, ValueError, EOFError, fastavro.schema.SchemaParseException) as exc:
        raise DataError(f"not an Avro container file: {exc}", path=storage.shown(path)) from None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise DataError("not Photon ML input: the records are not Avro records", path=path)
    return {f["name"]: f["type"] for f in schema["fields"]}


def photon_entity_kind(path: str, entity: str) -> str:
    """``"integers"`` (an int or long id field) or ``"strings"``."""
    kind = photon_fields(path).get(entity)
    kinds = set(kind) if isinstance(kind, list) else {kind}
    return "integers" if kinds - {"null"} <= {"int", "long"} else "strings"


def check_photon_files(files: tuple[str, ...], schema: RowSchema, names) -> list[int]:
    """Read every file (compiled) for ``schema`` and return its rows; a bad file raises."""
    for path in files if not schema.label_optional else ():
        if schema.label not in (fields := photon_fields(path)):
            raise DataError(
                f"not Photon ML input: the records have no field {schema.label!r} "
                f"(fields: {', '.join(fields)})",
                path=storage.shown(path),
            )
    return [_rows_of(path, _stamp(path), photon_columns(schema), names) for path in files]


@functools.lru_cache(maxsize=256)
def _rows_of(path: str, stamp, columns: PhotonColumns, names) -> int:
    return photon_table(path, columns, names).num_rows


def _stamp(path: str):
    try:
        stat = os.stat(path)
        return stat.st_mtime_ns, stat.st_size
    except OSError:
        return None


def photon_names(
    bag: str, feature_lists: str | None, train_files: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """A bag's ``(name, term)`` per index: its Photon feature list, else the train files'."""
    if feature_lists:
        file = storage.join(feature_lists, bag) if storage.is_dir(feature_lists) else feature_lists
        if storage.is_file(file):
            return tuple(load_feature_list(file, "\t"))
    stamps = tuple(_stamp(f) for f in train_files)
    return _names_from_data(bag, train_files, stamps)


@functools.lru_cache(maxsize=64)
def _names_from_data(bag: str, files: tuple[str, ...], stamps):
    found: set[tuple[str, str]] = set()
    for path in files:
        bags = _with_other_bags(path, (bag,))
        columns = PhotonColumns((), bags, _a_number(path), weight=None, offset=None)
        empty: dict[str, list[tuple[str, str]] | None] = {other: [] for other in bags[1:]}
        rows = read_photon(path, columns, empty)
        found.update(rows.names[bag])
    return tuple(sorted(found))


def _a_number(path: str) -> str:
    """A numeric field: indexing a bag reads no label, but the reader reads one number."""
    numbers = {"int", "long", "float", "double", "boolean"}
    for name, kind in photon_fields(path).items():
        if (set(kind) if isinstance(kind, list) else {kind}) & numbers:
            return name
    raise DataError("not Photon ML input: the records have no numeric field", path=path)


def _with_other_bags(path: str, bags: tuple[str, ...]) -> tuple[str, ...]:
    """``bags`` and then the file's other array fields: the compiled reader walks every bag
    (it cannot skip an array unread), so the others are read into empty feature lists."""
    others = [
        name
        for name, kind in photon_fields(path).items()
        if isinstance(kind, dict) and kind.get("type") == "array" and name not in bags
    ]
    return (*bags, *others)


def photon_table(path: str, columns: PhotonColumns, names) -> pa.Table:
    """One Photon file in the row convention (no uid: the caller numbers the rows)."""
    wanted = columns.bags
    lists: dict[str, list[tuple[str, str]] | None] = {}
    lists.update((bag, []) for bag in _with_other_bags(path, wanted)[len(wanted) :])
    if wanted:
        lists[wanted[0]] = list(names)
    labelled = columns.response in photon_fields(path)  # unlabelled rows to score: no label
    response = columns.response if labelled else _a_number(path)
    rows = read_photon(
        path, dataclasses.replace(columns, bags=tuple(lists), response=response), lists
    )
    table: dict[str, pa.Array] = {columns.response: pa.array(rows.response)} if labelled else {}
    if columns.weight:
        table[columns.weight] = pa.array(rows.weight)
    if columns.offset:
        table[columns.offset] = pa.array(rows.offset)
    for name, ids in rows.ids.items():
        table[name] = pa.array(ids, pa.int64() if ids.dtype != object else pa.string())
    for bag in wanted:
        X = rows.bags[bag]
        X.sort_indices()
        offsets = pa.array(X.indptr.astype(np.int32))
        table[f"{bag}_indices"] = pa.ListArray.from_arrays(offsets, pa.array(X.indices, pa.int64()))
        table[f"{bag}_values"] = pa.ListArray.from_arrays(offsets, pa.array(X.data, pa.float64()))
    return pa.table(table)
