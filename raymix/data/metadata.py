"""GDMix tensor metadata (``tensor_metadata.json``), feature lists, and the raymix row schema.

A GDMix dataset is described by a ``tensor_metadata.json``::

    {"features": [{"name": "global", "dtype": "float", "shape": [44], "isSparse": true},
                  {"name": "uid", "dtype": "long", "shape": [], "isSparse": false}, ...],
     "labels": [{"name": "response", "dtype": "int", "shape": [], "isSparse": false}],
     "numberOfTrainingSamples": 79959}

Each tensor has exactly the keys ``name, dtype, shape, isSparse`` (plus the optional
``numUniqueValues`` that GDMix's Scala ``MetadataGenerator`` writes); other top-level keys are
ignored. raymix reads every dataset into Arrow tables of *rows* (the "row convention"):

- a dense scalar ``x`` is one column ``x`` (int/long -> int64, float -> float32,
  double -> float64, string/bytes -> string, or binary when the bytes are not UTF-8);
- a sparse bag ``B`` of shape ``[dim]`` is two columns ``B_indices: list<int64>`` (each index
  in ``[0, dim)``) and ``B_values: list<float32>`` of equal lengths per row;
- a dense vector ``F`` of shape ``[k]`` is ``F: fixed_size_list<float32>[k]`` (``list<string>``
  for strings).

The column names are GDMix's TFRecord keys, so Parquet files in this convention read as-is.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from raymix import storage
from raymix.errors import DataError
from raymix.files import write_text

__all__ = [
    "DTYPES",
    "Metadata",
    "TensorSpec",
    "load_feature_list",
    "load_metadata",
    "write_feature_list",
]

#: The dtypes GDMix accepts, in the order GDMix documents them.
DTYPES = ("int", "long", "float", "double", "bytes", "string")
_NUMERIC = ("int", "long", "float", "double")
_TENSOR_KEYS = ("name", "dtype", "shape", "isSparse")
_OPTIONAL_TENSOR_KEYS = ("numUniqueValues",)
_ARROW_SCALAR = {
    "int": pa.int64(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.string(),
    "string": pa.string(),
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a GDMix dataset.

    ``shape`` is ``()`` for a scalar or ``(k,)`` for a vector; a sparse tensor (a feature bag)
    has ``shape == (dim,)`` where ``dim`` is the model dimension of the bag.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    is_sparse: bool = False

    def __post_init__(self):
        problem = _tensor_problem(self.name, self.dtype, self.shape, self.is_sparse)
        if problem is not None:
            field, message = problem
            raise DataError(f"TensorSpec({field}) {message}", column=str(self.name))
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def dim(self) -> int:
        """The bag dimension of a sparse tensor (``shape[0]``)."""
        if not self.is_sparse:
            raise DataError("is not sparse, it has no bag dimension", column=self.name)
        return self.shape[0]

    @property
    def columns(self) -> tuple[str, ...]:
        """The Arrow / TFRecord column names of this tensor in the row convention."""
        if self.is_sparse:
            return (f"{self.name}_indices", f"{self.name}_values")
        return (self.name,)

    @property
    def value_type(self) -> pa.DataType:
        """The Arrow type of one element (a bag's values, a vector's items, a scalar)."""
        return _ARROW_SCALAR[self.dtype]

    def arrow_fields(self) -> list[pa.Field]:
        """The Arrow fields of this tensor in the row convention."""
        if self.is_sparse:
            return [
                pa.field(f"{self.name}_indices", pa.list_(pa.int64())),
                pa.field(f"{self.name}_values", pa.list_(self.value_type)),
            ]
        if not self.shape:
            return [pa.field(self.name, self.value_type)]
        if self.dtype in ("string", "bytes"):
            return [pa.field(self.name, pa.list_(self.value_type))]
        return [pa.field(self.name, pa.list_(self.value_type, self.shape[0]))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "isSparse": self.is_sparse,
        }


@dataclass(frozen=True)
class Metadata:
    """The features and labels of a GDMix dataset (``tensor_metadata.json``)."""

    features: tuple[TensorSpec, ...]
    labels: tuple[TensorSpec, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "labels", tuple(self.labels))
        seen: set[str] = set()
        for section in ("features", "labels"):
            for i, spec in enumerate(getattr(self, section)):
                if not isinstance(spec, TensorSpec):
                    raise DataError(f"Metadata.{section}[{i}] must be a TensorSpec, got {spec!r}")
                if spec.name in seen:
                    raise DataError(
                        f"Metadata.{section}[{i}] '{spec.name}': duplicated tensor name"
                    )
                seen.add(spec.name)
        columns: dict[str, str] = {}
        for spec in self.tensors:
            for col in spec.columns:
                if col in columns:
                    raise DataError(
                        f"Metadata: column '{col}' of tensor '{spec.name}' clashes with "
                        f"tensor '{columns[col]}'"
                    )
                columns[col] = spec.name

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        """Features then labels."""
        return self.features + self.labels

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    def __getitem__(self, name: str) -> TensorSpec:
        for spec in self.tensors:
            if spec.name == name:
                return spec
        raise DataError(f"unknown tensor '{name}'; the metadata has {list(self.names)}")

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def select(self, columns: Sequence[str] | None = None) -> list[TensorSpec]:
        """The tensors named in ``columns`` (tensor names, in that order), or all of them."""
        if columns is None:
            return list(self.tensors)
        if isinstance(columns, str):
            raise DataError(f"columns must be a list of tensor names, got the string {columns!r}")
        specs, seen = [], set()
        for name in columns:
            if name in seen:
                raise DataError(f"tensor '{name}' requested twice")
            seen.add(name)
            specs.append(self[name])
        return specs

    def arrow_schema(self, columns: Sequence[str] | None = None) -> pa.Schema:
        """The Arrow schema of the row convention for ``columns`` (tensor names) or all tensors."""
        return pa.schema([f for spec in self.select(columns) for f in spec.arrow_fields()])

    def to_dict(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "features": [t.to_dict() for t in self.features],
            "labels": [t.to_dict() for t in self.labels],
        }
        for key, value in (extra or {}).items():
            if key in out:
                raise DataError(f"extra metadata key '{key}' would overwrite a section")
            out[key] = value
        return out

    def to_json(self, extra: Mapping[str, Any] | None = None) -> str:
        """GDMix-compatible JSON; ``extra`` adds top-level keys (e.g. numberOfTrainingSamples)."""
        return json.dumps(self.to_dict(extra), indent=2) + "\n"

    def write(self, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> None:
        """Write ``tensor_metadata.json`` atomically."""
        write_text(path, self.to_json(extra))

    @classmethod
    def from_dict(cls, obj: Any, path: str | os.PathLike | None = None) -> Metadata:
        """Validate a parsed ``tensor_metadata.json``; errors name ``path``, tensor and field."""
        where = None if path is None else str(path)
        if not isinstance(obj, dict):
            raise DataError(f"top level must be a JSON object, got {type(obj).__name__}", where)
        sections: dict[str, list[TensorSpec]] = {}
        seen: dict[str, str] = {}
        for section in ("features", "labels"):
            if section not in obj:
                raise DataError(f"missing the '{section}' list", where)
            items = obj[section]
            if not isinstance(items, list):
                raise DataError(f"'{section}' must be a list, got {type(items).__name__}", where)
            sections[section] = []
            for i, item in enumerate(items):
                spec = _parse_tensor(item, f"{section}[{i}]", where)
                if spec.name in seen:
                    raise DataError(
                        f"{section}[{i}] (name {spec.name!r}): field 'name' duplicates "
                        f"{seen[spec.name]}; tensor names must be unique",
                        where,
                    )
                seen[spec.name] = f"{section}[{i}]"
                sections[section].append(spec)
        return cls(tuple(sections["features"]), tuple(sections["labels"]))


def _read_text(path: Path | str, missing: str, unreadable: str) -> str:
    """The UTF-8 text of ``path`` (a local path or a URI); DataError "<missing> not found" /
    "cannot read <unreadable>"."""
    if isinstance(path, str):  # a URI (see _where)
        if not storage.is_file(path):
            raise DataError(f"{missing} not found", storage.shown(path))
        try:
            return storage.read_text(path)
        except UnicodeDecodeError as e:
            raise DataError(f"cannot read {unreadable}: {e}", storage.shown(path)) from None
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{missing} not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {unreadable}: {e}", str(path)) from None


def _where(path: str | os.PathLike) -> Path | str:
    """A local path as a :class:`~pathlib.Path` (as before), a URI as a normal string."""
    return storage.normal(path) if storage.is_uri(path) else Path(path)


def load_metadata(path: str | os.PathLike) -> Metadata:
    """Read and validate a GDMix ``tensor_metadata.json``."""
    path = _where(path)
    text = _read_text(path, "metadata file", "metadata")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e}", str(path)) from None
    return Metadata.from_dict(obj, path)


def load_feature_list(path: str | os.PathLike, delimiter: str = ",") -> list[tuple[str, str]]:
    """Read a GDMix ``featureList/<bag>`` file: one ``name,term`` CSV row per feature (with
    ``delimiter="\t"``, a Photon ML feature list: ``name<TAB>term``, no quoting).

    The 0-based line number is the feature index in the bag. Every row must have exactly two
    CSV fields, and no ``(name, term)`` may repeat; the last line may lack its newline.
    """
    path = _where(path)
    text = _read_text(path, "feature list", "feature list")
    out: list[tuple[str, str]] = []
    buffer = io.StringIO(text, newline="")
    if delimiter == "\t":
        reader = csv.reader(buffer, delimiter=delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(buffer, delimiter=delimiter)
    sep = "name<TAB>term" if delimiter == "\t" else f"name{delimiter}term"
    seen: dict[tuple[str, str], int] = {}
    try:
        for line, row in enumerate(reader):
            if len(row) != 2:
                raise DataError(
                    f"line {line + 1}: expected 2 CSV fields '{sep}', got {len(row)}: {row!r}",
                    str(path),
                )
            feature = (row[0], row[1])
            if feature in seen:  # two indices of one feature: a model's coefficient is ambiguous
                raise DataError(
                    f"line {line + 1}: feature {feature!r} repeats line {seen[feature] + 1}",
                    str(path),
                )
            seen[feature] = line
            out.append(feature)
    except csv.Error as e:
        raise DataError(f"line {reader.line_num}: invalid CSV: {e}", str(path)) from None
    return out


def write_feature_list(path: str | os.PathLike, features: Iterable[tuple[str, str]]) -> None:
    """Write a GDMix feature list (``name,term`` per line, ``\\n`` endings) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for i, item in enumerate(features):
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise DataError(f"feature {i} must be a (name, term) pair, got {item!r}", str(path))
        writer.writerow([str(item[0]), str(item[1])])
    write_text(path, buf.getvalue())


