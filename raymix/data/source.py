"""Resolve a coordinate's input: files, format, metadata, feature names and row schema.

A :class:`Source` is plain, picklable data: it is built on the driver (where every check
runs before anything starts) and shipped to the tasks, workers and actors that read it.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raymix.data.metadata import Metadata, TensorSpec, load_feature_list, load_metadata
from raymix.data.rows import RowSchema
from raymix.errors import DataError, RecipeError
from raymix.recipe.spec import Columns, Data

_TFRECORD_SUFFIXES = (".tfrecord", ".tfrecord.deflate", ".tfrecord.gz")
#: Records of every TFRecord file checked against the metadata before anything starts.
FIRST_RECORDS = 8


@dataclass(frozen=True)
class Source:
    """Everything needed to read one coordinate's rows, for one split."""

    files: tuple[str, ...]
    format: str
    metadata: Metadata | None
    schema: RowSchema
    grouped_by: str | None = None

    def tensors(self) -> list[str]:
        """Tensor names to read (TFRecord) - a sparse bag is one tensor, two Arrow columns."""
        names = [self.schema.uid]
        if not self.schema.label_optional or (self.metadata and self.schema.label in self.metadata):
            names.append(self.schema.label)
        names += [c for c in (self.schema.weight, self.schema.offset, self.schema.entity) if c]
        if self.schema.bag:
            names.append(self.schema.bag)
        if self.metadata is not None:
            names = [n for n in names if n in self.metadata or n == self.schema.label]
        return list(dict.fromkeys(names))


def list_files(spec: str | tuple[str, ...], what: str) -> tuple[str, ...]:
    """Data files of a directory (GDMix discovery rule), a glob or an explicit list."""
    entries = [spec] if isinstance(spec, str) else list(spec)
    files: list[str] = []
    for entry in entries:
        if any(ch in entry for ch in "*?["):
            found = sorted(glob.glob(entry, recursive=True))
        elif os.path.isdir(entry):
            found = _discover(entry)
        elif os.path.isfile(entry):
            found = [entry]
        else:
            found = [entry] if os.path.islink(entry) else []
            if not found:
                raise DataError(f"{what}: no such file or directory", path=entry)
        found = [f for f in found if not os.path.isdir(f)]
        if not found:
            raise DataError(
                f"{what}: no data files (*.tfrecord[.gz|.deflate] or *.parquet)", path=entry
            )
        for f in found:
            if not os.path.exists(f):  # a link to nowhere
                raise DataError(f"{what}: broken symbolic link to '{os.readlink(f)}'", path=f)
        files += found
    return tuple(os.path.abspath(f) for f in files)


def _discover(directory: str) -> list[str]:
    for pattern in ("*.tfrecord", "*.tfrecord.deflate", "*.tfrecord.gz", "*.parquet"):
        found = sorted(glob.glob(os.path.join(directory, "**", pattern), recursive=True))
        if found:
            return found
    return []


def file_format(files: tuple[str, ...], declared: str) -> str:
    if declared != "auto":
        return declared
    kinds = {"parquet" if f.endswith(".parquet") else "tfrecord" for f in files}
    if len(kinds) > 1:
        raise DataError("mixed TFRecord and Parquet files; set data.format", path=files[0])
    return kinds.pop()


