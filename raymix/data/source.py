"""Resolve a coordinate's input: files, format, metadata, feature names and row schema.

A :class:`Source` is plain, picklable data: it is built on the driver (where every check
runs before anything starts) and shipped to the tasks, workers and actors that read it.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Source:
    """Everything needed to read one coordinate's rows, for one split."""

    files: tuple[str, ...]
    format: str
    metadata: Metadata | None
    schema: RowSchema

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
            raise DataError(f"{what}: no such file or directory", path=entry)
        if not found:
            raise DataError(
                f"{what}: no data files (*.tfrecord[.gz|.deflate] or *.parquet)", path=entry
            )
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
) -> Source:
    """Resolve files and schema of ``split`` ('train' or 'validation') and check them."""
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
    )
    if fmt == "parquet":
        _check_parquet_schema(files[0], schema)
    return Source(files=files, format=fmt, metadata=metadata, schema=schema)


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
) -> tuple[int, bool]:
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
    # Parquet with neither: the dimension is one more than the largest index present.
    schema = pq.read_schema(files[0])
    if bag in schema.names:
        return schema.field(bag).type.list_size, True
    top = -1
    for file in files:
        column = pq.read_table(file, columns=[f"{bag}_indices"]).column(0)
        flat = pc.list_flatten(column)
        if len(flat):
            top = max(top, pc.max(flat).as_py())
    return top + 1, False


def _check_parquet_schema(path: str, schema: RowSchema) -> None:
    try:
        arrow = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"not a readable Parquet file: {exc}", path=path) from None
    for name in schema.columns():
        if name not in arrow.names:
            raise DataError(f"missing column (has {arrow.names})", path=path, column=name)


def read_table(source: Source, path: str) -> pa.Table:
    """Read one file of ``source`` as an Arrow table in the row convention."""
    if source.format == "parquet":
        try:
            columns = source.schema.columns()
            if source.schema.label_optional and source.schema.label in pq.read_schema(path).names:
                columns.append(source.schema.label)
            return pq.read_table(path, columns=columns)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(f"cannot read Parquet file: {exc}", path=path) from None
    from raymix.data.tfrecord import read_tfrecord_file

    return read_tfrecord_file(path, source.metadata, source.tensors())
