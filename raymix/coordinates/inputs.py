"""A coordinate's inputs from its recipe: the :class:`~raymix.data.source.Source` of each split
and the feature names of its bag.

Where a recipe's :class:`~raymix.recipe.spec.Data` meets the data formats: every file is
resolved and checked here, on the driver, before anything starts.
"""

from __future__ import annotations

import dataclasses

from raymix import storage
from raymix.data.metadata import load_feature_list, load_metadata
from raymix.data.parquet import largest_index
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
from raymix.recipe.spec import Columns, Data


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
    if fmt == "tfrecord" and any(not f.endswith(TFRECORD_SUFFIXES) for f in files):
        bad = next(f for f in files if not f.endswith(TFRECORD_SUFFIXES))
        raise DataError(
            "not a TFRecord file (expected .tfrecord, .tfrecord.gz or .tfrecord.deflate)", path=bad
        )
    dim: int | None = 0
    dense = False
    if bag:
        dim, dense = bag_shape(bag, metadata, data.metadata, data.feature_lists, files)
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
        dim=0 if dim is None else dim,
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
        if metadata is None or data.grouped_by not in metadata:
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
    if dim is None and bag:  # Parquet with neither metadata nor feature list
        schema = dataclasses.replace(schema, dim=largest_index(bag, files) + 1)
        source = dataclasses.replace(source, schema=schema)
    return source


def feature_names(data: Data, bag: str | None, dim: int) -> list[tuple[str, str]] | None:
    """(name, term) per feature index of ``bag`` from GDMix's featureList, or None."""
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
