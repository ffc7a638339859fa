"""Avro object container files: the vectorised writer of GDMix score files, and the lenient
record reader every model file is read through.

Score files have one small record per row (uid, logits, label, weight): writing them through
Python dicts costs ~1 µs a record, i.e. a minute for the 60M records of a 10M-row run.
Here records are encoded with numpy, many at a time, straight into Avro's binary encoding:

* ``long``: zig-zag, then a little-endian base-128 varint;
* ``float``: 4 bytes, IEEE 754 little endian;
* ``union {null, float}``: the branch index as a ``long`` (0 = null, 1 = float), then the value.

The container is the standard one (magic, metadata map with ``avro.schema`` and
``avro.codec``, a sync marker, then blocks of ``count, size, data, sync``), readable by
fastavro or any Avro reader. The sync marker is derived from the schema, so the same scores
give the same bytes.

Model files of Photon ML's versions of the time (e.g. a 2016 ``BayesianLinearModelAvro``)
declare ``"default": null`` on a plain ``string`` field (``modelClass``), which strict Avro
parsers, fastavro's included, reject before reading a record. :func:`read_records` frames
the container itself and decodes with that writer schema parsed leniently (the bad default
dropped: a default never affects how written records decode).
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import fastavro
import numpy as np

from raymix import storage
from raymix.errors import DataError

BLOCK_RECORDS = 1 << 16


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def long_bytes(value: int) -> bytes:
    return _varint((value << 1) ^ (value >> 63) if value < 0 else value << 1)


def _string(text: bytes) -> bytes:
    return long_bytes(len(text)) + text


def header(schema: dict, codec: str) -> tuple[bytes, bytes]:
    """The file header and its sync marker."""
    schema_json = json.dumps(schema, separators=(",", ":")).encode()
    sync = hashlib.md5(schema_json).digest()
    meta = long_bytes(2) + _string(b"avro.schema") + _string(schema_json)
    meta += _string(b"avro.codec") + _string(codec.encode()) + long_bytes(0)
    return b"Obj\x01" + meta + sync, sync


def _zigzag_varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bytes (n, 10) uint8, lengths (n,)) of each int64 as an Avro long."""
    v = values.astype(np.int64)
    z = ((v << 1) ^ (v >> 63)).view(np.uint64)
    out = np.zeros((v.size, 10), np.uint8)
    lengths = np.ones(v.size, np.int64)
    rest = z.copy()
    for k in range(10):
        byte = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest = rest >> np.uint64(7)
        more = rest != 0
        out[:, k] = byte | (more.astype(np.uint8) << 7)
        lengths += more
        if not more.any():
            break
    return out, lengths


def encode_records(columns: list[tuple[str, np.ndarray]]) -> bytes:
    """Binary encoding of records whose fields are ``("long"|"float"|"nullable_float", values)``."""
    n = columns[0][1].size
    pieces: list[tuple[str, np.ndarray, Any]] = []  # (kind, bytes, lengths | presence | None)
    sizes = np.zeros(n, np.int64)
    for kind, values in columns:
        if kind == "long":
            encoded, lengths = _zigzag_varints(values)
            pieces.append((kind, encoded, lengths))
            sizes += lengths
        elif kind == "float":
            pieces.append((kind, values.astype("<f4").view(np.uint8).reshape(n, 4), None))
            sizes += 4
        elif kind == "nullable_float":
            present = ~np.isnan(values)
            floats = np.where(present, values, 0).astype("<f4").view(np.uint8).reshape(n, 4)
            pieces.append((kind, floats, present))
            sizes += 1 + 4 * present
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
    starts = np.zeros(n, np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    out = np.zeros(int(sizes.sum()), np.uint8)
    cursor = starts.copy()
    for kind, data, extra in pieces:
        if kind == "long":
            for k in range(data.shape[1]):
                has = extra > k
                out[cursor[has] + k] = data[has, k]
            cursor += extra
        elif kind == "float":
            for k in range(4):
                out[cursor + k] = data[:, k]
            cursor += 4
        else:
            out[cursor] = np.where(extra, 2, 0).astype(np.uint8)  # zig-zag of the branch index
            cursor += 1
            for k in range(4):
                out[cursor[extra] + k] = data[extra, k]
            cursor += 4 * extra
    return out.tobytes()


def write_container(
    handle, schema: dict, columns: list[tuple[str, np.ndarray]], codec: str = "null"
) -> None:
    """Write an Avro container file of the given columns (all of one length) to ``handle``."""
    head, sync = header(schema, codec)
    handle.write(head)
    n = columns[0][1].size
    for start in range(0, n, BLOCK_RECORDS):
        block = [(kind, values[start : start + BLOCK_RECORDS]) for kind, values in columns]
        data = encode_records(block)
        if codec == "deflate":
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = compressor.compress(data) + compressor.flush()
        handle.write(long_bytes(block[0][1].size) + long_bytes(len(data)) + data + sync)


_MAGIC = b"Obj\x01"
_LONG = {"type": "long"}


def lenient_schema(schema_json: str | bytes) -> Any:
    """A writer schema parsed as fastavro does, except that a default which does not match
    its field's type (Photon ML's ``null`` on a ``string``) is ignored rather than fatal."""
    return fastavro.parse_schema(json.loads(schema_json), _ignore_default_error=True)


def _read_any(stream: io.BytesIO, schema) -> Any:
    return fastavro.schemaless_reader(stream, schema, None)


def iter_records(file: str | Path) -> Iterator[dict]:
    """The records of one Avro container file, streamed through fastavro's reader; a file
    whose writer schema fastavro refuses (Photon ML's ``null`` default on a ``string``)
    through :func:`read_records` (about 3x slower, so only then)."""
    try:
        with storage.open_input(file) as handle:
            try:
                reader = fastavro.reader(handle)
            except fastavro.schema.SchemaParseException:
                reader = None
            if reader is not None:
                yield from cast(Iterator[dict], reader)
                return
    except (OSError, ValueError, EOFError, fastavro.read.SchemaResolutionError) as exc:
        raise DataError(f"cannot read Avro model file: {exc}", path=str(file)) from None
    yield from read_records(file)


def read_records(file: str | Path) -> list[dict]:
    """The records of one Avro container file (codec ``null`` or ``deflate``; others through
    fastavro's reader), decoded with the leniently parsed writer schema. Any way the file is
    broken raises one :class:`~raymix.errors.DataError` naming it."""
    try:
        raw = storage.read_bytes(file)
        if raw[:4] != _MAGIC:
            raise ValueError("not an Avro object container file")
        stream = io.BytesIO(raw)
        stream.seek(4)
        meta = _read_any(stream, {"type": "map", "values": "bytes"})
        sync = stream.read(16)
        codec = meta.get("avro.codec", b"null").decode()
        if codec not in ("null", "deflate"):
            return list(cast(Iterator[dict], fastavro.reader(io.BytesIO(raw))))
        schema = lenient_schema(meta["avro.schema"])
        records: list[dict] = []
        while stream.tell() < len(raw):
            count = _read_any(stream, _LONG)
            size = _read_any(stream, _LONG)
            data = stream.read(size)
            if len(data) != size or stream.read(16) != sync:
                raise ValueError(f"truncated block or wrong sync marker before byte {stream.tell()}")  # fmt: skip
            block = io.BytesIO(zlib.decompress(data, -15) if codec == "deflate" else data)
            records.extend(_read_any(block, schema) for _ in range(count))
        return records
    except Exception as exc:  # any way a file can be broken: one line naming it
        raise DataError(f"cannot read Avro model file: {exc}", path=str(file)) from None
