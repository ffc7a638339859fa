"""A pandas DataFrame (or an Arrow table) written as Parquet files in raymix's row convention.

:func:`write_dataset` is the one step between a DataFrame and files a recipe reads:

- ``bags={"global": ["age", "price"]}`` packs scalar columns into one dense bag column
  ``global: fixed_size_list<double>[2]`` and writes ``featureList/global`` (``age``,
  ``price``), so the models name their coefficients after the columns;
- an equal-length ``list<float>`` column becomes a ``fixed_size_list`` (a dense bag);
  ``B_indices``/``B_values`` pairs (a sparse bag) are written as they are;
- categorical (dictionary) columns are written as their values;
- without a ``uid`` column, one is added: the row number.

Files are ``DEST/part-00000.parquet``, ... (``rows_per_file`` rows each) and
``DEST/featureList/<bag>``; point ``Data(train=DEST, feature_lists=DEST/featureList)`` at them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raymix.data.metadata import write_feature_list
from raymix.errors import DataError
from raymix.files import atomic_path

__all__ = ["write_dataset"]

PART = "part-{:05d}.parquet"


def write_dataset(
    frame: Any,
    dest: str | os.PathLike,
    *,
    bags: Mapping[str, Sequence[str]] | None = None,
    uid: str = "uid",
    rows_per_file: int = 1_000_000,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``frame`` (a pandas DataFrame or a pyarrow Table) under ``dest`` in raymix's row
    convention (see the module docstring); return the files written, data files first.

    A non-empty ``dest`` is refused unless ``overwrite``, which replaces only files this
    function writes (``part-*.parquet``, ``featureList/<bag>``).
    """
    table = _as_table(frame)
    if rows_per_file <= 0:
        raise DataError(f"rows_per_file must be > 0, got {rows_per_file}")
    dest = Path(dest)
    _check_dest(dest, overwrite)
    table = conform_table(table, bags or {}, uid)
    written = []
    starts = range(0, max(table.num_rows, 1), rows_per_file)
    for number, start in enumerate(starts):
        path = dest / PART.format(number)
        with atomic_path(path) as tmp:
            pq.write_table(table.slice(start, rows_per_file), tmp)
        written.append(path)
    for stale in sorted(dest.glob("part-*.parquet")):
        if stale not in written:
            stale.unlink()
    for bag, columns in (bags or {}).items():
        path = dest / "featureList" / bag
        write_feature_list(path, [(name, "") for name in columns])
        written.append(path)
    return written


def conform_table(table: pa.Table, bags: Mapping[str, Sequence[str]], uid: str) -> pa.Table:
    """``table`` in the row convention: bags packed, lists fixed-size, dictionaries decoded,
    a uid added (the module docstring)."""
    for bag, columns in bags.items():
        table = _pack(table, bag, list(columns))
    for index, field in enumerate(table.schema):
        column = table.column(index)
        if pa.types.is_dictionary(field.type):
            table = table.set_column(index, field.name, column.cast(field.type.value_type))
        elif _is_float_list(field.type) and not field.name.endswith(("_indices", "_values")):
            table = table.set_column(index, field.name, _fixed_size(column, field.name))
    if uid not in table.column_names:
        table = table.append_column(uid, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    return table


def _as_table(frame: Any) -> pa.Table:
    if isinstance(frame, pa.Table):
        return frame
    if type(frame).__module__.startswith("pandas") and hasattr(frame, "columns"):
        return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    raise DataError(f"write_dataset takes a pandas DataFrame or a pyarrow Table, got {type(frame)}")


def _pack(table: pa.Table, bag: str, columns: list[str]) -> pa.Table:
    if not columns:
        raise DataError(f"bag '{bag}' names no columns")
    if bag in table.column_names and bag not in columns:
        raise DataError(f"bag '{bag}' would replace a column of that name", column=bag)
    values = np.empty((table.num_rows, len(columns)))
    for j, name in enumerate(columns):
        if name not in table.column_names:
            raise DataError(f"bag '{bag}': no such column (has {table.column_names})", column=name)
        column = table.column(name)
        kind = column.type
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            raise DataError(
                f"bag '{bag}': a feature column must hold numbers, got {kind}", column=name
            )
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"bag '{bag}': missing value", row=row, column=name)
        values[:, j] = column.to_numpy(zero_copy_only=False)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        raise DataError(
            f"bag '{bag}': value is NaN or infinite", row=int(bad[0, 0]), column=columns[bad[0, 1]]
        )
    packed = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), len(columns))
    return table.drop_columns(columns).append_column(bag, packed)


def _is_float_list(kind: pa.DataType) -> bool:
    return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_floating(
        kind.value_type
    )


def _fixed_size(column, name: str) -> pa.Array:
    """An equal-length list column as a fixed_size_list; else a DataError naming the row."""
    column = column.combine_chunks()
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    lengths = np.nan_to_num(lengths.astype(float), nan=-1)
    if len(lengths) and (lengths < 0).any():
        raise DataError("missing list", row=int(np.flatnonzero(lengths < 0)[0]), column=name)
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise DataError(
            f"a dense bag's lists must be of one length: row 0 holds {int(lengths[0])}, "
            f"this one {int(lengths[row])}",
            row=row,
            column=name,
        )
    size = int(lengths[0]) if len(lengths) else 0
    return pa.FixedSizeListArray.from_arrays(pc.list_flatten(column), size)


def _check_dest(dest: Path, overwrite: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise DataError("exists and is not a directory", path=str(dest))
    if not dest.is_dir() or overwrite:
        return
    if any(dest.iterdir()):
        raise DataError("directory is not empty (pass overwrite=True to replace)", path=str(dest))