def _describe(item: Any, label: str) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"{label} (name {name!r})" if name is not None else label


def _parse_tensor(item: Any, label: str, where: str | None) -> TensorSpec:
    if not isinstance(item, dict):
        raise DataError(f"{label} must be a JSON object, got {type(item).__name__}", where)
    who = _describe(item, label)
    missing = [k for k in _TENSOR_KEYS if k not in item]
    if missing:
        raise DataError(
            f"{who}: missing field(s) {missing}; a tensor has {list(_TENSOR_KEYS)}", where
        )
    unknown = sorted(set(item) - set(_TENSOR_KEYS) - set(_OPTIONAL_TENSOR_KEYS))
    if unknown:
        raise DataError(
            f"{who}: unknown field(s) {unknown}; a tensor has exactly {list(_TENSOR_KEYS)} "
            f"(and optionally {list(_OPTIONAL_TENSOR_KEYS)})",
            where,
        )
    nuv = item.get("numUniqueValues")
    if nuv is not None and (isinstance(nuv, bool) or not isinstance(nuv, int) or nuv < 0):
        raise DataError(
            f"{who}: field 'numUniqueValues' must be null or an int >= 0, got {nuv!r}", where
        )
    shape = item["shape"]
    problem = _tensor_problem(item["name"], item["dtype"], shape, item["isSparse"])
    if problem is not None:
        field, message = problem
        raise DataError(f"{who}: field '{field}' {message}", where)
    return TensorSpec(item["name"], item["dtype"], tuple(shape), item["isSparse"])


