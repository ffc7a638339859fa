"""A coordinate's input for one split: its files, format, metadata and row schema.

A :class:`Source` is plain, picklable data: it is built on the driver (where every check
runs before anything starts; :func:`raymix.coordinates.inputs.build_source` builds it from a
recipe) and shipped to the tasks, workers and actors that read it. This module finds the
files, checks them without reading them whole, and reads one file as an Arrow table in the
row convention, whatever its format.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from raymix import storage
from raymix.data.avro.photon_source import (
    PHOTON,
    PHOTON_SUFFIXES,
    check_photon_files,
    photon_columns,
    photon_entity_kind,
    photon_table,
)
from raymix.data.in_memory import (
    MEMORY,
    arrow_schema,
    check_tables,
    list_size,
    numbered,
    select_rows,
)
from raymix.data.metadata import Metadata, TensorSpec, load_feature_list
from raymix.data.parquet import (
    check_parquet_files,
    read_parquet_rows,
    read_parquet_with_metadata,
)
from raymix.data.rows import RowSchema
from raymix.errors import DataError

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecord.deflate", ".tfrecord.gz")
#: Records of every TFRecord file checked against the metadata before anything starts.
FIRST_RECORDS = 8
#: GDMix's discovery order (then Photon ML's Avro): the first pattern that matches any file wins.
DATA_PATTERNS = ("*.tfrecord", "*.tfrecord.deflate", "*.tfrecord.gz", "*.parquet", "*.avro")
KINDS = "*.tfrecord[.gz|.deflate], *.parquet or Photon *.avro"


@dataclass(frozen=True)
class Source:
    """Everything needed to read one coordinate's rows, for one split."""

    files: tuple[str, ...]
    format: str
    metadata: Metadata | None
    schema: RowSchema
    grouped_by: str | None = None
    #: format ``arrow``: the rows in memory, one table per name in ``files``
    tables: tuple[pa.Table, ...] | None = None
    #: ``schema.uid_from_row``: the uid of each file's first row
    first_uids: tuple[int, ...] | None = None
    #: format ``photon``: the bag's ``(name, term)`` per index (:mod:`~raymix.data.avro.photon_source`)
    names: tuple[tuple[str, str], ...] | None = None

    def tfrecord_metadata(self) -> Metadata:
        """The metadata TFRecord files are read with (a source built from a recipe has it)."""
        if self.metadata is None:
            raise DataError("TFRecord data needs a tensor_metadata.json", path=self.files[0])
        return self.metadata

    def tensors(self) -> list[str]:
        """Tensor names to read (TFRecord) - a sparse bag is one tensor, two Arrow columns."""
        names = [self.schema.uid]
        if not self.schema.label_optional or (self.metadata and self.schema.label in self.metadata):
            names.append(self.schema.label)
        names += [c for c in (self.schema.weight, self.schema.offset, self.schema.entity) if c]
        if self.schema.bag_columns:
            names += self.schema.bag_columns
        elif self.schema.bag:
            names.append(self.schema.bag)
        if self.metadata is not None:
            names = [n for n in names if n in self.metadata or n == self.schema.label]
        return list(dict.fromkeys(names))


def list_files(spec: str | tuple[str, ...], what: str) -> tuple[str, ...]:
    """Data files of a directory (GDMix discovery rule), a glob or an explicit list; local
    paths or URIs (``s3://bucket/train/``, ``gs://bucket/part-*.parquet``)."""
    entries = [spec] if isinstance(spec, str) else list(spec)
    files: list[str] = []
    for entry in entries:
        if storage.is_uri(entry):
            files += _list_uri(storage.normal(entry), what)
            continue
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
            raise DataError(f"{what}: no data files ({KINDS})", path=entry)
        for f in found:
            if not os.path.exists(f):  # a link to nowhere
                raise DataError(f"{what}: broken symbolic link to '{os.readlink(f)}'", path=f)
        files += [os.path.abspath(f) for f in found]
    return tuple(files)


