"""Compiled writer of many GDMix / Photon ML model records (``BayesianLinearModelAvro``).

A random effect has one model per entity: a million users are a million records with ~11
name-term-value triples each. Built as Python dicts and written by fastavro that costs ~30 s;
here records are encoded straight into Avro's binary encoding by a compiled kernel, from the
ragged arrays the per-entity solver already holds (:class:`~raymix.solvers.entity.EntityModels`
layout). Each ``(name, term)`` pair is encoded once and copied per coefficient.

Binary encoding of one record (the schema is :data:`raymix.data.avro.models.MODEL_SCHEMA_JSON`):

    modelId       string                        long(len) bytes
    modelClass    union {null, string}          long(1) string
    means         array of {name, term, value}  long(count) items long(0), or long(0) if empty
    variances     union {null, array}           long(0), or long(1) array as above
    lossFunction  union {null, string}          long(1) string("")

The records are written in container blocks of :data:`BLOCK_RECORDS`, deflated; the file is
the same one :func:`raymix.data.avro.models.write_models` writes from dicts, byte for byte in its
records (the container's sync marker is derived from the schema, so bytes are reproducible).
"""

from __future__ import annotations

import collections
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
from numba import njit

from raymix import storage
from raymix.data.avro.container import header, long_bytes

BLOCK_RECORDS = 4096


def write_model_file(
    path: str | Path,
    model_ids,
    *,
    members: np.ndarray | None = None,
    compress: bool = True,
    **models,
) -> Path:
    """Write the models ``members`` (default: all, in order) to one Avro file, atomically;
    ``models`` are :class:`ModelEncoder`'s keyword arguments."""
    return ModelEncoder(model_ids, **models).write(path, members, compress)


class ModelEncoder:
    """Avro records of many models, ready to be written in any subsets (one file a bucket).

    Model ``k`` has id ``model_ids[k]`` (ints or strings), intercept ``intercepts[k]`` (no
    intercept triple when ``intercepts`` is None) and coefficients
    ``coef_value[coef_ptr[k]:coef_ptr[k+1]]`` on features ``coef_index[...]`` (ascending;
    ``names[j]`` is feature ``j``'s ``(name, term)``, ``(str(j), "")`` without names).
    ``variances``, if given, holds ``[var(b), var(w)...]`` per model at
    ``coef_ptr[k] + k : coef_ptr[k+1] + k + 1``, as ``EntityModels.variances`` does.
    The ids and names are encoded once, here.
    """

    def __init__(
        self,
        model_ids,
        *,
        intercepts: np.ndarray | None,
        coef_ptr: np.ndarray,
        coef_index: np.ndarray,
        coef_value: np.ndarray,
        names: list[tuple[str, str]] | None,
        model_class: str,
        variances: np.ndarray | None = None,
    ):
        self.n = n = len(model_ids)
        id_data, id_offsets = _encoded_strings(model_ids)
        coef_index = np.asarray(coef_index, np.int64)
        dim = len(names) if names is not None else int(coef_index.max(initial=-1)) + 1
        nt_data, nt_offsets = _name_terms(names, dim)
        has_intercept = intercepts is not None
        intercepts = np.zeros(n) if intercepts is None else np.asarray(intercepts, np.float64)
        has_variances = variances is not None
        variances = np.zeros(0) if variances is None else np.asarray(variances, np.float64)
        prefix = np.frombuffer(long_bytes(1) + _string(model_class.encode()), np.uint8)
        self.args = (
            id_data,
            id_offsets,
            prefix,
            has_intercept,
            intercepts,
            np.asarray(coef_ptr, np.int64),
            coef_index,
            np.asarray(coef_value, np.float64),
            has_variances,
            variances,
            nt_data,
            nt_offsets,
        )

    def write(self, path: str | Path, members=None, compress: bool = True) -> Path:
        """Write models ``members`` (default: all) to ``path``, atomically. Blocks are
        deflated (level 1, on two threads: deflating costs ~6x the encoding), or with
        ``compress=False`` stored as they are (codec null)."""
        from raymix.data.avro.models import MODEL_SCHEMA_JSON

        if members is None:
            members = np.arange(self.n, dtype=np.int64)
        members = np.asarray(members, np.int64)
        head, sync = header(MODEL_SCHEMA_JSON, "deflate" if compress else "null")
        pending: collections.deque = collections.deque()
        with (
            storage.staged(path) as tmp,
            open(tmp, "wb") as handle,
            ThreadPoolExecutor(2 if compress else 1) as pool,
        ):
            handle.write(head)

            def write_oldest() -> None:
                count, data = pending.popleft()
                data = data.result()
                handle.write(long_bytes(count) + long_bytes(len(data)) + data + sync)

            for start in range(0, members.size, BLOCK_RECORDS):
                block = members[start : start + BLOCK_RECORDS]
                sizes = _record_sizes(block, *self.args)
                out = np.empty(int(sizes.sum()), np.uint8)
                _encode_records(block, out, *self.args)
                pending.append((block.size, pool.submit(_deflate if compress else bytes, out)))
                if len(pending) > 4:  # a bounded window of blocks in flight
                    write_oldest()
            while pending:
                write_oldest()
        return storage.as_path(path)


def _deflate(block: np.ndarray) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)  # zlib releases the GIL
    return compressor.compress(cast(Any, block)) + compressor.flush()


def _string(text: bytes) -> bytes:
    return long_bytes(len(text)) + text


