"""Read GDMix's per-entity grouped TFRecord layout (DataPartitioner output, GDMix §4.4).

One ``tf.train.SequenceExample`` per entity:

- context: the entity id as a scalar; every other dense tensor (uid, weight, offset, label, ...)
  as a list with one value (``k`` values for shape ``[k]``) per record of the entity;
- feature_lists: for each bag ``B``, ``B_indices`` and ``B_values`` with one Feature per record.

:func:`read_grouped_tfrecord_file` flattens this to one row per record, in the row convention
of :mod:`raymix.data.metadata`, entity by entity in file order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from raymix import storage
from raymix.data.metadata import Metadata, TensorSpec
from raymix.data.tfrecord import example_codec as codec
from raymix.errors import DataError

__all__ = ["read_grouped_tfrecord_file"]


def read_grouped_tfrecord_file(
    path: str | os.PathLike,
    metadata: Metadata,
    entity_column: str,
    columns: Sequence[str] | None = None,
    *,
    batch_size: int = 4096,
) -> pa.Table:
    """Read a grouped-per-entity TFRecord file into a table with one row per record.

    ``entity_column`` must be a dense scalar tensor of ``metadata``; its value is repeated on
    every record of the entity. ``columns`` are tensor names (default: all). Record counts that
    disagree between the tensors of one entity raise :class:`DataError` with ``row`` = the
    entity's position in the file.
    """
    path = str(path)
    if storage.is_uri(path):  # tf.data reads local files only: read a copy, name the URI
        with storage.local_copy(storage.existing_file(path)) as local:
            try:
                return read_grouped_tfrecord_file(
                    local, metadata, entity_column, columns, batch_size=batch_size
                )
            except DataError as exc:
                raise exc.with_location(storage.shown(path), exc.row) from None
    if not os.path.isfile(path):
        raise DataError("data file not found", path)
    entity = metadata[entity_column]
    if entity.is_sparse or entity.shape:
        raise DataError(
            f"entity column '{entity_column}' must be a dense scalar tensor, got shape "
            f"{list(entity.shape)} isSparse={entity.is_sparse}",
            path,
        )
    specs = metadata.select(columns)
    per_record = [s for s in specs if s.name != entity_column]
    # The record count of an entity comes from its per-record tensors: parse one if none asked.
    counters = per_record or [s for s in metadata.tensors if s.name != entity_column][:1]
    if not counters:
        raise DataError("the metadata has no per-record tensor besides the entity", path)

    t = codec.tf()
    for row, record in enumerate(codec.first_records(path, 1)):
        try:
            example = t.train.SequenceExample.FromString(record)
        except Exception as e:  # protobuf DecodeError
            raise DataError(f"record is not a tf.train.SequenceExample: {e}", path, row) from None
        _check_sequence_example(example, entity, counters, path, row)

    context = {entity.name: t.io.FixedLenFeature([], codec.tf_dtype(entity))}
    sequence = {}
    for s in counters:
        if s.is_sparse:
            sequence[s.columns[0]] = t.io.RaggedFeature(t.int64, row_splits_dtype=t.int64)
            sequence[s.columns[1]] = t.io.RaggedFeature(codec.tf_dtype(s), row_splits_dtype=t.int64)
        else:
            context[s.name] = t.io.RaggedFeature(codec.tf_dtype(s), row_splits_dtype=t.int64)

    def parse(x):
        ctx, seq, _ = t.io.parse_sequence_example(
            x, context_features=context, sequence_features=sequence or None
        )
        return {**ctx, **seq}

    ds = t.data.TFRecordDataset([path], compression_type=codec.compression_type(path))
    ds = ds.batch(batch_size).map(codec.counted(parse)).prefetch(1)
    chunks: dict[str, list[pa.Array]] = {}
    entities = 0
    rows = payload = 0
    try:
        for parsed, _, nbytes in ds:
            payload += int(nbytes)
            counts = _record_counts(parsed, counters, path, entities)
            for s in specs:
                for col, arr in zip(
                    s.columns, _flatten(parsed, s, entity, counts, path, rows), strict=True
                ):
                    chunks.setdefault(col, []).append(arr)
            entities += len(counts)
            rows += int(counts.sum())
    except t.errors.OpError as e:
        raise codec.tf_error(e, path, specs, None) from None
    codec.check_complete(path, entities, payload)
    return codec.finish_table(chunks, specs)


def _record_counts(parsed: dict, counters: list[TensorSpec], path: str, entity0: int) -> np.ndarray:
    """Records per entity of a batch; every per-record tensor must agree."""
    counts: np.ndarray | None = None
    first = ""
    for s in counters:
        if s.is_sparse:
            c = np.diff(parsed[s.columns[0]].row_splits.numpy())
            c_val = np.diff(parsed[s.columns[1]].row_splits.numpy())
            _agree(c, c_val, s.columns[0], s.columns[1], path, entity0)
            key = s.columns[0]
        else:
            k = s.shape[0] if s.shape else 1
            n_values = np.diff(parsed[s.name].row_splits.numpy())
            bad = n_values % k != 0
            if bad.any():
                e = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"entity has {int(n_values[e])} values of '{s.name}', not a multiple of "
                    f"its shape {list(s.shape)}",
                    path,
                    row=entity0 + e,
                    column=s.name,
                )
            c, key = n_values // k, s.name
        if counts is None:
            counts, first = c, key
        else:
            _agree(counts, c, first, key, path, entity0)
    if counts is None:
        raise DataError("no per-record tensor to count the records of an entity", path)
    return counts


def _agree(a: np.ndarray, b: np.ndarray, key_a: str, key_b: str, path: str, entity0: int) -> None:
    if not np.array_equal(a, b):
        e = int(np.flatnonzero(a != b)[0])
        raise DataError(
            f"entity has {int(a[e])} records of '{key_a}' but {int(b[e])} of '{key_b}'",
            path,
            row=entity0 + e,
            column=key_b,
        )


def _flatten(parsed, s: TensorSpec, entity: TensorSpec, counts, path: str, row0: int):
    if s.name == entity.name:
        return (codec.dense_array(np.repeat(parsed[s.name].numpy(), counts), s),)
    if s.is_sparse:
        idx, val = parsed[s.columns[0]].values, parsed[s.columns[1]].values  # one row per record
        return codec.bag_arrays(
            idx.row_splits.numpy(),
            idx.flat_values.numpy(),
            val.row_splits.numpy(),
            val.flat_values.numpy(),
            s,
            path,
            row0,
        )
    flat = parsed[s.name].flat_values.numpy()
    return (codec.dense_array(flat.reshape((-1, *s.shape)), s),)


def _check_sequence_example(
    example, entity: TensorSpec, counters: list[TensorSpec], path: str, row: int
) -> None:
    ctx = example.context.feature
    if entity.name not in ctx:
        raise DataError(
            f"entity feature '{entity.name}' is missing from the context", path, row, entity.name
        )
    problem = codec.feature_problem(ctx[entity.name], entity, entity.name, 1)
    if problem:
        raise DataError(problem, path, row=row, column=entity.name)
    lists = example.feature_lists.feature_list
    for s in counters:
        if not s.is_sparse:
            if s.name not in ctx:
                raise DataError(
                    f"feature '{s.name}' is missing from the context", path, row, s.name
                )
            problem = codec.feature_problem(ctx[s.name], s, s.name, None)
            if problem:
                raise DataError(problem, path, row=row, column=s.name)
            continue
        for key, spec in zip(
            s.columns, (TensorSpec(s.name, "long", s.shape, True), s), strict=True
        ):
            if key not in lists:
                raise DataError(
                    f"feature list '{key}' of bag '{s.name}' is missing", path, row, key
                )
            for feature in lists[key].feature:
                problem = codec.feature_problem(feature, spec, key, None)
                if problem:
                    raise DataError(problem, path, row=row, column=key)
