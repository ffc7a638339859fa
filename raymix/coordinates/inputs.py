"""A coordinate's inputs from its recipe: the :class:`~raymix.data.source.Source` of each split
and the feature names of its bag.

Where a recipe's :class:`~raymix.recipe.spec.Data` meets the data formats: every file is
resolved and checked here, on the driver, before anything starts.
"""

from __future__ import annotations

import dataclasses

from raymix import storage
from raymix.data.avro.photon_source import PHOTON, check_photon_files, photon_fields, photon_names
from raymix.data.in_memory import (
    MEMORY,
    column_names,
    first_uids,
    largest_bag_index,
    memory_name,
    rows_per_file,
)
from raymix.data.metadata import load_feature_list, load_metadata
from raymix.data.rows import RowSchema
from raymix.data.source import (
    TFRECORD_SUFFIXES,
    Source,
    bag_shape,
    check_files,
    file_format,
    list_files,
)
from raymix.errors import DataError, RecipeError
from raymix.recipe.memory import InMemory
from raymix.recipe.spec import Columns, Data


def build_source(
    data: Data,
    columns: Columns,
    *,
    split: str,
    bag: str | tuple[str, ...] | None,
    entity: str | None = None,
    label_optional: bool = False,
    task: str | None = None,
) -> Source:
    """Resolve files and schema of ``split`` ('train' or 'validation') and check them.

    Every file is checked before anything starts: Parquet schemas (columns and types), the
    first records of TFRecord files against the metadata; data with no rows is refused.
    ``task`` (a coordinate's) makes the readers check labels (0/1 for logistic). ``bag`` is
    a bag's name or a tuple of scalar feature columns. Rows may be in memory (an
    :class:`~raymix.recipe.memory.InMemory`); rows in memory without the default ``uid``
    column are numbered, and Parquet or in-memory rows without the default ``weight`` column
    weigh 1.
    """
    spec = data.train if split == "train" else data.validation
    if spec is None:
        raise RecipeError(f"data.{split}: no {split} data given")
    tables = None
    files: tuple[str, ...]
    if isinstance(spec, InMemory):
        files, fmt, tables = (memory_name(split),), MEMORY, (_held_table(spec, split),)
    else:
        files = list_files(spec, f"data.{split}")
        fmt = file_format(files, data.format)
    metadata = load_metadata(data.metadata) if data.metadata else None
    if fmt == "tfrecord" and metadata is None:
        raise RecipeError(
            "TFRecord data needs data.metadata (a tensor_metadata.json)", field="data.metadata"
        )
    if fmt == "tfrecord" and any(not f.endswith(TFRECORD_SUFFIXES) for f in files):
        bad = next(f for f in files if not f.endswith(TFRECORD_SUFFIXES))
        raise DataError(
            "not a TFRecord file (expected .tfrecord, .tfrecord.gz or .tfrecord.deflate)", path=bad
        )
    dim: int | None = 0
    dense = False
    bag_columns: tuple[str, ...] = ()
    names = None
    if fmt == PHOTON and isinstance(bag, tuple):
        raise RecipeError("Photon ML input has feature bags, not scalar feature columns")
    if fmt == PHOTON and isinstance(bag, str):
        names = photon_names(bag, data.feature_lists, _train_files(data, split, files))
        dim = len(names)
    elif isinstance(bag, tuple):
        bag_columns, dim, dense = bag, len(bag), True
        bag = bag_label(bag)
    elif bag:
        dim, dense = bag_shape(bag, metadata, data.metadata, data.feature_lists, files, tables)
    present = (
        tuple(photon_fields(files[0]))
        if fmt == PHOTON
        else column_names(files, fmt, tables, metadata)
    )
    # the README's defaults: rows in memory without a uid column -> the row number (files keep
    # their uid: rows are matched across coordinates' files by it), no weight column -> 1
    # (only for the default names: a column named in the recipe must be there)
    uid_from_row = fmt == PHOTON or (
        fmt == MEMORY and "uid" not in columns.model_fields_set and columns.uid not in present
    )
    weight = columns.weight
    if weight and "weight" not in columns.model_fields_set and weight not in present:
        weight = None
    offset = columns.offset
    if fmt == PHOTON and offset is None and "offset" in present:
        offset = "offset"  # Photon's offsets are part of its rows
    required = ([] if uid_from_row else [columns.uid]) + [c for c in (weight, offset, entity) if c]
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
        weight=weight,
        offset=offset,
        bag=bag,
        dim=0 if dim is None else dim,
        dense_bag=dense,
        entity=entity,
        label_optional=label_optional,
        task=task,
        bag_columns=bag_columns,
        uid_from_row=uid_from_row,
    )
    if data.grouped_by is not None:
        if fmt != "tfrecord":
            raise RecipeError(
                "grouped_by reads GDMix's grouped TFRecord layout only", field="data.grouped_by"
            )
        if metadata is None or data.grouped_by not in metadata:
            raise DataError(
                f"metadata has no tensor '{data.grouped_by}' to group by", path=data.metadata
            )
    source = Source(
        files=files,
        format=fmt,
        metadata=metadata,
        schema=schema,
        grouped_by=data.grouped_by,
        tables=tables,
        names=names,
    )
    if not check_files(source):
        raise DataError(
            f"data.{split}: no rows in {len(files)} file(s)",
            path=spec if isinstance(spec, str) else files[0],
        )
    if uid_from_row:
        counts = (
            check_photon_files(files, schema, names)
            if fmt == PHOTON
            else rows_per_file(files, tables)
        )
        source = dataclasses.replace(source, first_uids=first_uids(counts))
    if dim is None and bag:  # Parquet with neither metadata nor feature list
        schema = dataclasses.replace(schema, dim=largest_bag_index(bag, files, tables) + 1)
        source = dataclasses.replace(source, schema=schema)
    return source


