"""Compiled reader of GDMix / Photon ML model files (``BayesianLinearModelAvro``).

Warm-starting a random effect reads every model of a directory: a million users are a million
records of ~11 name-term-value triples. Through fastavro (a dict per record) that is ~50k
records/s; here the container is framed in Python, each block is decoded by a compiled kernel
straight from Avro's binary encoding (the layout :mod:`raymix.data.avro.model_writer` writes, see its
docstring), and ``(name, term)`` pairs become feature indices in bulk, with Arrow's hash lookup.

The result is a table in :mod:`raymix.data.model_table`'s layout (``entity``, ``intercept``,
``index``, ``value``, ``converged``, ``iterations``), which
:func:`~raymix.data.model_table.select_models` consumes. Row ``r`` holds what
:func:`raymix.data.avro.models.coefficients_by_index` gives for record ``r``: the intercept is the
value of the ``("(INTERCEPT)", "")`` triple (the last one; 0 without), a triple whose pair is
not in ``names`` is dropped (with ``names=None`` the feature is ``int(name)``, and a name that
is not an integer is dropped), and the indices of a model ascend (stably). Only ``means`` are
read; ``variances`` are skipped.

A file whose writer schema has another layout, or whose codec is neither ``null`` nor
``deflate``, is read through fastavro instead, so that any valid file reads.
"""

from __future__ import annotations

import collections
import json
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymix import storage
from raymix.data.avro.model_reader_kernels import (
    OK,
    REASONS,
    decode_block,
)
from raymix.data.avro.models import (
    INTERCEPT,
    MODEL_SCHEMA_JSON,
    avro_files,
    check_finite_model,
    coefficients_by_index,
    read_models,
)
from raymix.data.model_table import models_table
from raymix.errors import DataError
from raymix.solvers.entity import EntityModels

_MAGIC = b"Obj\x01"
_CODECS = ("null", "deflate")
_BATCH_COEFFICIENTS = 1 << 21  # triples whose names are looked up at once
_SEPARATOR = b"\xff"  # never in UTF-8, so ``name + 0xff + term`` is one pair's key


def read_avro_model_table(path: str | Path, names: list[tuple[str, str]] | None) -> pa.Table:
    """The models of one Avro model file, or of every ``*.avro`` under a directory (sorted), as
    one table in :mod:`raymix.data.model_table`'s layout, one row per record in file order.

    ``names[j]`` is feature ``j``'s ``(name, term)``; with ``names=None`` a triple's feature is
    ``int(name)``. A truncated or corrupt file raises :class:`~raymix.errors.DataError`.
    """
    lookup = _NameLookup(names)
    tables = [_read_file(file, names, lookup) for file in avro_files(path)]
    return pa.concat_tables(tables)


def model_features(path: str | Path) -> set[tuple[str, str]]:
    """The distinct ``(name, term)`` pairs of the ``means`` of every model under ``path`` (one
    Avro file or a directory of them), the intercept left out: what a warm start knows, to
    compare with the features of its bag before a run starts."""
    found: set[bytes] = set()
    pairs: set[tuple[str, str]] = set()
    for file in avro_files(path):
        try:
            raw = storage.read_bytes(file)
        except OSError as exc:
            raise DataError(f"cannot read Avro model file: {exc}", path=str(file)) from None
        schema, codec, sync, pos = _header(raw, file)
        if codec not in _CODECS or not _is_model_schema(schema):
            try:
                pairs |= {
                    (m["name"], m["term"])
                    for record in read_models(file)
                    for m in record["means"]
                    if (m["name"], m["term"]) != INTERCEPT
                }
            except (KeyError, TypeError) as exc:
                raise DataError(f"not a model record: {exc!r}", path=str(file)) from None
            continue
        for start, count, data in _blocks(raw, pos, sync, codec, file):
            block = _decode(data, count, True, start, file)
            keys = pa.Array.from_buffers(
                pa.large_binary(),
                block["key_ptr"].size - 1,
                [None, pa.py_buffer(block["key_ptr"]), pa.py_buffer(block["key_data"])],
            )
            found.update(pc.unique(keys).to_pylist())
    for key in found:
        name, _, term = key.partition(_SEPARATOR)
        pairs.add((name.decode("utf-8"), term.decode("utf-8")))
    return pairs


