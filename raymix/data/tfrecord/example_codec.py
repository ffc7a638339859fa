"""Conversions between ``tf.train.Example`` / parsed TF tensors and raymix Arrow rows.

Private helpers of :mod:`raymix.data.tfrecord.tables`. TensorFlow is imported lazily (``tf()``), so
importing this module is cheap. The row convention is described in :mod:`raymix.data.metadata`.
"""

from __future__ import annotations

import os
import re
import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymix import storage
from raymix.data.metadata import TensorSpec
from raymix.errors import DataError

#: The ``tf.train.Feature`` kind that holds each dtype.
KIND = {
    "int": "int64_list",
    "long": "int64_list",
    "float": "float_list",
    "double": "float_list",
    "bytes": "bytes_list",
    "string": "bytes_list",
}
_NUMPY = {"int": np.int64, "long": np.int64, "float": np.float32, "double": np.float64}


def tf():
    """Import TensorFlow quietly, on first use only."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def tf_dtype(spec: TensorSpec):
    t = tf()
    return {"int64_list": t.int64, "float_list": t.float32, "bytes_list": t.string}[
        KIND[spec.dtype]
    ]


def parse_spec(specs: list[TensorSpec]) -> dict[str, Any]:
    """The ``tf.io.parse_example`` feature spec of ``specs`` (bags as two ragged features)."""
    t = tf()
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.is_sparse:
            idx, val = spec.columns
            out[idx] = t.io.RaggedFeature(t.int64, row_splits_dtype=t.int64)
            out[val] = t.io.RaggedFeature(tf_dtype(spec), row_splits_dtype=t.int64)
        else:
            out[spec.name] = t.io.FixedLenFeature(list(spec.shape), tf_dtype(spec))
    return out


def compression_type(path: str | os.PathLike) -> str:
    """The ``tf.data`` compression type of a TFRecord file, from its suffix."""
    name = str(path)
    if name.endswith(".gz"):
        return "GZIP"
    if name.endswith(".deflate"):
        return "ZLIB"
    return ""


def first_records(path: str, n: int) -> list[bytes]:
    """The first ``n`` raw records of a TFRecord file (DataError if corrupt)."""
    t = tf()
    ds = t.data.TFRecordDataset([path], compression_type=compression_type(path)).take(n)
    try:
        return [r.numpy() for r in ds]
    except t.errors.OpError as e:
        raise tf_error(e, path, [], None) from None


def counted(parse):
    """Wrap a batch parser to also return the batch's record count and payload bytes."""
    t = tf()

    def fn(x):
        nbytes = t.reduce_sum(t.cast(t.strings.length(x), t.int64))
        return parse(x), t.size(x, out_type=t.int64), nbytes

    return fn


def check_complete(path: str, records: int, payload: int) -> None:
    """Raise if the file holds more than the records read (TF silently drops a partial header).

    An uncompressed TFRecord is exactly ``sum(len(record) + 16)`` bytes. A compressed file
    that gave no record must be a complete, empty stream.
    """
    size = storage.size(path)
    kind = compression_type(path)
    if kind == "":
        extra = size - payload - 16 * records
        if extra:
            raise DataError(
                f"corrupt or truncated TFRecord file: {extra} bytes after record {records} "
                "do not form a complete record",
                path,
            )
    elif records == 0 and size > 0:
        stream = zlib.decompressobj(31 if kind == "GZIP" else 15)
        try:
            data = stream.decompress(storage.read_bytes(path))
        except zlib.error as e:
            raise DataError(f"corrupt or truncated TFRecord file ({e})", path) from None
        if data or not stream.eof:
            raise DataError("corrupt or truncated TFRecord file (no complete record)", path)


# ----------------------------------------------------------------------------- TF -> Arrow


def values_array(values: np.ndarray, spec: TensorSpec) -> pa.Array:
    """A flat Arrow array of element values (strings stay binary until ``finish_table``)."""
    if spec.dtype in ("string", "bytes"):
        return pa.array(values.tolist(), type=pa.binary())
    return pa.array(np.ascontiguousarray(values, dtype=_NUMPY[spec.dtype]))


def list_array(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32, copy=False)), values)


def dense_array(values: np.ndarray, spec: TensorSpec) -> pa.Array:
    """Arrow column of a dense tensor from a numpy array of shape ``[n] + shape``."""
    if not spec.shape:
        return values_array(values, spec)
    k = spec.shape[0]
    flat = values_array(values.reshape(-1), spec)
    if spec.dtype in ("string", "bytes"):
        return list_array(np.arange(len(values) + 1, dtype=np.int64) * k, flat)
    return pa.FixedSizeListArray.from_arrays(flat, k)