def _train_files(data: Data, split: str, files: tuple[str, ...]) -> tuple[str, ...]:
    """The train split's files: a Photon bag without a feature list is indexed from them."""
    if split == "train" or isinstance(data.train, InMemory):
        return files
    return list_files(data.train, "data.train")


def _held_table(spec: InMemory, split: str):
    if spec.table is None:
        what = "a ray.data.Dataset (read it with raymix.fit)" if spec.dataset is not None else ""
        raise RecipeError(
            f"data.{split} was in memory ({what or spec.in_memory}) and is not saved with "
            "the recipe: give the rows again (in Python) or files",
            field=f"data.{split}",
        )
    return spec.table


def feature_names(
    data: Data, bag: str | tuple[str, ...] | None, dim: int
) -> list[tuple[str, str]] | None:
    """(name, term) per feature index of ``bag``: a list of columns names its features after
    them; a bag's come from GDMix's featureList, or None."""
    if isinstance(bag, tuple):
        return [(name, "") for name in bag]
    if bag and not isinstance(data.train, InMemory) and _is_photon(data):
        return list(photon_names(bag, data.feature_lists, list_files(data.train, "data.train")))
    if not bag or not data.feature_lists:
        return None
    path = data.feature_lists
    file = storage.join(path, bag) if storage.is_dir(path) else storage.normal(path)
    if not storage.is_file(file):
        raise DataError(f"no feature list for bag '{bag}'", path=storage.shown(file))
    names = load_feature_list(file)
    if len(names) != dim:
        raise DataError(
            f"feature list has {len(names)} entries but bag '{bag}' has dimension {dim}",
            path=storage.shown(file),
        )
    return names


def _is_photon(data: Data) -> bool:
    if data.format != "auto" or isinstance(data.train, InMemory):
        return data.format == PHOTON
    return file_format(list_files(data.train, "data.train"), "auto") == PHOTON


def bag_label(bag: str | tuple[str, ...]) -> str:
    """A bag's name in messages and requests: its name, or its scalar columns joined by '+'."""
    return bag if isinstance(bag, str) else "+".join(bag)


def warm_start_match(
    path: str, names: list[tuple[str, str]] | None, dim: int, bag: str | tuple[str, ...]
) -> tuple[int, int] | None:
    """How many of a warm start's features its bag has: ``(matched, features)``, None when
    there is nothing to compare (no features in the models, or a checkpoint's model tables,
    which hold indices of this very bag). A model that shares no feature with the bag is
    refused: every coefficient would be dropped and the fit start from nothing, silently.

    Features are matched by ``(name, term)`` against the feature list, or without one by
    the name read as an index in ``[0, dim)``, as the readers place them.
    """
    from raymix.data.avro.model_reader import model_features
    from raymix.data.model_table import has_model_tables

    if has_model_tables(path):
        return None
    features = model_features(path)
    if not features:
        return None
    if names is not None:
        known = {tuple(n) for n in names}
        matched = sum(f in known for f in features)
    else:
        matched = sum(_as_index(name) in range(dim) for name, _ in features)
    if matched == 0:
        theirs = ", ".join(sorted(f"{n}|{t}" if t else n for n, t in features)[:3])
        ours = ", ".join(f"{n}|{t}" if t else n for n, t in (names or [])[:3]) or (
            f"indices 0..{dim - 1}" if dim else "none"
        )
        raise DataError(
            f"the warm start shares none of its {len(features)} features with bag '{bag_label(bag)}' "
            f"(it has e.g. {theirs}; the bag {ours}): every coefficient would be dropped",
            path=storage.shown(path),
        )
    return matched, len(features)


def _as_index(name: str) -> int:
    try:
        return int(name)
    except ValueError:
        return -1
