"""Rows routed by entity to the random effects' bucket actors, without Ray.

:func:`route_file` reads one file and splits its rows by ``stable_bucket(entity) % n_actors``
into one table per actor, each row tagged with its position in the file (``ROW``) and its
bucket (``BUCKET``). :func:`rows_of_parts` turns the parts one actor received, from every
file, into one :class:`~raymix.data.rows.Rows` and the bucket of each row. The engine moves
the parts between processes (``raymix.engine.routing``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from raymix.data.grouping import stable_bucket
from raymix.data.rows import Rows, concat_rows, rows_from_table
from raymix.data.source import Source, read_table
from raymix.errors import DataError

ROW = "__raymix_row"  # a routed row's position in its file
BUCKET = "__raymix_bucket"  # a routed row's bucket


def route_file(source: Source, path: str, n_actors: int, n_buckets: int) -> list[pa.Table]:
    """Read one file and split its rows into one table per actor (by entity bucket)."""
    table = _narrow_indices(read_table(source, path), source)
    n = table.num_rows
    table = table.append_column(ROW, pa.array(np.arange(n, dtype=np.int64)))
    entity = source.schema.entity
    column = table.column(entity)
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("missing entity id", path=path, row=row, column=entity)
    values = column.to_numpy(zero_copy_only=False)
    buckets = stable_bucket(values, n_buckets)
    table = table.append_column(BUCKET, pa.array(buckets))
    if n_actors == 1:  # every row is the one actor's: no copy
        return [table]
    owner = buckets % n_actors
    return [table.take(pa.array(np.flatnonzero(owner == a))) for a in range(n_actors)]


def _narrow_indices(table: pa.Table, source: Source) -> pa.Table:
    """The bag's indices as int32 when every index fits (a bag's dimension below 2^31): half
    the bytes of the routed parts in the object store and in the actors that read them.
    An index outside ``[0, dim)`` is left as it is, for the actor's check to name its row."""
    schema = source.schema
    name = f"{schema.bag}_indices"
    if not schema.bag or schema.dense_bag or schema.dim >= np.iinfo(np.int32).max:
        return table
    column = table.column(name)
    if column.type.value_type == pa.int32():
        return table
    flat = pc.list_flatten(column)
    if len(flat) and (pc.min(flat).as_py() < 0 or pc.max(flat).as_py() >= schema.dim):
        return table
    narrow = column.cast(pa.list_(pa.int32()))
    return table.set_column(table.schema.get_field_index(name), name, narrow)


def rows_of_parts(parts: Iterable[tuple[str, pa.Table]], source: Source) -> tuple[Rows, np.ndarray]:
    """One actor's routed parts, ``(file, table)`` of every file in turn, as one :class:`Rows`
    (features as CSR, the per-entity solver's layout) and the bucket of each row.

    A part is converted as soon as it comes and then let go: ``parts`` may fetch each one
    on demand, so that only one routed table is held at a time. An error names the file and
    the row within the file."""
    rows, buckets = [], []
    kinds = set()
    for path, table in parts:
        try:
            part = rows_from_table(table, source.schema, source=path)
        except DataError as exc:
            row = None if exc.row is None else int(table.column(ROW)[exc.row].as_py())
            raise exc.with_location(path=path, row=row) from None
        if len(part) and part.entity is not None:
            kinds.add(part.entity.dtype.kind)
            if len(kinds) > 1:
                raise DataError(
                    "entity ids of mixed types across files (integers and strings)",
                    path=path,
                    column=source.schema.entity,
                )
        rows.append(part)
        buckets.append(table.column(BUCKET).to_numpy())
    merged = concat_rows(rows, source.schema.dim)
    if not sp.issparse(merged.X):  # a dense bag: the per-entity solver reads CSR
        merged.X = sp.csr_matrix(merged.X)
    if merged.entity is None:
        merged.entity = np.zeros(0, np.int64)
    bucket = np.concatenate(buckets) if buckets else np.zeros(0, np.int64)
    return merged, bucket
