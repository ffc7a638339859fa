"""Compiled reader of Photon ML's GAME input data (Avro records with feature bags).

Photon ML keeps training data as Avro records of any schema with entity-id columns, a
``response`` (and optional ``weight``, ``offset``, ``uid``) and feature bags: arrays of
``{name, term, value}`` records (``term`` a string or ``["null", "string"]``; null is ``""``).
The writer schema is flattened into a program (see :mod:`raymix.data.avro.photon_kernels`),
every block of the container (framed and inflated by :mod:`raymix.data.avro.model_reader`'s
container functions) is decoded by one compiled walk, and ``(name, term)`` pairs become
feature indices in bulk with Arrow's hash lookup, so no Python loop runs per record.

A bag's features are mapped through its feature list (``names[j]`` is feature ``j``'s
``(name, term)``, as :func:`raymix.data.metadata.load_feature_list` reads a ``name<TAB>term``
file). **Policy for a feature not in the list: it is dropped** (what Photon ML does with
features outside its index map), and the count of dropped values is returned per bag. With no
list, the bag's index is built from the data: its distinct pairs, sorted.

Bad input (not Avro, truncated, a corrupt block, a schema without a named field, a field of
the wrong type) raises :class:`~raymix.errors.DataError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from raymix import storage
from raymix.data.avro.model_reader import container_blocks, container_header
from raymix.data.avro.model_reader_kernels import (
    BAD_UNION,
    NEGATIVE,
    OK,
    REASONS,
)
from raymix.data.avro.photon_kernels import (
    I_NAME,
    I_SKIP,
    I_TERM,
    I_VALUE,
    R_BAG,
    R_INT_ID,
    R_NUMBER,
    R_SKIP,
    R_STR_ID,
    T_BAG,
    T_BOOL,
    T_DOUBLE,
    T_FLOAT,
    T_LONG,
    T_NULL,
    T_STRING,
    T_UNION,
    decode_block,
)
from raymix.errors import DataError

_CODECS = ("null", "deflate")
_PRIMITIVE = {
    "null": T_NULL,
    "boolean": T_BOOL,
    "int": T_LONG,
    "long": T_LONG,
    "float": T_FLOAT,
    "double": T_DOUBLE,
    "string": T_STRING,
    "bytes": T_STRING,
}
_NUMERIC = (T_BOOL, T_LONG, T_FLOAT, T_DOUBLE)
_MAX_BRANCHES = 8
_REASONS = {  # a Photon record's lengths are of strings and arrays, its unions typed
    **REASONS,
    NEGATIVE: "a negative length",
    BAD_UNION: "a union branch out of range or of the wrong type",
}


@dataclass(frozen=True)
class PhotonColumns:
    """What to read from a Photon ML record: id columns, the label fields, the bags."""

    ids: tuple[str, ...]
    bags: tuple[str, ...]
    response: str = "response"
    weight: str | None = "weight"
    offset: str | None = "offset"
    uid: str | None = "uid"


@dataclass
class PhotonRows:
    """A Photon ML file's rows: ids (int64 or str numpy arrays), labels, one CSR per bag."""

    ids: dict[str, np.ndarray]
    response: np.ndarray
    weight: np.ndarray
    offset: np.ndarray
    uid: np.ndarray | None
    bags: dict[str, sp.csr_matrix]
    names: dict[str, list[tuple[str, str]]]
    dropped: dict[str, int]


def _primitive(schema, where: str) -> tuple[int, list[int]]:
    """(type code, union branch codes) of a primitive or a union of primitives."""
    if isinstance(schema, list):
        branches = [_primitive(s, where)[0] for s in schema]
        if T_UNION in branches or T_BAG in branches or len(branches) > _MAX_BRANCHES:
            raise ValueError(f"{where}: an unsupported union")
        return T_UNION, branches
    kind = schema.get("type") if isinstance(schema, dict) else schema
    if isinstance(schema, dict) and "logicalType" in schema and kind not in ("int", "long"):
        raise ValueError(f"{where}: logical type {schema['logicalType']!r} is not supported")
    if kind not in _PRIMITIVE:
        raise ValueError(f"{where}: type {kind!r} is not supported")
    return _PRIMITIVE[kind], []


