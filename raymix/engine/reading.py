"""Ray Data plans that read a :class:`~raymix.data.source.Source` (one task per file).

TFRecords are parsed with ``tf.data`` inside the tasks (``ray.data.read_tfrecords`` is ~100x
slower); Parquet with pyarrow. Rows come out in raymix's Arrow row convention, each block
tagged with the file and the row within that file (``FILE``, ``ROW``) so that an error met
later names both.

The deep coordinate's plans (:func:`read_deep_dataset`, :func:`deep_score_dataset`) tokenize
the text column inside the read tasks, so that workers receive numbers only; its rows are
then cut into row-exact, contiguous ranges (:func:`split_rows`), one per worker, which a
worker turns into its resident :class:`~raymix.deep.inputs.Shard` (:func:`load_shard`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from raymix.data.rows import Rows, concat_rows, rows_from_table
from raymix.data.source import Source, read_table
from raymix.deep.inputs import (
    Shard,
    TextInput,
    pad_sparse,
    read_text_table,
    shard_of,
    texts_of,
    tokenized_table,
    tokens_of,
)
from raymix.engine.cluster import OVERSUBSCRIBE
from raymix.errors import DataError

FILE, ROW = "__raymix_file", "__raymix_row"
# A read task is CPU-bound: give it one physical core's worth of Ray's (oversubscribed)
# logical CPUs, so a 2-core machine runs two at a time and reuses their worker processes
# (each pays TensorFlow's import once) instead of starting four.
READ_TASK_CPUS = OVERSUBSCRIBE


def per_file(source: Source, read: Callable[..., pa.Table], **kwargs: Any):
    """A Ray Dataset of ``read(batch, source=source, **kwargs)`` over ``source``'s files: one
    read task per file, order preserved, a task's own error raised as it is."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.raise_original_map_exception = True  # a DataError, not Ray's UserCodeException
    items = [{"path": path} for path in source.files]
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        read,
        fn_kwargs={"source": source, **kwargs},
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=READ_TASK_CPUS,
    )


def read_dataset(source: Source, min_blocks: int = 1):
    """A Ray Dataset of ``source``'s rows: one read task per file, order preserved; with
    ``min_blocks`` > 1 the rows are re-cut into at least that many blocks (so that a split
    across workers gives each of them rows even from a single file)."""
    dataset = per_file(source, _read_files)
    if min_blocks > len(source.files):
        dataset = dataset.repartition(min_blocks)
    return dataset


def tagged(table: pa.Table, path: str) -> pa.Table:
    """``table`` with the columns ``FILE`` (``path``) and ``ROW`` (the row within the file)."""
    n = table.num_rows
    files = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([path]))
    return table.append_column(FILE, files).append_column(
        ROW, pa.array(np.arange(n, dtype=np.int64))
    )


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _read_files(batch: pa.Table, source: Source) -> pa.Table:
    return _concat([tagged(read_table(source, p), p) for p in batch.column("path").to_pylist()])


def rows_of_shard(shard, source: Source) -> Rows:
    """Materialise a Ray Data shard (iterator) as :class:`Rows`, sorted by uid.

    Sorting makes every sum over the shard independent of the order blocks arrive in, so
    a run is reproducible bit for bit.
    """
    parts = [
        rows_of_block(table, source)
        for table in shard.iter_batches(batch_size=None, batch_format="pyarrow")
    ]
    rows = concat_rows(parts, source.schema.dim)
    if np.any(rows.uid[1:] < rows.uid[:-1]):  # files written in uid order need no copy
        rows.permute(np.argsort(rows.uid, kind="stable"))
    return rows


def rows_of_block(table: pa.Table, source: Source) -> Rows:
    """Convert a block; an error names the file and the row within that file."""
    try:
        return rows_from_table(table, source.schema, source="input")
    except DataError as exc:
        if FILE not in table.column_names or exc.row is None:
            raise DataError(
                exc.reason,
                path=source.files[0] if len(source.files) == 1 else None,
                row=exc.row,
                column=exc.column,
            ) from None
        path = table.column(FILE)[exc.row].as_py()
        row = table.column(ROW)[exc.row].as_py()
        raise DataError(exc.reason, path=path, row=row, column=exc.column) from None


# the deep coordinate


def read_deep_dataset(source: Source, text: TextInput):
    """A Ray Dataset of ``source``'s rows with token ids: one read task per file, in order."""
    return per_file(source, _read_text_files, text=text)


def _read_text_files(batch: pa.Table, source: Source, text: TextInput) -> pa.Table:
    paths = batch.column("path").to_pylist()
    return _concat([tagged(tokenized_table(p, source, text), p) for p in paths])


def split_rows(dataset, world: int) -> list[list]:
    """Materialise ``dataset`` and cut it into ``world`` contiguous row ranges of blocks."""
    materialized = dataset.materialize()
    if world <= 1:
        return [materialized.to_arrow_refs()]
    n = materialized.count()
    cuts = [n * k // world for k in range(1, world)]
    return [part.to_arrow_refs() for part in materialized.split_at_indices(cuts)]


def load_shard(refs: list, source: Source, width: int) -> Shard:
    """A worker's blocks -> :class:`~raymix.deep.inputs.Shard` sorted by uid."""
    import ray

    tables = [t for t in ray.get(list(refs)) if t.num_rows]
    parts, tokens, lengths = [], [], []
    for table in tables:
        parts.append(rows_of_block(table, source))
        ids, length = tokens_of(table, width)
        tokens.append(ids)
        lengths.append(length)
    return shard_of(parts, tokens, lengths, source.schema.dim, width)


def deep_score_dataset(source: Source, directory: str):
    """A Ray Dataset of ``uid, score, offset, label`` (one read task per file) scored by the
    SavedModel's ``serving_default`` signature, i.e. from raw text, tokenizer included."""
    from raymix.deep.export import read_meta

    meta = read_meta(directory)
    return per_file(source, _score_files, text_column=meta["text_column"], directory=directory)


def _score_files(batch: pa.Table, source: Source, text_column: str, directory: str) -> pa.Table:
    from raymix.deep.export import score_rows

    tables = []
    for path in batch.column("path").to_pylist():
        table = read_text_table(source, text_column, path)
        rows = rows_from_table(table, source.schema, source=path)
        ids, values = pad_sparse(rows.X)
        scores = score_rows(directory, texts_of(table.column(text_column)), ids, values)
        tables.append(
            pa.table({"uid": rows.uid, "score": scores, "offset": rows.offset, "label": rows.label})
        )
    return _concat(tables)
