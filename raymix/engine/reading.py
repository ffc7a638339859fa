"""Ray Data plans that read a :class:`~raymix.data.source.Source` (one task per file).

TFRecords are parsed with ``tf.data`` inside the tasks (``ray.data.read_tfrecords`` is ~100x
slower); Parquet with pyarrow. Rows come out in raymix's Arrow row convention.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raymix.data.rows import Rows, concat_rows, rows_from_table
from raymix.data.source import Source, read_table
from raymix.engine.cluster import OVERSUBSCRIBE
from raymix.errors import DataError

FILE, ROW = "__raymix_file", "__raymix_row"
# A read task is CPU-bound: give it one physical core's worth of Ray's (oversubscribed)
# logical CPUs, so a 2-core machine runs two at a time and reuses their worker processes
# (each pays TensorFlow's import once) instead of starting four.
READ_TASK_CPUS = OVERSUBSCRIBE


def read_dataset(source: Source, min_blocks: int = 1):
    """A Ray Dataset of ``source``'s rows: one read task per file, order preserved; with
    ``min_blocks`` > 1 the rows are re-cut into at least that many blocks (so that a split
    across workers gives each of them rows even from a single file)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.raise_original_map_exception = True  # a DataError, not Ray's UserCodeException
    items = [{"path": path} for path in source.files]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _read_files,
        fn_kwargs={"source": source},
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=READ_TASK_CPUS,
    )
    if min_blocks > len(items):
        dataset = dataset.repartition(min_blocks)
    return dataset


def _read_files(batch: pa.Table, source: Source) -> pa.Table:
    tables = []
    for path in batch.column("path").to_pylist():
        table = read_table(source, path)
        n = table.num_rows
        files = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([path]))
        table = table.append_column(FILE, files).append_column(
            ROW, pa.array(np.arange(n, dtype=np.int64))
        )
        tables.append(table)
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def rows_of_shard(shard, source: Source) -> Rows:
    """Materialise a Ray Data shard (iterator) as :class:`Rows`, sorted by uid.

    Sorting makes every sum over the shard independent of the order blocks arrive in, so
    a run is reproducible bit for bit.
    """
    parts = [
        _rows(table, source)
        for table in shard.iter_batches(batch_size=None, batch_format="pyarrow")
    ]
    rows = concat_rows(parts, source.schema.dim)
    if np.any(rows.uid[1:] < rows.uid[:-1]):  # files written in uid order need no copy
        rows.permute(np.argsort(rows.uid, kind="stable"))
    return rows


def _rows(table: pa.Table, source: Source) -> Rows:
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