def build_source(
    data: Data,
    columns: Columns,
    *,
    split: str,
    bag: str | None,
    entity: str | None = None,
    label_optional: bool = False,
    task: str | None = None,
) -> Source:
    """Resolve files and schema of ``split`` ('train' or 'validation') and check them.

    Every file is checked before anything starts: Parquet schemas (columns and types), the
    first records of TFRecord files against the metadata; data with no rows is refused.
    ``task`` (a coordinate's) makes the readers check labels (0/1 for logistic).
    """
    spec = data.train if split == "train" else data.validation
    if spec is None:
        raise RecipeError(f"data.{split}: no {split} data given")
    files = list_files(spec, f"data.{split}")
    fmt = file_format(files, data.format)
    metadata = load_metadata(data.metadata) if data.metadata else None
    if fmt == "tfrecord" and metadata is None:
        raise RecipeError(
            "TFRecord data needs data.metadata (a tensor_metadata.json)", field="data.metadata"
        )
    if fmt == "tfrecord" and any(not f.endswith(_TFRECORD_SUFFIXES) for f in files):
        bad = next(f for f in files if not f.endswith(_TFRECORD_SUFFIXES))
        raise DataError(
            "not a TFRecord file (expected .tfrecord, .tfrecord.gz or .tfrecord.deflate)", path=bad
        )
    dim, dense = 0, False
    if bag:
        dim, dense = _bag_shape(bag, metadata, files, fmt, data)
    required = [columns.uid] + [c for c in (columns.weight, columns.offset, entity) if c]
    if not label_optional:
        required.append(columns.label)
    if metadata is not None:
        for name in required:
            if name not in metadata:
                raise DataError(
                    f"metadata has no tensor '{name}' (has {list(metadata.names)})",
                    path=data.metadata,
                )
    schema = RowSchema(
        uid=columns.uid,
        label=columns.label,
        weight=columns.weight,
        offset=columns.offset,
        bag=bag,
        dim=dim,
        dense_bag=dense,
        entity=entity,
        label_optional=label_optional,
        task=task,
    )
    if data.grouped_by is not None:
        if fmt != "tfrecord":
            raise RecipeError(
                "grouped_by reads GDMix's grouped TFRecord layout only", field="data.grouped_by"
            )
        if data.grouped_by not in metadata:
            raise DataError(
                f"metadata has no tensor '{data.grouped_by}' to group by", path=data.metadata
            )
    source = Source(
        files=files, format=fmt, metadata=metadata, schema=schema, grouped_by=data.grouped_by
    )
    if not check_files(source):
        raise DataError(
            f"data.{split}: no rows in {len(files)} file(s)",
            path=spec if isinstance(spec, str) else files[0],
        )
    if dim is None:  # Parquet with neither metadata nor feature list
        schema = dataclasses.replace(schema, dim=_largest_index(bag, files) + 1)
        source = dataclasses.replace(source, schema=schema)
    return source


def check_files(source: Source) -> int:
    """Check every file of ``source`` without reading it all; return the rows seen.

    Parquet: each file's columns and their types, and that the entity column has one type
    (integers or strings) in every file; returns the number of rows. TFRecord: the first
    :data:`FIRST_RECORDS` records of each file against the metadata (keys, kinds, counts,
    bag indices; a corrupt start of file); returns the records checked (0: no data).
    """
    if source.format == "parquet":
        return _check_parquet_files(source.files, source.schema)
    if source.grouped_by:  # SequenceExamples: checked by the grouped reader as it reads
        from raymix.data.tfrecord_light import first_records

        return sum(len(first_records(path, FIRST_RECORDS)) for path in source.files)
    from raymix.data.tfrecord import validate_against_metadata

    return sum(
        validate_against_metadata(
            path, source.metadata, source.tensors(), num_records=FIRST_RECORDS
        )
        for path in source.files
    )


def feature_names(data: Data, bag: str | None, dim: int) -> list[tuple[str, str]] | None:
    """(name, term) per feature index of ``bag`` from GDMix's featureList, or None."""
    if not bag or not data.feature_lists:
        return None
    path = Path(data.feature_lists)
    file = path / bag if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"no feature list for bag '{bag}'", path=str(file))
    names = load_feature_list(file)
    if len(names) != dim:
        raise DataError(
            f"feature list has {len(names)} entries but bag '{bag}' has dimension {dim}",
            path=str(file),
        )
    return names


