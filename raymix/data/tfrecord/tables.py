"""Read and write GDMix TFRecord data as Arrow tables of rows (see :mod:`raymix.data.metadata`).

Reading a per-record file never imports TensorFlow: compiled kernels
(:mod:`raymix.data.tfrecord.example_reader`) check the framing and CRCs and decode the requested keys
with ``tf.io.parse_example``'s semantics, and their row splits become Arrow list offsets
directly, with no Python loop per row. Writing, and reading the grouped layout, use
TensorFlow, imported on first use, never at module import.

Layouts:

- per-record (GDMix §4.3): one ``tf.train.Example`` per row; a bag ``B`` is ``B_indices``
  (Int64List) + ``B_values`` (FloatList); a dense scalar is a one-element list.
- grouped per entity (GDMix §4.4, DataPartitioner output): one ``tf.train.SequenceExample``
  per entity; the entity id is a scalar in the context, every other dense tensor is a context
  list with one value per record, and each bag is a pair of feature lists ``B_indices`` /
  ``B_values`` with one Feature per record. :func:`read_grouped_tfrecord_file` flattens it
  back to one row per record.

Compression follows the suffix: ``.tfrecord`` none, ``.tfrecord.gz`` GZIP,
``.tfrecord.deflate`` ZLIB.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from raymix.data.metadata import Metadata, TensorSpec
from raymix.data.parquet import check_parquet_against_metadata
from raymix.data.tfrecord import example_codec as codec
from raymix.data.tfrecord import example_reader
from raymix.data.tfrecord.example_codec import compression_type
from raymix.data.tfrecord.framing import example_class, first_records
from raymix.data.tfrecord.grouped import read_grouped_tfrecord_file
from raymix.errors import DataError
from raymix.files import atomic_path
from raymix.storage import existing_file

__all__ = [
    "compression_type",
    "first_records",
    "read_grouped_tfrecord_file",
    "read_tfrecord_file",
    "validate_against_metadata",
    "write_tfrecord_file",
]

_BATCH = 65536


def read_tfrecord_file(
    path: str | os.PathLike,
    metadata: Metadata,
    columns: Sequence[str] | None = None,
    *,
    batch_size: int = _BATCH,
) -> pa.Table:
    """Read a per-record TFRecord file of ``tf.train.Example`` into a table of rows.

    ``columns`` are tensor names (default: every feature and label of ``metadata``); the table
    has their columns in the row convention, in that order, built in chunks of ``batch_size``
    rows. A tensor missing from the records, a type that does not match the metadata, a bag
    index outside ``[0, dim)``, or a corrupt / truncated file raises :class:`DataError` naming
    the file (and feature and row when known). A record that lacks a bag's keys altogether has
    an empty bag, as in ``tf.io.SparseFeature``, except the first record, which
    :func:`validate_against_metadata` checks: it must hold every key.
    """
    path = existing_file(path)
    specs = metadata.select(columns)
    if not specs:
        raise DataError("no tensors to read: columns is empty", path)
    failure = None
    try:
        found = example_reader.read_examples(path, example_reader.fields_of(specs))
        table = _rows_table(found, specs, path, batch_size)
    except DataError as e:
        failure = e
    # The first-record check (every key present; kinds and counts) reports first, as it always
    # did. Needed only after a failure, or when a bag of the first record is empty: absent?
    if failure is not None or _first_bag_empty(found, specs):
        validate_against_metadata(path, metadata, [s.name for s in specs], num_records=1)
    if failure is not None:
        raise failure
    return table


def _first_bag_empty(found: dict[str, example_reader.Column], specs: list[TensorSpec]) -> bool:
    return any(
        len(found[c].splits) > 1 and found[c].splits[1] == 0
        for s in specs
        if s.is_sparse
        for c in s.columns
    )


def _rows_table(
    found: dict[str, example_reader.Column], specs: list[TensorSpec], path: str, batch_size: int
) -> pa.Table:
    """The row-convention table of the decoded columns (``example_codec`` helpers, as for TF)."""
    n = len(found[specs[0].columns[0]].splits) - 1
    chunks: dict[str, list[pa.Array]] = {}
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        for s in specs:
            arrays: tuple[pa.Array, ...]
            if s.is_sparse:
                splits_i, indices = found[s.columns[0]].rows(lo, hi)
                splits_v, values = found[s.columns[1]].rows(lo, hi)
                if isinstance(values, pa.Array):  # a bag of bytes: as TF's numpy objects
                    values = values.to_numpy(zero_copy_only=False)
                arrays = codec.bag_arrays(splits_i, indices, splits_v, values, s, path, lo)
            else:
                _, values = found[s.name].rows(lo, hi)
                arrays = (_dense_array(values, s, hi - lo),)
            for col, arr in zip(s.columns, arrays, strict=True):
                chunks.setdefault(col, []).append(arr)
    return codec.finish_table(chunks, specs)


def _dense_array(values, spec: TensorSpec, rows: int) -> pa.Array:
    if not isinstance(values, pa.Array):
        return codec.dense_array(values.reshape((rows, *spec.shape)), spec)
    if not spec.shape:  # bytes: already the flat Arrow array that values_array would build
        return values
    return codec.list_array(np.arange(rows + 1, dtype=np.int64) * spec.shape[0], values)


def validate_against_metadata(
    path: str | os.PathLike,
    metadata: Metadata,
    columns: Sequence[str] | None = None,
    *,
    num_records: int = 8,
) -> int:
    """Cheaply check that a data file holds ``columns`` as ``metadata`` describes them.

    For TFRecord, decodes the first ``num_records`` Examples and checks each tensor's keys,
    kinds (Int64List / FloatList / BytesList) and value counts; for Parquet, checks the schema.
    Raises :class:`DataError` naming the file, the feature and the row. Returns the number of
    records checked (TFRecord; 0 for an empty file) or the file's row count (Parquet).
    """
    path = existing_file(path)
    specs = metadata.select(columns)
    if path.endswith(".parquet"):
        return check_parquet_against_metadata(path, specs)
    records = first_records(path, num_records)  # no TensorFlow import for a check
    example_type = example_class()
    for row, record in enumerate(records):
        try:
            example = example_type.FromString(record)
        except Exception as e:  # protobuf DecodeError
            raise DataError(f"record is not a tf.train.Example: {e}", path, row=row) from None
        codec.check_example(example.features.feature, specs, path, row)
    return len(records)


def write_tfrecord_file(
    table: pa.Table,
    path: str | os.PathLike,
    metadata: Metadata,
    columns: Sequence[str] | None = None,
) -> int:
    """Write ``table`` (row convention) as ``tf.train.Example`` records; returns the row count.

    Writes the tensors ``columns`` (default: all of ``metadata``), compressed by the suffix of
    ``path``. The file appears atomically, and the same table gives byte-identical bytes.
    """
    path = str(path)
    specs = metadata.select(columns)
    plan = codec.example_plan(table, specs, path)
    t = codec.tf()
    options = t.io.TFRecordOptions(compression_type=compression_type(path))
    with atomic_path(path) as tmp, t.io.TFRecordWriter(str(tmp), options) as writer:
        for record in codec.serialize_rows(plan, table.num_rows):
            writer.write(record)
    return table.num_rows