def _read_file(file: Path, names, lookup: _NameLookup) -> pa.Table:
    try:
        raw = storage.read_bytes(file)
    except OSError as exc:
        raise DataError(f"cannot read Avro model file: {exc}", path=str(file)) from None
    schema, codec, sync, pos = _header(raw, file)
    if codec not in _CODECS or not _is_model_schema(schema):
        return _read_with_fastavro(file, names)
    parts, pending = [], []
    pending_coefficients = 0
    for start, count, data in _blocks(raw, pos, sync, codec, file):
        block = _decode(data, count, lookup.by_name, start, file)
        pending.append(block)
        pending_coefficients += block["value"].size
        if pending_coefficients >= _BATCH_COEFFICIENTS:
            parts.append(lookup.resolve(_concat(pending), file))
            pending, pending_coefficients = [], 0
    if pending or not parts:
        parts.append(lookup.resolve(_concat(pending), file))
    return _table(_concat(parts), file)


def _header(raw: bytes, file: Path) -> tuple[str | None, str, bytes, int]:
    """(writer schema JSON, codec, sync marker, position of the first block)."""
    if raw[:4] != _MAGIC:
        raise DataError("not an Avro object container file", path=str(file))
    meta, pos = {}, 4
    try:
        while True:
            count, pos = _py_long(raw, pos)
            if count == 0:
                break
            if count < 0:
                count = -count
                _, pos = _py_long(raw, pos)
            for _ in range(count):
                key, pos = _py_bytes(raw, pos)
                meta[key], pos = _py_bytes(raw, pos)
    except IndexError:
        raise DataError("truncated Avro header", path=str(file)) from None
    sync = raw[pos : pos + 16]
    if len(sync) != 16:
        raise DataError("truncated Avro header", path=str(file))
    schema = meta.get(b"avro.schema")
    codec = meta.get(b"avro.codec", b"null").decode("utf-8", "replace")
    return None if schema is None else schema.decode("utf-8", "replace"), codec, sync, pos + 16


def _py_long(raw: bytes, pos: int) -> tuple[int, int]:
    """An Avro long at ``pos`` (IndexError past the end) and the position after it."""
    z = shift = 0
    while True:
        byte = raw[pos]
        pos += 1
        z |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise IndexError("long too long")


