"""Rows held in memory in a recipe: a pandas DataFrame, a pyarrow Table or a ray.data.Dataset.

In Python a :class:`~raymix.recipe.spec.Data` may be given rows instead of files
(``Data(train=df)``). They are wrapped in an :class:`InMemory`, whose one field is a
description: that is all ``run.json`` records of them (a recipe stays data; the rows are not
serialised). The rows themselves ride along as a private attribute and are read by the same
code as files (:mod:`raymix.data.source`), one Arrow table per split.

A recipe loaded back from ``run.json`` holds the description alone (:attr:`InMemory.table`
is None); reading it fails with a message that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

if TYPE_CHECKING:  # pyarrow is imported when rows are given: ``import raymix`` stays light
    import pyarrow as pa

#: at most this many column names in a description
SHOWN_COLUMNS = 12


class InMemory(BaseModel):
    """Rows in memory. ``in_memory`` describes them; :attr:`table` holds them (None when the
    recipe came from a ``run.json``), or :attr:`dataset` a ``ray.data.Dataset`` not read yet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    in_memory: str
    _table: Any = PrivateAttr(default=None)
    _dataset: Any = PrivateAttr(default=None)

    @property
    def table(self) -> pa.Table | None:
        return self._table

    @property
    def dataset(self) -> Any:
        return self._dataset

    @classmethod
    def of_table(cls, table: pa.Table, what: str = "pyarrow Table") -> InMemory:
        names = table.column_names
        shown = ", ".join(names[:SHOWN_COLUMNS]) + (", ..." if len(names) > SHOWN_COLUMNS else "")
        held = cls(in_memory=f"{what}: {table.num_rows} rows, columns [{shown}]")
        held._table = table
        return held

    @classmethod
    def of_dataset(cls, dataset: Any) -> InMemory:
        held = cls(in_memory="ray.data.Dataset")
        held._dataset = dataset
        return held

    def __eq__(self, other: object) -> bool:  # the same rows: the same object
        if not isinstance(other, InMemory):
            return NotImplemented
        return (
            self.in_memory == other.in_memory
            and self._table is other._table
            and self._dataset is other._dataset
        )

    def __hash__(self) -> int:
        return hash(self.in_memory)


def is_dataframe(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "columns")


def is_ray_dataset(value: Any) -> bool:
    return type(value).__module__.startswith("ray.data") and hasattr(value, "to_arrow_refs")


def table_of_dataframe(frame: Any) -> pa.Table:
    """A DataFrame as an Arrow table (its index dropped: rows are numbered by position)."""
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


def wrap_rows(value: Any) -> Any:
    """``value`` as an :class:`InMemory` when it is rows (DataFrame, Table, RecordBatch,
    Dataset); anything else is returned as it is, for the field's own validation."""
    if is_dataframe(value):
        return InMemory.of_table(table_of_dataframe(value), "pandas DataFrame")
    if type(value).__module__.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(value, pa.RecordBatch):
            return InMemory.of_table(pa.Table.from_batches([value]))
        if isinstance(value, pa.Table):
            return InMemory.of_table(value)
    if is_ray_dataset(value):
        return InMemory.of_dataset(value)
    return value


def map_data(recipe, function: Callable[[str, Any], Any]):
    """The recipe with every :class:`~raymix.recipe.spec.Data` ``d`` (the recipe's and each
    coordinate's) replaced by ``function(where, d)``; ``where`` is its dotted path
    (``data``, ``coordinates.<name>.data``)."""
    coordinates = tuple(
        c.model_copy(update={"data": function(f"coordinates.{c.name}.data", c.data)})
        if getattr(c, "data", None) is not None
        else c
        for c in recipe.coordinates
    )
    return recipe.model_copy(
        update={"data": function("data", recipe.data), "coordinates": coordinates}
    )


def held_rows(recipe) -> dict[tuple[str, str], InMemory]:
    """Every :class:`InMemory` of the recipe by (where, split): where as in :func:`map_data`."""
    found: dict[tuple[str, str], InMemory] = {}

    def collect(where: str, data):
        for split in ("train", "validation"):
            value = getattr(data, split)
            if isinstance(value, InMemory):
                found[(where, split)] = value
        return data

    map_data(recipe, collect)
    return found


def restore_rows(recipe, held: dict[tuple[str, str], InMemory]):
    """The recipe with the rows of ``held`` put back where a copy of the recipe through JSON
    (``model_dump(mode="json")``, overrides, validation) left their descriptions alone."""

    def put_back(where: str, data):
        update = {}
        for split in ("train", "validation"):
            value, rows = getattr(data, split), held.get((where, split))
            if (
                isinstance(value, InMemory)
                and rows is not None
                and value.in_memory == rows.in_memory
            ):
                update[split] = rows
        return data.model_copy(update=update) if update else data

    return map_data(recipe, put_back)