def _list_uri(entry: str, what: str) -> list[str]:
    """:func:`list_files` of one URI: a glob, a prefix (GDMix's discovery rule) or an object."""
    if any(ch in entry for ch in "*?["):
        found = storage.glob(entry)
    elif storage.is_file(entry):
        found = [entry]
    elif storage.is_dir(entry):
        found = _discover_in(storage.walk(entry), entry)
    else:
        storage.check_reachable(entry)  # no bucket, no credentials: say so rather than "no file"
        raise DataError(f"{what}: no such file or directory", path=storage.shown(entry))
    if not found:
        raise DataError(f"{what}: no data files ({KINDS})", path=storage.shown(entry))
    return found


def _discover_in(files: list[str], directory: str) -> list[str]:
    """GDMix's discovery rule over the files under ``directory`` (any depth)."""
    for pattern in DATA_PATTERNS:
        found = [f for f in files if fnmatch.fnmatch(f.rpartition("/")[2], pattern)]
        if found:
            return sorted(found)
    return []


def _discover(directory: str) -> list[str]:
    for pattern in DATA_PATTERNS:
        found = sorted(glob.glob(os.path.join(directory, "**", pattern), recursive=True))
        if found:
            return found
    return []


def file_format(files: tuple[str, ...], declared: str) -> str:
    if declared != "auto":
        return declared
    kinds = {_kind(f) for f in files}
    if len(kinds) > 1:
        raise DataError(
            f"mixed {' and '.join(sorted(kinds))} files; set data.format", path=files[0]
        )
    return kinds.pop()


def _kind(path: str) -> str:
    if path.endswith(".parquet"):
        return "parquet"
    return PHOTON if path.endswith(PHOTON_SUFFIXES) else "tfrecord"


def check_files(source: Source) -> int:
    """Check every file of ``source`` without reading it all; return the rows seen.

    Parquet: each file's columns and their types, and that the entity column has one type
    (integers or strings) in every file; returns the number of rows. TFRecord: the first
    :data:`FIRST_RECORDS` records of each file against the metadata (keys, kinds, counts,
    bag indices; a corrupt start of file); returns the records checked (0: no data).
    """
    if source.format == MEMORY:
        return check_tables(source.tables or (), source.files, source.schema)
    if source.format == "parquet":
        return check_parquet_files(source.files, source.schema)
    if source.format == PHOTON:
        return sum(check_photon_files(source.files, source.schema, source.names))
    if source.grouped_by:  # SequenceExamples: checked by the grouped reader as it reads
        from raymix.data.tfrecord.framing import first_records

        return sum(len(first_records(path, FIRST_RECORDS)) for path in source.files)
    from raymix.data.tfrecord.tables import validate_against_metadata

    metadata = source.tfrecord_metadata()
    return sum(
        validate_against_metadata(path, metadata, source.tensors(), num_records=FIRST_RECORDS)
        for path in source.files
    )


def entity_kind(source: Source) -> str | None:
    """``"integers"`` or ``"strings"``: what the entity ids of ``source`` are (one kind in
    every file, :func:`check_files`), from the first Parquet file's schema or the metadata;
    None without an entity column. Two splits of one coordinate must agree: ids are grouped
    and sorted together, and ``3`` and ``"3"`` are not one entity."""
    entity = source.schema.entity
    if not entity:
        return None
    if source.format == PHOTON:
        return photon_entity_kind(source.files[0], entity)
    if source.tables or source.format == "parquet":
        from raymix.data.parquet import parquet_schema, value_type

        first = source.tables[0].schema if source.tables else parquet_schema(source.files[0])
        kind = value_type(first.field(entity).type)
        return "integers" if pa.types.is_integer(kind) else "strings"
    dtype = source.tfrecord_metadata()[entity].dtype
    return "integers" if dtype in ("long", "int") else "strings"


def read_table(source: Source, path: str) -> pa.Table:
    """Read one file of ``source`` as an Arrow table in the row convention (in a reading
    task: single-threaded). Rows without a uid column are numbered (``source.first_uids``)."""
    if source.first_uids is not None:
        first = source.first_uids[source.files.index(path)]
        return numbered(_read(source, path), source.schema.uid, first)
    return _read(source, path)