def _encoded_strings(values) -> tuple[np.ndarray, np.ndarray]:
    """Avro ``string`` encodings of ``values`` (ints as decimal text): (bytes, offsets)."""
    array = values if isinstance(values, pa.Array) else pa.array(np.asarray(values))
    array = array.cast(pa.large_string())  # ints become their decimal text
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    head = np.ones(lengths.size, np.int64)  # the varint of the zig-zag length
    for bound in (1 << 6, 1 << 13, 1 << 20, 1 << 27):
        head += lengths >= bound
    out_offsets = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths + head, out=out_offsets[1:])
    out = np.empty(int(out_offsets[-1]), np.uint8)
    _copy_strings(data, offsets, out, out_offsets)
    return out, out_offsets


def _name_terms(names: list[tuple[str, str]] | None, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Encoded ``name, term`` of features ``0..dim-1`` and, last, of the intercept."""
    from raymix.data.avro.models import INTERCEPT

    pairs = list(names) if names is not None else [(str(j), "") for j in range(dim)]
    pairs = pairs[:dim] + [INTERCEPT]
    pieces = [_string(n.encode()) + _string(t.encode()) for n, t in pairs]
    offsets = np.zeros(len(pieces) + 1, np.int64)
    np.cumsum([len(p) for p in pieces], out=offsets[1:])
    return np.frombuffer(b"".join(pieces), np.uint8), offsets


@njit(cache=True)
def _copy_strings(data, offsets, out, out_offsets):
    for k in range(offsets.size - 1):
        pos = _put_long(out, out_offsets[k], offsets[k + 1] - offsets[k])
        _put_bytes(out, pos, data, offsets[k], offsets[k + 1])


@njit(cache=True, inline="always")
def _long_size(v):
    z = v << 1  # zig-zag of a non-negative long
    size = 1
    while z >= 128:
        z >>= 7
        size += 1
    return size


@njit(cache=True, inline="always")
def _put_long(out, pos, v):
    z = v << 1
    while z >= 128:
        out[pos] = (z & 0x7F) | 0x80
        z >>= 7
        pos += 1
    out[pos] = z
    return pos + 1


@njit(cache=True, inline="always")
def _put_bytes(out, pos, data, lo, hi):
    for b in range(lo, hi):
        out[pos] = data[b]
        pos += 1
    return pos


@njit(cache=True, inline="always")
def _put_double(out, pos, value):
    bits = np.array([value], np.float64).view(np.uint8)
    for b in range(8):
        out[pos + b] = bits[b]
    return pos + 8


@njit(cache=True)
def _array_size(k, has_b, ptr, index, nt_offsets, intercept_entry):
    count = ptr[k + 1] - ptr[k] + (1 if has_b else 0)
    if count == 0:
        return 1
    size = _long_size(count) + 1 + 8 * count
    if has_b:
        size += nt_offsets[intercept_entry + 1] - nt_offsets[intercept_entry]
    for c in range(ptr[k], ptr[k + 1]):
        j = index[c]
        size += nt_offsets[j + 1] - nt_offsets[j]
    return size


@njit(cache=True)
def _record_sizes(
    block, id_data, id_offsets, prefix, has_b, intercepts, ptr, index, value,
    has_var, variances, nt_data, nt_offsets,
):  # fmt: skip
    intercept_entry = nt_offsets.size - 2
    sizes = np.empty(block.size, np.int64)
    for r in range(block.size):
        k = block[r]
        means = _array_size(k, has_b, ptr, index, nt_offsets, intercept_entry)
        size = id_offsets[k + 1] - id_offsets[k] + prefix.size + means + 2
        if has_var:
            size += means  # the same names, the same count, 8 bytes a value
        sizes[r] = size + 1  # the variances union's branch index
    return sizes


@njit(cache=True)
def _put_array(out, pos, k, has_b, ptr, index, b_value, values, first, nt_data, nt_offsets):
    """An array of name-term-value triples: the intercept's ``b_value`` (if ``has_b``), then
    model ``k``'s features with ``values[first], values[first + 1], ...``."""
    intercept_entry = nt_offsets.size - 2
    count = ptr[k + 1] - ptr[k] + (1 if has_b else 0)
    if count == 0:
        out[pos] = 0
        return pos + 1
    pos = _put_long(out, pos, count)
    if has_b:
        lo, hi = nt_offsets[intercept_entry], nt_offsets[intercept_entry + 1]
        pos = _put_bytes(out, pos, nt_data, lo, hi)
        pos = _put_double(out, pos, b_value)
    for c in range(ptr[k], ptr[k + 1]):
        j = index[c]
        pos = _put_bytes(out, pos, nt_data, nt_offsets[j], nt_offsets[j + 1])
        pos = _put_double(out, pos, values[first + c - ptr[k]])
    out[pos] = 0
    return pos + 1


@njit(cache=True)
def _encode_records(
    block, out, id_data, id_offsets, prefix, has_b, intercepts, ptr, index, value,
    has_var, variances, nt_data, nt_offsets,
):  # fmt: skip
    pos = 0
    for r in range(block.size):
        k = block[r]
        pos = _put_bytes(out, pos, id_data, id_offsets[k], id_offsets[k + 1])
        pos = _put_bytes(out, pos, prefix, 0, prefix.size)
        pos = _put_array(
            out, pos, k, has_b, ptr, index, intercepts[k], value, ptr[k], nt_data, nt_offsets
        )
        if has_var:
            out[pos] = 2  # union branch 1: the array; model k's variances start at ptr[k] + k
            v0 = ptr[k] + k
            pos = _put_array(
                out, pos + 1, k, has_b, ptr, index, variances[v0], variances, v0 + 1,
                nt_data, nt_offsets,
            )  # fmt: skip
        else:
            out[pos] = 0
            pos += 1
        out[pos] = 2  # lossFunction: union branch 1, the empty string
        out[pos + 1] = 0
        pos += 2
    return pos
