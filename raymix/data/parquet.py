"""Parquet files in raymix's row convention: footers checked against a row schema, rows read.

The row convention (README, "Data"; :mod:`raymix.data.rows`): scalar columns and each feature
bag either sparse (``B_indices: list<int>`` + ``B_values: list<float>``) or dense (``B:
fixed_size_list<float>[k]``). Checks read the footers only; a file is read whole by
:func:`read_parquet_rows`, on one thread (a reading task is one of a pool, one per core).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raymix import storage
from raymix.data.metadata import TensorSpec
from raymix.data.rows import RowSchema
from raymix.data.tfrecord import example_codec as codec
from raymix.errors import DataError


def _args(path: str) -> tuple:
    """``(where, memory_map, decryption_properties, filesystem)``, the first arguments of
    ``pyarrow.parquet``'s readers, for ``path``: a local path as it is (no filesystem), a URI
    as the path in its pyarrow filesystem (see :mod:`raymix.storage`)."""
    if not storage.is_uri(path):
        return path, False, None, None
    fs, inner = storage.filesystem(path)
    return inner, False, None, fs


def parquet_schema(path: str) -> pa.Schema:
    return parquet_metadata(path).schema.to_arrow_schema()


def parquet_metadata(path: str):
    try:
        return pq.read_metadata(*_args(path))
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"not a readable Parquet file: {one_line(exc)}", path=path) from None


def check_parquet_files(files, schema: RowSchema) -> int:
    """Columns and types of every file (see :func:`check_files`); returns the row count."""
    rows, entity_type = 0, None
    for path in files:
        footer = parquet_metadata(path)
        entity_type = check_columns(footer.schema.to_arrow_schema(), schema, path, entity_type)
        rows += footer.num_rows
    return rows


def check_columns(arrow: pa.Schema, schema: RowSchema, path: str, entity_type=None):
    """The columns of one file's (or table's) ``arrow`` schema against the row convention;
    ``entity_type`` is (type, path) of the entity ids seen before, returned updated."""
    for name in schema.columns():
        if name not in arrow.names:
            raise DataError(f"missing column (has {arrow.names})", path=path, column=name)
        kind = arrow.field(name).type
        expected, ok = _expected_type(name, schema)
        if not ok(kind):
            raise DataError(f"has type {kind}; expected {expected}", path=path, column=name)
    if schema.entity:
        kind = value_type(arrow.field(schema.entity).type)
        if entity_type is None:
            entity_type = (kind, path)
        elif pa.types.is_integer(kind) != pa.types.is_integer(entity_type[0]):
            raise DataError(
                f"entity ids are {kind} here but {entity_type[0]} in {entity_type[1]}; "
                "every file must use one type",
                path=path,
                column=schema.entity,
            )
    return entity_type


def value_type(kind: pa.DataType) -> pa.DataType:
    """A dictionary (categorical) column's value type; any other type as it is."""
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _expected_type(name: str, schema: RowSchema):
    """(description, predicate) of the Arrow types the row convention accepts for ``name``."""

    def leaf(kind, test, lists=(0, 1)):
        depth = 0
        while (
            pa.types.is_list(kind)
            or pa.types.is_large_list(kind)
            or pa.types.is_fixed_size_list(kind)
        ):
            kind, depth = kind.value_type, depth + 1
        return depth in lists and test(kind)

    def number(kind):
        return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)

    def text(kind):
        return (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
        )

    if name == schema.entity:
        return (
            "integers or strings",
            lambda k: pa.types.is_integer(value_type(k)) or text(value_type(k)),
        )
    if name in schema.bag_columns:
        return "numbers, one per row (a feature column)", lambda k: leaf(k, number, (0,))
    if name == schema.uid:
        return "integers", lambda k: leaf(k, pa.types.is_integer)
    if name == f"{schema.bag}_indices":
        return "lists of integers", lambda k: leaf(k, pa.types.is_integer, (1,))
    if name in (f"{schema.bag}_values", schema.bag):
        return "lists of numbers", lambda k: leaf(k, number, (1,))
    return "numbers (integer or floating point)", lambda k: leaf(k, number)


def first_row_group_column(path: str, name: str):
    """Column ``name`` of the first row group of a Parquet file (path or URI); None without
    row groups."""
    where, _, _, fs = _args(path)
    reader = pq.ParquetFile(where, filesystem=fs)
    return reader.read_row_group(0, columns=[name]).column(0) if reader.num_row_groups else None


