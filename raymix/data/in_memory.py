"""Rows given as Arrow tables instead of files, and what a reader needs to know of any data's
columns (which exist, how many rows each file has, how long a dense list is).

In-memory rows (a DataFrame or Table in a recipe, :mod:`raymix.recipe.memory`) make a
:class:`~raymix.data.source.Source` of format :data:`MEMORY`: its ``files`` are names such as
``<in memory: data.train>``, one per table in its ``tables``; :func:`raymix.data.source.
read_table` reads them as it reads a file, so every check and conversion is the one files get.
Data without a uid column get one by row number (:func:`numbered`), counted across files in
their order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymix.data.metadata import Metadata
from raymix.data.parquet import (
    check_columns,
    first_row_group_column,
    largest_index,
    parquet_metadata,
    parquet_schema,
)
from raymix.data.rows import RowSchema
from raymix.errors import DataError

#: a Source's format when its rows are Arrow tables in memory
MEMORY = "arrow"


def memory_name(split: str) -> str:
    """The name a table of ``split`` goes by where a file's path would (messages, ROW tags)."""
    return f"<in memory: data.{split}>"


def select_rows(table: pa.Table, schema: RowSchema) -> pa.Table:
    """The row-convention columns of ``schema`` from an in-memory table (the label too when it
    is optional and present), as :func:`raymix.data.parquet.read_parquet_rows` reads a file."""
    columns = schema.columns()
    if schema.label_optional and schema.label in table.column_names:
        columns.append(schema.label)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"missing column (has {table.column_names})", column=missing[0])
    return table.select(list(dict.fromkeys(columns)))


def numbered(table: pa.Table, uid: str, first: int) -> pa.Table:
    """``table`` with a uid column: its rows numbered from ``first``."""
    n = table.num_rows
    return table.append_column(uid, pa.array(np.arange(first, first + n, dtype=np.int64)))


def check_tables(tables: tuple[pa.Table, ...], names: tuple[str, ...], schema: RowSchema) -> int:
    """Columns and types of each table, as :func:`raymix.data.parquet.check_parquet_files`
    checks files; returns the number of rows."""
    entity_type = None
    for table, name in zip(tables, names, strict=True):
        entity_type = check_columns(table.schema, schema, name, entity_type)
    return sum(table.num_rows for table in tables)


def column_names(
    files: tuple[str, ...], fmt: str, tables: tuple[pa.Table, ...] | None, metadata: Metadata | None
) -> tuple[str, ...]:
    """The columns (tensors) the data has: the metadata's, else the first table's or file's."""
    if metadata is not None:
        return metadata.names
    if tables is not None:
        return tuple(tables[0].column_names)
    if fmt == "parquet":
        return tuple(parquet_schema(files[0]).names)
    return ()


def rows_per_file(files: tuple[str, ...], tables: tuple[pa.Table, ...] | None) -> list[int]:
    """Rows of each table or Parquet file, from the footers."""
    if tables is not None:
        return [table.num_rows for table in tables]
    return [parquet_metadata(path).num_rows for path in files]


def first_uids(counts: list[int]) -> tuple[int, ...]:
    """The uid of each file's first row when rows are numbered across files: 0, n0, n0+n1, ..."""
    return tuple(int(v) for v in np.concatenate([[0], np.cumsum(counts)[:-1]]))


def arrow_schema(files: tuple[str, ...], tables: tuple[pa.Table, ...] | None) -> pa.Schema:
    return tables[0].schema if tables is not None else parquet_schema(files[0])


def list_size(bag: str, files: tuple[str, ...], tables: tuple[pa.Table, ...] | None) -> int | None:
    """The length of a dense bag held as ``list<float>``: its first non-missing row's (every
    row is checked against it as it is read); None when no row has a list."""
    column = tables[0].column(bag) if tables is not None else first_row_group_column(files[0], bag)
    if column is None:
        return None
    lengths = pc.drop_null(pc.list_value_length(column))
    return int(lengths[0].as_py()) if len(lengths) else None


def largest_bag_index(bag: str, files: tuple[str, ...], tables: tuple[pa.Table, ...] | None) -> int:
    """The largest feature index of a sparse bag, over every table or file (-1: none)."""
    if tables is None:
        return largest_index(bag, files)
    top = -1
    for table in tables:
        flat = pc.list_flatten(table.column(f"{bag}_indices"))
        if len(flat):
            top = max(top, int(pc.max(flat).as_py()))
    return top