def bag_arrays(
    splits_i: np.ndarray,
    indices: np.ndarray,
    splits_v: np.ndarray,
    values: np.ndarray,
    spec: TensorSpec,
    path: str,
    row0: int,
) -> tuple[pa.Array, pa.Array]:
    """``B_indices`` / ``B_values`` list arrays from the row splits of the two ragged tensors.

    Checks that each row has as many values as indices and that indices lie in ``[0, dim)``;
    ``row0`` is the file row of the first row, for error messages.
    """
    idx_col, val_col = spec.columns
    if not np.array_equal(splits_i, splits_v):
        row = int(np.flatnonzero(np.diff(splits_i) != np.diff(splits_v))[0])
        n_i, n_v = splits_i[row + 1] - splits_i[row], splits_v[row + 1] - splits_v[row]
        raise DataError(
            f"bag '{spec.name}' has {n_i} indices but {n_v} values",
            path,
            row=row0 + row,
            column=idx_col,
        )
    bad = (indices < 0) | (indices >= spec.dim)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(splits_i, pos, side="right")) - 1
        raise DataError(
            f"index {int(indices[pos])} of bag '{spec.name}' is outside [0, {spec.dim})",
            path,
            row=row0 + row,
            column=idx_col,
        )
    return (
        list_array(splits_i, pa.array(indices.astype(np.int64, copy=False))),
        list_array(splits_v, values_array(values, spec)),
    )


def finish_table(chunks: dict[str, list[pa.Array]], specs: list[TensorSpec]) -> pa.Table:
    """Concatenate per-batch chunks into one table; decode strings as UTF-8 where valid."""
    arrays, fields = [], []
    for spec in specs:
        for field in spec.arrow_fields():
            parts = chunks.get(field.name, [])
            if spec.dtype in ("string", "bytes"):
                binary = _binary_type(field.type)
                col = pa.chunked_array(parts, type=binary).combine_chunks()
                try:
                    col = pc.cast(col, field.type)
                except pa.ArrowInvalid:  # not UTF-8: keep the raw bytes
                    field = field.with_type(binary)
            else:
                col = pa.chunked_array(parts, type=field.type).combine_chunks()
            arrays.append(col)
            fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _binary_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_list(t):
        return pa.list_(pa.binary())
    return pa.binary()


# ----------------------------------------------------------------------------- checks


def feature_problem(feature: Any, spec: TensorSpec, key: str, count: int | None) -> str | None:
    """Why a ``tf.train.Feature`` does not hold ``spec`` (``count`` values if given), or None."""
    kind = feature.WhichOneof("kind")
    want = KIND[spec.dtype]
    if kind is not None and kind != want:
        return (
            f"feature '{key}' holds a {kind} but the metadata says dtype '{spec.dtype}' "
            f"(stored as a {want})"
        )
    n = len(getattr(feature, want).value) if kind else 0
    if count is not None and n != count:
        return (
            f"feature '{key}' has {n} values, the metadata shape {list(spec.shape)} needs {count}"
        )
    return None


def check_example(features: Any, specs: list[TensorSpec], path: str, row: int) -> None:
    """Check one parsed ``tf.train.Features`` map against ``specs``; raise DataError."""
    for spec in specs:
        for key in spec.columns:
            if key not in features:
                raise DataError(
                    f"feature '{key}' of tensor '{spec.name}' is missing from the records",
                    path,
                    row=row,
                    column=key,
                )
        if spec.is_sparse:
            idx_key, val_key = spec.columns
            idx_spec = TensorSpec(spec.name, "long", spec.shape, True)
            problem = feature_problem(features[idx_key], idx_spec, idx_key, None)
            problem = problem or feature_problem(features[val_key], spec, val_key, None)
            if problem is None:
                n_i = len(features[idx_key].int64_list.value)
                n_v = len(getattr(features[val_key], KIND[spec.dtype]).value)
                if n_i != n_v:
                    problem = f"bag '{spec.name}' has {n_i} indices but {n_v} values"
                bad = [i for i in features[idx_key].int64_list.value if not 0 <= i < spec.dim]
                if bad and problem is None:
                    problem = f"index {bad[0]} of bag '{spec.name}' is outside [0, {spec.dim})"
        else:
            count = spec.shape[0] if spec.shape else 1
            problem = feature_problem(features[spec.name], spec, spec.name, count)
        if problem:
            raise DataError(problem, path, row=row, column=spec.columns[0])