def _program(schema: Any, columns: PhotonColumns) -> dict[str, Any]:
    """The flattened program of a parsed (expanded) writer schema."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("the writer schema is not a record")
    fields = {f["name"]: f for f in schema["fields"]}
    wanted = [columns.response, *columns.ids, *columns.bags]
    for name in wanted:
        if name not in fields:
            raise ValueError(f"the records have no field {name!r} (fields: {', '.join(fields)})")
    n = len(schema["fields"])
    nb = max(len(columns.bags), 1)
    prog: dict[str, Any] = {
        "ftype": np.zeros(n, np.int64),
        "fnb": np.zeros(n, np.int64),
        "fbr": np.zeros((n, _MAX_BRANCHES), np.int64),
        "frole": np.zeros(n, np.int64),
        "fslot": np.zeros(n, np.int64),
        "itype": np.full((nb, 4), -1, np.int64),
        "inb": np.zeros((nb, 4), np.int64),
        "ibr": np.zeros((nb, 4, _MAX_BRANCHES), np.int64),
        "irole": np.zeros((nb, 4), np.int64),
    }
    numbers = [columns.response, columns.weight, columns.offset]
    int_ids: list[str] = []
    str_ids: list[str] = []
    for f, field in enumerate(schema["fields"]):
        name, ftype = field["name"], field["type"]
        if name in columns.bags:
            prog["ftype"][f] = T_BAG
            prog["fslot"][f] = columns.bags.index(name)
            prog["frole"][f] = R_BAG
            _bag_item(ftype, columns.bags.index(name), name, prog)
            continue
        if isinstance(ftype, dict) and ftype.get("type") in (
            "record",
            "array",
            "map",
            "enum",
            "fixed",
        ):
            if name in wanted or name in numbers or name == columns.uid:
                raise ValueError(f"field {name!r}: a {ftype.get('type')} is not a number or an id")
            raise ValueError(f"field {name!r}: a {ftype.get('type')} cannot be skipped")
        t, branches = _primitive(ftype, f"field {name!r}")
        prog["ftype"][f] = t
        prog["fnb"][f] = len(branches)
        prog["fbr"][f, : len(branches)] = branches
        kinds = set(branches) if t == T_UNION else {t}
        if name in numbers:
            if not kinds & set(_NUMERIC) or kinds - set(_NUMERIC) - {T_NULL, T_STRING}:
                raise ValueError(f"field {name!r}: not a number")
            prog["frole"][f], prog["fslot"][f] = R_NUMBER, numbers.index(name)
        elif name in columns.ids or name == columns.uid:
            if kinds <= {T_LONG, T_NULL} and name != columns.uid:
                prog["frole"][f], prog["fslot"][f] = R_INT_ID, len(int_ids)
                int_ids.append(name)
            elif kinds <= {T_STRING, T_NULL} or name == columns.uid:
                prog["frole"][f], prog["fslot"][f] = R_STR_ID, len(str_ids)
                str_ids.append(name)
            else:
                raise ValueError(f"field {name!r}: an id must be an int, a long or a string")
        else:
            prog["frole"][f] = R_SKIP
    prog["int_ids"], prog["str_ids"] = int_ids, str_ids
    return prog


def _bag_item(schema, bag: int, name: str, prog: dict) -> None:
    items = (
        schema.get("items") if isinstance(schema, dict) and schema.get("type") == "array" else None
    )
    if not isinstance(items, dict) or items.get("type") != "record":
        raise ValueError(f"bag {name!r}: not an array of {{name, term, value}} records")
    found = {f["name"] for f in items["fields"]}
    if not {"name", "value"} <= found or len(items["fields"]) > 4:
        raise ValueError(
            f"bag {name!r}: items need fields name, term, value (have {', '.join(found)})"
        )
    roles = {"name": I_NAME, "term": I_TERM, "value": I_VALUE}
    for k, field in enumerate(items["fields"]):
        t, branches = _primitive(field["type"], f"bag {name!r} field {field['name']!r}")
        prog["itype"][bag, k], prog["inb"][bag, k] = t, len(branches)
        prog["ibr"][bag, k, : len(branches)] = branches
        prog["irole"][bag, k] = roles.get(field["name"], I_SKIP)


def read_photon(
    path: str | Path,
    columns: PhotonColumns,
    feature_lists: dict[str, list[tuple[str, str]] | None] | None = None,
) -> PhotonRows:
    """Read one Photon ML GAME input file into :class:`PhotonRows`."""
    lists = feature_lists or {}
    try:
        raw = storage.read_bytes(path)
    except OSError as exc:
        raise DataError(f"cannot read Photon Avro file: {exc}", path=str(path)) from None
    schema_json, codec, sync, pos = container_header(raw, Path(path))
    if codec not in _CODECS:
        raise DataError(f"Avro codec {codec!r} is not supported (null, deflate)", path=str(path))
    try:
        schema = fastavro.parse_schema(json.loads(schema_json or "null"), expand=True)
        prog = _program(schema, columns)
    except (ValueError, TypeError, fastavro.schema.SchemaParseException) as exc:
        raise DataError(f"not Photon ML input: {exc}", path=str(path)) from None
    blocks = [_decode_block(data, count, start, prog, len(columns.bags), path)
              for start, count, data in container_blocks(raw, pos, sync, codec, Path(path))]  # fmt: skip
    return _assemble(blocks, prog, columns, lists)


def _decode_block(data, count, start, prog, nbags, path) -> dict:
    cap = data.size // 9 + 1  # an item is at least 9 bytes (a name, a double)
    out = {
        "data": data,
        "count": count,
        "numbers": np.full((3, count), np.nan),
        "int_ids": np.zeros((len(prog["int_ids"]), count), np.int64),
        "str_start": np.zeros((len(prog["str_ids"]), count), np.int64),
        "str_end": np.zeros((len(prog["str_ids"]), count), np.int64),
        "bag_counts": np.zeros((max(nbags, 1), count), np.int64),
        "item_bag": np.zeros(cap, np.int64),
        "item_value": np.zeros(cap, np.float64),
        "key_ptr": np.zeros(cap + 1, np.int64),
        "key_data": np.zeros(data.size + 1, np.uint8),
    }
    keys = ("numbers", "int_ids", "str_start", "str_end", "bag_counts")
    program = ("ftype", "fnb", "fbr", "frole", "fslot", "itype", "inb", "ibr", "irole")
    args = [data, count, *(prog[k] for k in program), *(out[k] for k in keys)]
    args += [out["item_bag"], out["item_value"], out["key_ptr"], out["key_data"]]
    status, done, items, nkey = decode_block(*args)
    if status != OK:
        why = _REASONS.get(status, f"status {status}")
        raise DataError(f"block at byte {start}, record {done}: {why}", path=str(path))
    out["items"], out["nkey"] = items, nkey
    return out


def _strings(block: dict, slot: int) -> np.ndarray:
    data = block["data"].tobytes()
    starts, ends = block["str_start"][slot], block["str_end"][slot]
    return np.array(
        [None if s < 0 else data[s:e].decode("utf-8") for s, e in zip(starts, ends, strict=True)],
        dtype=object,
    )


def _assemble(blocks: list[dict], prog: dict, columns: PhotonColumns, lists: dict) -> PhotonRows:
    def cat(key, slot):
        return np.concatenate([b[key][slot] for b in blocks]) if blocks else np.zeros(0)

    ids: dict[str, np.ndarray] = {}
    for slot, name in enumerate(prog["int_ids"]):
        ids[name] = cat("int_ids", slot).astype(np.int64)
    uid = None
    for slot, name in enumerate(prog["str_ids"]):
        values = (
            np.concatenate([_strings(b, slot) for b in blocks]) if blocks else np.zeros(0, object)
        )
        if name == columns.uid:
            uid = values
        else:
            ids[name] = values
    response = cat("numbers", 0)
    weight = np.where(np.isnan(w := cat("numbers", 1)), 1.0, w)
    offset = np.where(np.isnan(o := cat("numbers", 2)), 0.0, o)
    keys = pa.chunked_array(
        [pa.Array.from_buffers(pa.large_binary(), b["items"],
                               [None, pa.py_buffer(b["key_ptr"][: b["items"] + 1]),
                                pa.py_buffer(b["key_data"][: b["nkey"]])]) for b in blocks],
        type=pa.large_binary(),
    )  # fmt: skip
    item_bag = cat("item_bag", slice(None)) if False else np.concatenate(
        [b["item_bag"][: b["items"]] for b in blocks] or [np.zeros(0, np.int64)])  # fmt: skip
    values = np.concatenate([b["item_value"][: b["items"]] for b in blocks] or [np.zeros(0)])
    n = response.size
    bags, names, dropped = {}, {}, {}
    for slot, bag in enumerate(columns.bags):
        counts = cat("bag_counts", slot).astype(np.int64)
        mine = np.flatnonzero(item_bag == slot)
        bag_keys = keys.take(pa.array(mine))
        given = lists.get(bag)
        if given is None:
            distinct = pc.unique(bag_keys).to_pylist()
            pairs = sorted(_pair(k) for k in distinct)
        else:
            pairs = list(given)
        table = pa.array([n.encode() + b"\xff" + t.encode() for n, t in pairs], pa.large_binary())
        index = pc.index_in(bag_keys, value_set=table)
        keep = index.is_valid().to_numpy(zero_copy_only=False)
        row = np.repeat(np.arange(n), counts)
        col = index.to_numpy(zero_copy_only=False)
        bag_vals = values[mine]
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(row[keep], minlength=n), out=indptr[1:])
        bags[bag] = sp.csr_matrix(
            (bag_vals[keep], col[keep].astype(np.int64), indptr), shape=(n, len(pairs))
        )
        names[bag] = pairs
        dropped[bag] = int((~keep).sum())
    return PhotonRows(ids, response, weight, offset, uid, bags, names, dropped)


def _pair(key: bytes) -> tuple[str, str]:
    name, _, term = key.partition(b"\xff")
    return name.decode("utf-8"), term.decode("utf-8")
