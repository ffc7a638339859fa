"""Read the features of a TFRecord file of ``tf.train.Example`` without TensorFlow.

The file's bytes (inflated first for ``.gz`` / ``.deflate``) go to compiled kernels
(:mod:`raymix.data.tfrecord.example_kernels`) that check the framing and both CRC-32Cs of every record
and decode only the requested keys, in two passes: count the values of each key in each
record, then fill flat arrays. The result per key is a :class:`Column`: row splits and flat
values, as ``tf.io.parse_example`` would give them for this :class:`Field`:

- ``count=k`` is a ``FixedLenFeature``: every record must hold the key with exactly ``k``
  values of the field's kind;
- ``count=None`` is a ``RaggedFeature``: an absent key is an empty row.

A record holding the key with another kind is an error either way. An empty ``Feature`` (no
kind set) counts as absent, as in TensorFlow. Duplicate keys follow protobuf: the last entry
wins. Where TensorFlow's parser is stricter than protobuf (unknown fields inside a map entry
or a list, a map entry without a value, a list repeated inside a Feature, packed after
unpacked int64s), this reader follows protobuf; where it is laxer (a compressed stream cut
short after whole records), this reader refuses the file. Every problem raises
:class:`DataError` naming the file, the record (row) and the key.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raymix import storage
from raymix.data.metadata import TensorSpec
from raymix.data.tfrecord import example_kernels as kernels
from raymix.data.tfrecord.example_codec import KIND, compression_type
from raymix.errors import DataError

__all__ = ["Column", "Field", "decode_examples", "fields_of", "file_bytes", "read_examples"]

_KINDS = {"bytes_list": kernels.BYTES, "float_list": kernels.FLOAT, "int64_list": kernels.INT64}
_KIND_NAMES = {code: name for name, code in _KINDS.items()}
_FRAMING = {
    kernels.PARTIAL_HEADER: "partial record header",
    kernels.BAD_LENGTH_CRC: "bad length checksum",
    kernels.PARTIAL_RECORD: "partial record",
    kernels.BAD_DATA_CRC: "bad data checksum",
}


@dataclass(frozen=True)
class Field:
    """A key to read: its list ``kind``, ``count`` values per record (None: any, may be
    absent) and the ``tensor`` it belongs to (for messages)."""

    key: str
    kind: str
    count: int | None = None
    tensor: str | None = None

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(
                f"The 'kind' parameter of Field must be one of {sorted(_KINDS)}. "
                f"Got {self.kind!r} instead."
            )


@dataclass(frozen=True)
class Column:
    """Record ``i`` of a key holds ``values[splits[i]:splits[i + 1]]``.

    ``values`` is int64 (``int64_list``), float32 (``float_list``) or an Arrow binary array
    (``bytes_list``); ``splits`` is int64 of length records + 1.
    """

    key: str
    kind: str
    splits: np.ndarray
    values: np.ndarray | pa.Array

    def rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray | pa.Array]:
        """Splits (from 0) and values of records ``lo .. hi - 1``."""
        a, b = int(self.splits[lo]), int(self.splits[hi])
        return self.splits[lo : hi + 1] - a, self.values[a:b]


def fields_of(specs: Sequence[TensorSpec]) -> list[Field]:
    """The fields ``tf.io.parse_example`` reads for ``specs`` (see ``example_codec.parse_spec``):
    a dense tensor of shape ``()`` or ``(k,)`` is 1 or ``k`` values; a bag is two ragged keys."""
    out = []
    for s in specs:
        if s.is_sparse:
            idx, val = s.columns
            out += [Field(idx, "int64_list", None, s.name), Field(val, KIND[s.dtype], None, s.name)]
        else:
            out.append(Field(s.name, KIND[s.dtype], s.shape[0] if s.shape else 1, s.name))
    return out


def file_bytes(path: str | os.PathLike) -> np.ndarray:
    """The uncompressed bytes of a TFRecord file (compression by suffix) as a uint8 array."""
    path = str(path)
    raw = storage.read_bytes(path)
    kind = compression_type(path)
    if kind and raw:
        try:
            if kind == "GZIP":
                raw = gzip.decompress(raw)
            else:
                stream = zlib.decompressobj()
                data = stream.decompress(raw)
                if not stream.eof:
                    raise EOFError("the zlib stream ends early")
                if stream.unused_data:
                    raise EOFError(f"{len(stream.unused_data)} bytes after the zlib stream")
                raw = data
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"corrupt or truncated TFRecord: {e}", path) from None
    return np.frombuffer(raw, np.uint8)


def read_examples(path: str | os.PathLike, fields: Sequence[Field]) -> dict[str, Column]:
    """Decode ``fields`` from every record of the TFRecord file ``path``."""
    return decode_examples(file_bytes(path), fields, str(path))


def decode_examples(data: np.ndarray, fields: Sequence[Field], path: str) -> dict[str, Column]:
    """Decode ``fields`` from a whole uncompressed TFRecord stream ``data`` (uint8).

    ``path`` names the source in errors. Returns a :class:`Column` per field key, in order.
    """
    if len({f.key for f in fields}) != len(fields):
        raise ValueError(f"Field keys must be unique. Got {[f.key for f in fields]} instead.")
    data = np.frombuffer(data, np.uint8).view()
    data.flags.writeable = False  # one array type for the kernels: compiled once
    status, n = kernels.frame(data, kernels.crc_tables())
    if status != kernels.OK:
        raise DataError(f"corrupt or truncated TFRecord: {_FRAMING[status]}", path, row=n)
    encoded = [f.key.encode() for f in fields]
    kinds = np.array([_KINDS[f.kind] for f in fields], np.int64)
    wanted = (
        np.frombuffer(b"".join(encoded), np.uint8),
        np.cumsum([0] + [len(k) for k in encoded], dtype=np.int64),
        kinds,
        np.array([-1 if f.count is None else f.count for f in fields], np.int64),
    )
    splits = np.zeros((len(fields), n + 1), np.int64)
    base = np.zeros(len(fields), np.int64)
    scratch = np.empty(len(fields), np.int64), np.empty(len(fields), np.int64)

    def run(fill, out32, out64, bstart, blen):
        outputs = (splits, base, out32, out64, bstart, blen)
        _check(kernels.decode(data, n, *wanted, fill, *outputs, *scratch), fields, path)

    none = np.empty(0, np.int64)
    run(False, np.empty(0, np.uint32), none, none, none)  # count the values
    np.cumsum(splits, axis=1, out=splits)
    totals = splits[:, -1]
    for code in _KINDS.values():  # each kind's keys share one flat output, key after key
        mine = kinds == code
        base[mine] = np.cumsum(totals[mine]) - totals[mine]
    out32 = np.empty(totals[kinds == kernels.FLOAT].sum(), np.uint32)
    out64 = np.empty(totals[kinds == kernels.INT64].sum(), np.int64)
    nbytes = totals[kinds == kernels.BYTES].sum()
    bstart, blen = np.empty(nbytes, np.int64), np.empty(nbytes, np.int64)
    run(True, out32, out64, bstart, blen)  # fill them in

    columns = {}
    for k, f in enumerate(fields):
        lo, hi = base[k], base[k] + totals[k]
        values: np.ndarray | pa.Array
        if kinds[k] == kernels.FLOAT:
            values = out32[lo:hi].view(np.float32)
        elif kinds[k] == kernels.INT64:
            values = out64[lo:hi]
        else:
            values = _binary(data, bstart[lo:hi], blen[lo:hi], path)
        columns[f.key] = Column(f.key, f.kind, splits[k], values)
    return columns


def _binary(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, path: str) -> pa.Array:
    offsets = np.empty(len(starts) + 1, np.int64)
    flat = np.empty(int(lengths.sum()), np.uint8)
    if len(flat) >= 1 << 31:
        raise DataError("more than 2 GiB of bytes values in one feature", path)
    kernels.gather(data, starts, lengths, offsets, flat)
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(flat)]
    return pa.BinaryArray.from_buffers(pa.binary(), len(starts), buffers)


def _check(result: tuple[int, int, int, int], fields: Sequence[Field], path: str) -> None:
    status, row, k, detail = result
    if status == kernels.OK:
        return
    if k < 0:
        raise DataError("record is not a tf.train.Example (malformed protobuf)", path, row=row)
    f = fields[k]
    owner = f"feature '{f.key}' (tensor '{f.tensor or f.key}')"
    if status == kernels.MALFORMED:
        message = f"record is not a tf.train.Example: {owner} cannot be decoded"
    elif status == kernels.MISSING:
        message = f"{owner} is missing from a record"
    elif status == kernels.WRONG_KIND:
        message = (
            f"{owner} does not match the metadata: it holds a {_KIND_NAMES[detail]}, "
            f"the metadata's dtype needs a {f.kind}"
        )
    else:
        message = (
            f"{owner} does not match the metadata: it has {detail} values, "
            f"the metadata's shape needs {f.count}"
        )
    raise DataError(message, path, row=row, column=f.key)