_TF_NOISE = [
    re.compile(r"^\{\{function_node [^}]*\}\}\s*"),
    re.compile(
        r"^Error in user-defined function passed to \S+ transformation with iterator: \S+: "
    ),
    re.compile(r"^Name: [^,]*, "),
]


def tf_error(e: Exception, path: str, specs: list[TensorSpec], row0: int | None) -> DataError:
    """A DataError naming ``path`` (and the feature / row when TF says) for a TF OpError."""
    t = tf()
    message = (getattr(e, "message", None) or str(e)).strip().splitlines()[0]
    for pattern in _TF_NOISE:
        message = pattern.sub("", message)
    message = re.sub(r"\s*\[Op:[^\]]*\].*$", "", message).strip()
    column = None
    m = re.search(r"(?:Key|Feature): ([^\s,]+?)[,.\s]", message)
    if m:
        column = m.group(1)
    row = None
    m = re.search(r"Index: (\d+)", message)
    if m and row0 is not None:
        row = row0 + int(m.group(1))
    if isinstance(e, t.errors.DataLossError):
        message = f"corrupt or truncated TFRecord file ({message})"
    elif column is not None:
        owner = next((s.name for s in specs if column in s.columns), column)
        if "could not be found" in message:
            message = f"feature '{column}' (tensor '{owner}') is missing from a record"
        else:
            message = (
                f"feature '{column}' (tensor '{owner}') does not match the metadata: {message}"
            )
    return DataError(message, path, row=row, column=column)


# ----------------------------------------------------------------------------- Arrow -> TF


def example_plan(table: pa.Table, specs: list[TensorSpec], path: str) -> list[tuple]:
    """Per-feature ``(key, kind, values, offsets)`` as Python lists, for ``serialize_rows``.

    ``offsets`` is None for a scalar column (one value per row), else the row offsets into the
    flat ``values``.
    """
    plan = []
    for spec in specs:
        for key in spec.columns:
            if key not in table.column_names:
                raise DataError(
                    f"the table has no column '{key}' for tensor '{spec.name}'; "
                    f"it has {table.column_names}",
                    path,
                    column=key,
                )
            col = table.column(key).combine_chunks()
            _no_nulls(col, path, key)
            kind = "int64_list" if spec.is_sparse and key == spec.columns[0] else KIND[spec.dtype]
            if pa.types.is_fixed_size_list(col.type):
                offsets = (np.arange(len(col) + 1, dtype=np.int64) * col.type.list_size).tolist()
            elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                offsets = (col.offsets.to_numpy() - col.offsets[0].as_py()).tolist()
            else:
                plan.append((key, kind, _pylist(col, kind, path, key), None))
                continue
            flat = col.flatten()
            _no_nulls(flat, path, key)
            plan.append((key, kind, _pylist(flat, kind, path, key), offsets))
    return plan


def _no_nulls(arr: pa.Array, path: str, key: str) -> None:
    if arr.null_count:
        row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("null values cannot be written to TFRecord", path, row, key)


def _pylist(arr: pa.Array, kind: str, path: str, key: str) -> list:
    t = arr.type
    if kind == "bytes_list":
        ok = pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t)
    elif kind == "int64_list":
        ok = pa.types.is_integer(t)
    else:
        ok = pa.types.is_floating(t) or pa.types.is_integer(t)
    if not ok:
        raise DataError(f"cannot write Arrow type {t} as a {kind}", path, column=key)
    if kind == "bytes_list":
        return pc.cast(arr, pa.binary()).to_pylist()
    return arr.to_numpy(zero_copy_only=False).tolist()


def serialize_rows(plan: list[tuple], n: int):
    """Yield the deterministic serialized ``tf.train.Example`` of each of the ``n`` rows."""
    Example = tf().train.Example
    for i in range(n):
        ex = Example()
        fmap = ex.features.feature
        for key, kind, values, offsets in plan:
            lst = getattr(fmap[key], kind)
            if offsets is None:
                lst.value.append(values[i])
            elif offsets[i] == offsets[i + 1]:
                lst.SetInParent()  # an empty list, not a feature of no kind
            else:
                lst.value.extend(values[offsets[i] : offsets[i + 1]])
        yield ex.SerializeToString(deterministic=True)