def _read(source: Source, path: str) -> pa.Table:
    if source.format == MEMORY:
        try:
            return select_rows((source.tables or ())[source.files.index(path)], source.schema)
        except DataError as exc:
            raise exc.with_location(path) from None
    if source.format == "parquet":
        return read_parquet_rows(path, source.schema)
    if source.format == PHOTON:
        return photon_table(path, photon_columns(source.schema), source.names)
    if source.grouped_by:
        from raymix.data.tfrecord.tables import read_grouped_tfrecord_file

        tensors = [t for t in source.tensors() if t != source.grouped_by]
        table = read_grouped_tfrecord_file(
            path, source.tfrecord_metadata(), source.grouped_by, [source.grouped_by, *tensors]
        )
        return table
    from raymix.data.tfrecord.tables import read_tfrecord_file

    return read_tfrecord_file(path, source.tfrecord_metadata(), source.tensors())


def bag_shape(
    bag: str,
    metadata: Metadata | None,
    metadata_path: str | None,
    feature_lists: str | None,
    files,
    tables: tuple[pa.Table, ...] | None = None,
) -> tuple[int | None, bool]:
    """(dimension, dense) of a feature bag: from the metadata; else, for a dense bag, a
    Parquet file's (or in-memory table's) column type: a fixed-size list, or a list whose
    first row gives the length of all; else a sparse bag's feature list (or None: one more
    than the largest index, known after the files are checked)."""
    if metadata is not None:
        if bag not in metadata:
            raise DataError(
                f"metadata has no feature bag '{bag}' (has {list(metadata.names)})",
                path=metadata_path,
            )
        spec: TensorSpec = metadata[bag]
        if not spec.shape:
            raise DataError(f"feature bag '{bag}' must have shape [dim]", path=metadata_path)
        return spec.shape[0], not spec.is_sparse
    # Parquet: a dense bag's size is in its type; a sparse bag's is its feature list's, else
    # one more than the largest index present (None here: found after the files are checked).
    schema = arrow_schema(files, tables)
    if bag not in schema.names and feature_lists:
        file = storage.join(feature_lists, bag) if storage.is_dir(feature_lists) else feature_lists
        if storage.is_file(file):
            return len(load_feature_list(file)), False
    if bag in schema.names:
        kind = schema.field(bag).type
        if pa.types.is_fixed_size_list(kind):
            return kind.list_size, True
        size = None
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            size = list_size(bag, files, tables)
        if size is None:
            raise DataError(
                f"a dense feature bag must be a list<float> or fixed_size_list column, got {kind}",
                path=files[0],
                column=bag,
            )
        return size, True
    return None, False


def list_data_files(dir_or_glob: str | os.PathLike) -> list[str]:
    """The data files of a directory, a glob or a single file, sorted (paths or URIs).

    A directory follows GDMix: its ``*.tfrecord`` files, else ``*.tfrecord.deflate``, else
    ``*.tfrecord.gz``; failing those, its ``*.parquet`` files.
    """
    where = str(dir_or_glob)
    if storage.is_uri(where):
        where = storage.normal(where)
        if storage.is_file(where):
            return [where]
        if storage.is_dir(where):
            names = storage.list_dir(where)
            for pattern in DATA_PATTERNS:
                found = [storage.join(where, n) for n in names if fnmatch.fnmatch(n, pattern)]
                found = [f for f in found if storage.is_file(f)]
                if found:
                    return sorted(found)
            raise DataError(
                f"no data files ({', '.join(DATA_PATTERNS)}) in the directory", storage.shown(where)
            )
        found = storage.glob(where)
        if not found:
            raise DataError("no data files match", storage.shown(where))
        return found
    if os.path.isdir(where):
        for pattern in DATA_PATTERNS:
            found = sorted(p for p in glob.glob(os.path.join(where, pattern)) if os.path.isfile(p))
            if found:
                return found
        raise DataError(f"no data files ({', '.join(DATA_PATTERNS)}) in the directory", where)
    if os.path.isfile(where):
        return [where]
    found = sorted(p for p in glob.glob(where) if os.path.isfile(p))
    if not found:
        raise DataError("no data files match", where)
    return found


def read_data_file(
    path: str | os.PathLike, metadata: Metadata, columns: Sequence[str] | None = None
) -> pa.Table:
    """Read one per-record data file, TFRecord or Parquet (by suffix), into rows."""
    path = storage.existing_file(path)
    if not path.endswith(".parquet"):
        from raymix.data.tfrecord.tables import read_tfrecord_file

        return read_tfrecord_file(path, metadata, columns)
    return read_parquet_with_metadata(path, metadata.select(columns))