def _py_bytes(raw: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _py_long(raw, pos)
    if length < 0 or pos + length > len(raw):
        raise IndexError("bytes past the end")
    return raw[pos : pos + length], pos + length


def _shape(schema):
    """A parsed (expanded) schema without record names, docs, defaults and properties: what
    decides the binary layout and the fields' meaning."""
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return ("union", *(_shape(s) for s in schema))
    kind = schema.get("type")
    if kind == "record":
        return ("record", *((f["name"], _shape(f["type"])) for f in schema["fields"]))
    if kind == "array":
        return ("array", _shape(schema["items"]))
    if isinstance(kind, str) and "logicalType" not in schema and kind in _PRIMITIVES:
        return kind
    return repr(schema)  # enums, maps, fixed, logical types: not this layout


_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_MODEL_SHAPE = _shape(fastavro.parse_schema(MODEL_SCHEMA_JSON, expand=True))


def _is_model_schema(schema: str | None) -> bool:
    if schema is None:
        return False
    try:
        parsed = fastavro.parse_schema(json.loads(schema), expand=True)
    except Exception:  # any unreadable schema: fastavro's reader will say what is wrong
        return False
    return _shape(parsed) == _MODEL_SHAPE


def _blocks(raw: bytes, pos: int, sync: bytes, codec: str, file: Path):
    """(position, record count, decoded bytes) of every block of the container. Deflated
    blocks are inflated a few ahead, on two threads (zlib releases the GIL): inflating costs
    about twice the decoding."""
    with ThreadPoolExecutor(2) as pool:
        ahead: collections.deque[tuple[int, int, memoryview | Future]] = collections.deque()
        for start, count, payload in _frames(raw, pos, sync, file):
            if codec == "deflate":
                ahead.append((start, count, pool.submit(zlib.decompress, payload, -15)))
            else:
                ahead.append((start, count, payload))
            if len(ahead) > 4:
                yield _block(ahead.popleft(), file)
        while ahead:
            yield _block(ahead.popleft(), file)


def _frames(raw: bytes, pos: int, sync: bytes, file: Path):
    """(position, record count, stored bytes) of every block of the container."""
    view = memoryview(raw)
    while pos < len(raw):
        start = pos
        try:
            count, pos = _py_long(raw, pos)
            size, pos = _py_long(raw, pos)
        except IndexError:
            raise DataError(f"truncated block header at byte {start}", path=str(file)) from None
        if count < 0 or size < 0 or pos + size + 16 > len(raw):
            raise DataError(f"truncated block at byte {start}", path=str(file))
        if raw[pos + size : pos + size + 16] != sync:
            raise DataError(f"wrong sync marker after the block at byte {start}", path=str(file))
        yield start, count, view[pos : pos + size]
        pos += size + 16


def _block(framed: tuple[int, int, memoryview | Future], file: Path):
    start, count, payload = framed
    if isinstance(payload, Future):
        try:
            payload = payload.result()
        except zlib.error as exc:
            raise DataError(f"block at byte {start}: {exc}", path=str(file)) from None
    data = np.frombuffer(payload, np.uint8)
    if count * 5 > data.size:  # a record is at least 5 bytes
        raise DataError(f"block at byte {start}: too short for {count} records", path=str(file))
    return start, count, data


def _decode(data: np.ndarray, count: int, by_name: bool, start: int, file: Path) -> dict:
    """The records of one block as flat arrays (see :func:`decode_block`)."""
    n = data.size
    most = n // 10 + 1  # a triple is at least 10 bytes
    out: dict[str, np.ndarray] = {
        "id_data": np.empty(n, np.uint8),
        "id_ptr": np.empty(count + 1, np.int64),
        "intercept": np.zeros(count, np.float64),
        "count": np.empty(count, np.int64),
        "value": np.empty(most, np.float64),
        "index": np.empty(most, np.int64),
        "ask": np.empty(most, np.bool_),
        "key_data": np.empty(n + most, np.uint8),
        "key_ptr": np.empty(most + 1, np.int64),
    }
    out["id_ptr"][0] = out["key_ptr"][0] = 0
    intercept = np.frombuffer(INTERCEPT[0].encode(), np.uint8)
    status, record, coefficients, keys = decode_block(
        data, count, by_name, intercept, *(out[k] for k in _OUTPUTS)
    )
    if status != OK:
        raise DataError(
            f"corrupt block at byte {start}, record {record}: {REASONS[status]}",
            path=str(file),
        )
    for name in ("value", "index", "ask"):
        out[name] = out[name][:coefficients]
    out["key_ptr"] = out["key_ptr"][: keys + 1]
    out["key_data"] = out["key_data"][: out["key_ptr"][-1]]
    out["id_data"] = out["id_data"][: out["id_ptr"][-1]]
    return out


_OUTPUTS = (
    "id_data", "id_ptr", "intercept", "count", "value", "index", "ask", "key_data", "key_ptr",
)  # fmt: skip


def _concat(blocks: list[dict]) -> dict:
    """One block of many: arrays joined, offsets shifted."""
    if len(blocks) == 1:
        return blocks[0]
    out = {}
    for name in blocks[0] if blocks else ():
        if name.endswith("_ptr"):
            parts, total = [blocks[0][name]], blocks[0][name][-1]
            for b in blocks[1:]:
                parts.append(b[name][1:] + total)
                total += b[name][-1]
            out[name] = np.concatenate(parts)
        else:
            out[name] = np.concatenate([b[name] for b in blocks])
    return out


class _NameLookup:
    """Feature indices of the triples the kernel could not place: ``(name, term)`` keys
    against ``names``, or (``names=None``) names that only Python's ``int`` can judge."""

    def __init__(self, names: list[tuple[str, str]] | None):
        self.by_name = names is not None
        if names is not None:
            feature = {}  # the last of equal pairs wins, as in coefficients_by_index
            for j, (name, term) in enumerate(names):
                feature[_utf8(name) + _SEPARATOR + _utf8(term)] = j
            self.keys = pa.array(list(feature), pa.large_binary())
            self.features = np.fromiter(feature.values(), np.int64, len(feature))

    def resolve(self, block: dict, file: Path) -> dict:
        """``block`` with its triples placed: unknown ones dropped, indices ascending."""
        if not block:
            return _EMPTY
        index, ask, value = block["index"], block["ask"], block["value"]
        counts = block["count"]
        ptr = np.zeros(counts.size + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        keep = None
        if ask.any():
            key_ptr = block["key_ptr"]
            keys = pa.Array.from_buffers(
                pa.large_binary(),
                key_ptr.size - 1,
                [None, pa.py_buffer(key_ptr), pa.py_buffer(block["key_data"])],
            )
            found, ok = self._by_name(keys) if self.by_name else self._by_int(keys, file)
            if ask.all():
                index, keep = found, ok
            else:
                index, keep = index.copy(), np.ones(index.size, bool)
                index[ask], keep[ask] = found, ok
        if keep is not None and not keep.all():
            kept = np.zeros(index.size + 1, np.int64)
            np.cumsum(keep, out=kept[1:])
            ptr, index, value = kept[ptr], index[keep], value[keep]
        down = np.flatnonzero(index[1:] < index[:-1]) + 1
        if not np.isin(down, ptr).all():  # a model's indices descend somewhere
            owner = np.repeat(np.arange(counts.size), np.diff(ptr))
            order = np.lexsort((index, owner))  # stable
            index, value = index[order], value[order]
        return {
            "id_data": block["id_data"],
            "id_ptr": block["id_ptr"],
            "intercept": block["intercept"],
            "coef_ptr": ptr,
            "index": index,
            "value": value,
        }

    def _by_name(self, keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        at = pc.index_in(keys, value_set=self.keys)
        ok = at.is_valid().to_numpy(zero_copy_only=False)
        at = at.fill_null(0).to_numpy(zero_copy_only=False)
        features = self.features[at] if self.features.size else np.zeros(at.size, np.int64)
        return features, ok

    @staticmethod
    def _by_int(keys: pa.Array, file: Path) -> tuple[np.ndarray, np.ndarray]:
        encoded = keys.dictionary_encode()
        features, ok = [], []
        for name in encoded.dictionary.to_pylist():
            try:
                j = int(name.decode())
            except ValueError:
                j = None
            if j is not None and not -(1 << 63) <= j < 1 << 63:
                raise DataError(
                    f"feature name {name.decode()!r} out of int64 range", path=str(file)
                )
            features.append(0 if j is None else j)
            ok.append(j is not None)
        at = encoded.indices.to_numpy()
        return np.asarray(features, np.int64)[at], np.asarray(ok, bool)[at]


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a surrogate matches nothing valid


_EMPTY = {
    "id_data": np.zeros(0, np.uint8),
    "id_ptr": np.zeros(1, np.int64),
    "intercept": np.zeros(0, np.float64),
    "coef_ptr": np.zeros(1, np.int64),
    "index": np.zeros(0, np.int64),
    "value": np.zeros(0, np.float64),
}


def _table(models: dict, file: Path) -> pa.Table:
    n = models["intercept"].size
    entity = pa.Array.from_buffers(
        pa.large_string(),
        n,
        [None, pa.py_buffer(models["id_ptr"]), pa.py_buffer(models["id_data"])],
    )  # the kernel checked the UTF-8
    return _model_table(
        entity.cast(pa.string()),
        models["intercept"],
        models["coef_ptr"],
        models["index"],
        models["value"],
        file,
    )


def _model_table(entity: pa.Array, intercept, ptr, index, value, file: Path) -> pa.Table:
    """Models as read (every one converged, 0 iterations) in model_table's layout; a NaN or
    infinite coefficient fails naming the file and the model."""
    n = len(intercept)
    bad = ~np.isfinite(np.asarray(intercept, np.float64))
    bad[np.searchsorted(ptr, np.flatnonzero(~np.isfinite(value)), side="right") - 1] = True
    if bad.any():
        k = int(np.argmax(bad))
        check_finite_model(entity[k].as_py(), intercept[k], value[ptr[k] : ptr[k + 1]], file)
    models = EntityModels(
        np.asarray(intercept, np.float64),
        np.asarray(ptr, np.int64),
        np.asarray(index, np.int64),
        np.asarray(value, np.float64),
        np.ones(n, bool),
        np.zeros(n, np.int32),
    )
    return models_table(entity, models)


def _read_with_fastavro(file: Path, names) -> pa.Table:
    """A file of another layout or codec, record by record."""
    ids, intercepts, ptr, indices, values = [], [], [0], [], []
    try:
        for record in read_models(file):
            intercept, index, value = coefficients_by_index(record, names)
            ids.append(str(record["modelId"]))
            intercepts.append(intercept)
            indices.append(index)
            values.append(value)
            ptr.append(ptr[-1] + index.size)
    except (KeyError, TypeError) as exc:
        raise DataError(f"not a model record: {exc!r}", path=str(file)) from None
    return _model_table(
        pa.array(ids, pa.string()),
        np.asarray(intercepts, np.float64),
        np.asarray(ptr, np.int64),
        np.concatenate([*indices, np.zeros(0, np.int64)]),
        np.concatenate([*values, np.zeros(0)]),
        file,
    )


# The container framing, public for the other Avro readers (:mod:`raymix.data.avro.photon_input`).
container_header = _header
container_blocks = _blocks