def largest_index(bag: str, files) -> int:
    top = -1
    for file in files:
        column = pq.read_table(
            _args(file)[0], columns=[f"{bag}_indices"], filesystem=_args(file)[3]
        ).column(0)
        flat = pc.list_flatten(column)
        if len(flat):
            top = max(top, pc.max(flat).as_py())
    return top


def one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split())


def read_parquet_rows(path: str, schema: RowSchema, extra: tuple[str, ...] = ()) -> pa.Table:
    """The row-convention columns of ``schema`` and the ``extra`` ones from one file (the
    label too when it is optional and present)."""
    try:
        columns = schema.columns() + list(extra)
        if schema.label_optional and schema.label in pq.read_schema(*_args(path)).names:
            columns.append(schema.label)
        # one thread: a reading task is one of a pool of tasks, one per core (Arrow's own
        # threads made a 1M-row file of 50 dense floats read in 0.9 s instead of 0.5 s)
        return pq.read_table(
            _args(path)[0], columns=columns, use_threads=False, filesystem=_args(path)[3]
        )
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"cannot read Parquet file: {one_line(exc)}", path=path) from None


def read_parquet_with_metadata(path: str, specs: list[TensorSpec]) -> pa.Table:
    """The columns of ``specs`` from one file, cast to the metadata's types; bags checked."""
    names = [c for s in specs for c in s.columns]
    try:
        target = _parquet_target(path, pq.read_schema(*_args(path)), specs)
        table = pq.read_table(_args(path)[0], columns=names, filesystem=_args(path)[3])
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"cannot read Parquet: {e}", path) from None
    if not table.schema.equals(target):
        try:
            table = table.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise DataError(f"cannot cast to the metadata's types: {e}", path) from None
    for s in specs:
        if s.is_sparse:
            _check_bag(table, s, path)
    return table


def check_parquet_against_metadata(path: str, specs: list[TensorSpec]) -> int:
    """The file's footer holds every column of ``specs`` with a castable type; its row count."""
    try:
        footer = pq.read_metadata(*_args(path))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"cannot read Parquet: {e}", path) from None
    _parquet_target(path, footer.schema.to_arrow_schema(), specs)
    return footer.num_rows


def _check_bag(table: pa.Table, spec: TensorSpec, path: str) -> None:
    idx = table.column(spec.columns[0]).combine_chunks()
    val = table.column(spec.columns[1]).combine_chunks()
    io_, vo = idx.offsets.to_numpy(), val.offsets.to_numpy()
    codec.bag_arrays(
        io_ - io_[0],
        idx.flatten().to_numpy(zero_copy_only=False),
        vo - vo[0],
        val.flatten().to_numpy(zero_copy_only=False),
        spec,
        path,
        0,
    )


def _parquet_target(path: str, schema: pa.Schema, specs: list[TensorSpec]) -> pa.Schema:
    """The row-convention schema to cast a Parquet file to; DataError for a bad column."""
    fields = []
    for s in specs:
        for field in s.arrow_fields():
            if field.name not in schema.names:
                raise DataError(
                    f"column '{field.name}' of tensor '{s.name}' is missing; "
                    f"the file has {schema.names}",
                    path,
                    column=field.name,
                )
            have = schema.field(field.name).type
            if s.dtype in ("string", "bytes") and have == codec._binary_type(field.type):
                field = field.with_type(have)  # non-UTF-8 strings stay binary
            elif have != field.type and not _castable(have, field.type):
                raise DataError(
                    f"type {have} does not match the metadata (dtype '{s.dtype}', "
                    f"shape {list(s.shape)}, expected {field.type})",
                    path,
                    column=field.name,
                )
            fields.append(field)
    return pa.schema(fields)


def _castable(have: pa.DataType, want: pa.DataType) -> bool:
    def leaf(t: pa.DataType) -> pa.DataType:
        while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            t = t.value_type
        return t

    def depth(t: pa.DataType) -> int:
        return 1 + depth(t.value_type) if hasattr(t, "value_type") else 0

    numeric = pa.types.is_integer(leaf(have)) or pa.types.is_floating(leaf(have))
    want_numeric = pa.types.is_integer(leaf(want)) or pa.types.is_floating(leaf(want))
    return depth(have) == depth(want) and numeric and want_numeric