def _tensor_problem(name: Any, dtype: Any, shape: Any, is_sparse: Any) -> tuple[str, str] | None:
    """``(field, message)`` for the first invalid field of a tensor, else None."""
    if not isinstance(name, str) or not name:
        return "name", f"must be a non-empty string, got {type(name).__name__} {name!r}"
    if dtype not in DTYPES:
        return "dtype", f"must be one of {list(DTYPES)}, got {dtype!r}"
    if not isinstance(shape, list | tuple):
        return (
            "shape",
            f"must be a list of ints ([] for a scalar), got {type(shape).__name__} {shape!r}",
        )
    if any(isinstance(d, bool) or not isinstance(d, int) for d in shape):
        return "shape", f"must be a list of ints, got {list(shape)!r}"
    if len(shape) > 1:
        return "shape", f"must have rank 0 or 1 (GDMix supports no more), got {list(shape)!r}"
    if any(d < 1 for d in shape):
        return "shape", f"dimensions must be >= 1, got {list(shape)!r}"
    if not isinstance(is_sparse, bool):
        return "isSparse", f"must be true or false, got {is_sparse!r}"
    if is_sparse and len(shape) != 1:
        return "shape", f"of a sparse tensor must be [dim], got {list(shape)!r}"
    if is_sparse and dtype not in _NUMERIC:
        return "dtype", f"of a sparse tensor must be numeric {list(_NUMERIC)}, got {dtype!r}"
    return None