def _bag_shape(
    bag: str, metadata: Metadata | None, files, fmt: str, data: Data
) -> tuple[int | None, bool]:
    if metadata is not None:
        if bag not in metadata:
            raise DataError(
                f"metadata has no feature bag '{bag}' (has {list(metadata.names)})",
                path=data.metadata,
            )
        spec: TensorSpec = metadata[bag]
        if not spec.shape:
            raise DataError(f"feature bag '{bag}' must have shape [dim]", path=data.metadata)
        return spec.shape[0], not spec.is_sparse
    if data.feature_lists:
        path = Path(data.feature_lists)
        file = path / bag if path.is_dir() else path
        if file.is_file():
            return len(load_feature_list(file)), False
    # Parquet with neither: a dense bag's size is in its type; a sparse bag's dimension is
    # one more than the largest index present (None here: found after the files are checked).
    schema = _parquet_schema(files[0])
    if bag in schema.names:
        kind = schema.field(bag).type
        if not pa.types.is_fixed_size_list(kind):
            raise DataError(
                f"a dense feature bag must be a fixed_size_list column, got {kind}",
                path=files[0],
                column=bag,
            )
        return kind.list_size, True
    return None, False


def _largest_index(bag: str, files) -> int:
    top = -1
    for file in files:
        column = pq.read_table(file, columns=[f"{bag}_indices"]).column(0)
        flat = pc.list_flatten(column)
        if len(flat):
            top = max(top, pc.max(flat).as_py())
    return top


def _parquet_schema(path: str) -> pa.Schema:
    return _parquet_metadata(path).schema.to_arrow_schema()


def _parquet_metadata(path: str):
    try:
        return pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"not a readable Parquet file: {_one_line(exc)}", path=path) from None


def _check_parquet_files(files, schema: RowSchema) -> int:
    """Columns and types of every file (see :func:`check_files`); returns the row count."""
    rows, entity_type = 0, None
    for path in files:
        footer = _parquet_metadata(path)
        arrow = footer.schema.to_arrow_schema()
        for name in schema.columns():
            if name not in arrow.names:
                raise DataError(f"missing column (has {arrow.names})", path=path, column=name)
            kind = arrow.field(name).type
            expected, ok = _expected_type(name, schema)
            if not ok(kind):
                raise DataError(f"has type {kind}; expected {expected}", path=path, column=name)
        if schema.entity:
            kind = arrow.field(schema.entity).type
            if entity_type is None:
                entity_type = (kind, path)
            elif pa.types.is_integer(kind) != pa.types.is_integer(entity_type[0]):
                raise DataError(
                    f"entity ids are {kind} here but {entity_type[0]} in {entity_type[1]}; "
                    "every file must use one type",
                    path=path,
                    column=schema.entity,
                )
        rows += footer.num_rows
    return rows


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
        return "integers or strings", lambda k: pa.types.is_integer(k) or text(k)
    if name == schema.uid:
        return "integers", lambda k: leaf(k, pa.types.is_integer)
    if name == f"{schema.bag}_indices":
        return "lists of integers", lambda k: leaf(k, pa.types.is_integer, (1,))
    if name in (f"{schema.bag}_values", schema.bag):
        return "lists of numbers", lambda k: leaf(k, number, (1,))
    return "numbers (integer or floating point)", lambda k: leaf(k, number)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def read_table(source: Source, path: str) -> pa.Table:
    """Read one file of ``source`` as an Arrow table in the row convention (in a reading
    task: single-threaded)."""
    if source.format == "parquet":
        try:
            columns = source.schema.columns()
            if source.schema.label_optional and source.schema.label in pq.read_schema(path).names:
                columns.append(source.schema.label)
            # one thread: a reading task is one of a pool of tasks, one per core (Arrow's own
            # threads made a 1M-row file of 50 dense floats read in 0.9 s instead of 0.5 s)
            return pq.read_table(path, columns=columns, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read Parquet file: {_one_line(exc)}", path=path) from None
    if source.grouped_by:
        from raymix.data.tfrecord import read_grouped_tfrecord_file

        tensors = [t for t in source.tensors() if t != source.grouped_by]
        table = read_grouped_tfrecord_file(
            path, source.metadata, source.grouped_by, [source.grouped_by, *tensors]
        )
        return table
    from raymix.data.tfrecord import read_tfrecord_file

    return read_tfrecord_file(path, source.metadata, source.tensors())
