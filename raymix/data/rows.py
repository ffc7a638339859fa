"""Arrow tables in raymix's row convention -> the numpy arrays a coordinate trains on.

The row convention (README, "Data"): scalar columns (uid, label, weight, offset, entity ids),
and a feature bag ``B`` either sparse, as ``B_indices: list<int64>`` + ``B_values:
list<float>``, or dense, as ``B: fixed_size_list<float>[k]``.

:class:`Rows` is one shard of rows: ``uid`` (int64), ``label``, ``weight``, ``offset``
(float64), an optional ``entity`` column (int64 or str objects) and ``X``, the coordinate's
feature bag as a CSR matrix (sparse bags) or a float64 array (dense bags), shape (n_rows, dim),
dim 0 for an intercept-only coordinate.

Every label, weight, offset and feature value is finite and at most :data:`LARGEST_VALUE` in
magnitude (docs/bad-inputs.md, "Limits"): beyond it a weighted sum of losses, a squared
feature or a standardized column overflows or swamps every other row in float64 — a silent
collapse (AUC 0.5) rather than an error — so such a value is refused, naming its row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from raymix.errors import DataError
from raymix.solvers.loss import check_labels

#: the largest magnitude of a label, weight, offset or feature value raymix accepts
LARGEST_VALUE = 1e12


@dataclass
class Rows:
    uid: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    offset: np.ndarray
    X: sp.csr_matrix | np.ndarray
    entity: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.uid)

    def take(self, index: np.ndarray) -> Rows:
        return Rows(
            uid=self.uid[index],
            label=self.label[index],
            weight=self.weight[index],
            offset=self.offset[index],
            X=self.X[index],
            entity=None if self.entity is None else self.entity[index],
        )

    def permute(self, order: np.ndarray) -> None:
        """Reorder the rows in place, one column at a time: at its peak this holds one extra
        column (the features at worst), where ``take`` would hold a second copy of all."""
        self.X = self.X[order]
        self.uid = self.uid[order]
        self.label = self.label[order]
        self.weight = self.weight[order]
        self.offset = self.offset[order]
        if self.entity is not None:
            self.entity = self.entity[order]


@dataclass(frozen=True)
class RowSchema:
    """Which columns of a table hold what, for one coordinate."""

    uid: str
    label: str
    weight: str | None
    offset: str | None
    bag: str | None
    dim: int
    dense_bag: bool = False
    entity: str | None = None
    label_optional: bool = False
    task: str | None = None  # the coordinate's task: 'logistic' labels must be 0 or 1
    #: the bag is these scalar columns, one feature each (then ``dense_bag``, ``dim`` = their
    #: number and ``bag`` a name for them)
    bag_columns: tuple[str, ...] = ()
    #: the data has no uid column: the reader numbers the rows (``uid`` names the column it adds)
    uid_from_row: bool = False

    def columns(self) -> list[str]:
        """Arrow column names to read."""
        names = [] if self.uid_from_row else [self.uid]
        if not self.label_optional:
            names.append(self.label)
        names += [c for c in (self.weight, self.offset, self.entity) if c]
        if self.bag_columns:
            names += self.bag_columns
        elif self.bag:
            names += [self.bag] if self.dense_bag else [f"{self.bag}_indices", f"{self.bag}_values"]
        return names


def rows_from_table(table: pa.Table, schema: RowSchema, source: str = "table") -> Rows:
    """Convert one table to :class:`Rows`, checking values and naming the file and row."""
    n = table.num_rows
    for name in schema.columns():
        if name not in table.column_names:
            raise DataError(f"missing column (has {table.column_names})", path=source, column=name)
    uid = _scalar(table, schema.uid, np.int64, source)
    if schema.label in table.column_names:
        label = _scalar(table, schema.label, np.float64, source)
    else:
        label = np.full(n, np.nan)
    weight = _scalar(table, schema.weight, np.float64, source) if schema.weight else np.ones(n)
    offset = _scalar(table, schema.offset, np.float64, source) if schema.offset else np.zeros(n)
    given = np.where(np.isnan(label), 0.0, label) if schema.label_optional else label
    check_finite(given, schema.label, source)
    _labels_fit_task(label, schema, source)
    check_unique(uid, schema.uid, source)
    check_finite(weight, schema.weight, source)
    check_finite(offset, schema.offset, source)
    negative = np.flatnonzero(weight < 0)
    if negative.size:
        raise DataError("negative weight", path=source, row=int(negative[0]), column=schema.weight)
    entity = None
    if schema.entity:
        entity = _entity(table.column(schema.entity), schema.entity, source)
    if not schema.bag:
        X = sp.csr_matrix((n, 0), dtype=np.float64)
    elif schema.bag_columns:
        X = _column_bag(table, schema, source)
    elif schema.dense_bag:
        X = _dense_bag(table.column(schema.bag), schema, source)
    else:
        X = _sparse_bag(table, schema, source)
    return Rows(uid=uid, label=label, weight=weight, offset=offset, X=X, entity=entity)


def concat_rows(parts: list[Rows], dim: int) -> Rows:
    """Stack shards; an empty list gives zero rows. The parts give up their features (their
    ``X`` becomes None as it is copied): do not use them afterwards."""
    parts = [p for p in parts if len(p)]
    if not parts:
        empty = np.zeros(0)
        return Rows(
            uid=np.zeros(0, np.int64),
            label=empty,
            weight=empty,
            offset=empty,
            X=sp.csr_matrix((0, dim)),
            entity=None,
        )
    entity = None
    if parts[0].entity is not None:
        entity = np.concatenate([p.entity for p in parts])
    return Rows(
        uid=np.concatenate([p.uid for p in parts]),
        label=np.concatenate([p.label for p in parts]),
        weight=np.concatenate([p.weight for p in parts]),
        offset=np.concatenate([p.offset for p in parts]),
        X=_stack_releasing(parts),
        entity=entity,
    )


def _stack_releasing(parts: list[Rows]):
    """The parts' features stacked; each part's ``X`` is dropped once copied, so the peak is
    the result plus one part, not twice the data."""
    if len(parts) == 1:
        X, parts[0].X = parts[0].X, None
        return X
    n = sum(p.X.shape[0] for p in parts)
    if isinstance(parts[0].X, np.ndarray):
        X = np.empty((n, parts[0].X.shape[1]), np.result_type(*(p.X.dtype for p in parts)))
        start = 0
        for p in parts:
            X[start : start + p.X.shape[0]] = p.X
            start += p.X.shape[0]
            p.X = None
        return X
    matrices: list[sp.csr_matrix] = [p.X for p in parts]
    dim = matrices[0].shape[1]
    nnz = sum(m.nnz for m in matrices)
    index_type = np.int32 if max(nnz, dim) < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(n + 1, index_type)
    indices = np.empty(nnz, index_type)
    data = np.empty(nnz, np.result_type(*(m.dtype for m in matrices)))
    del matrices  # each part's matrix is freed as soon as it is copied
    row = at = 0
    for p in parts:
        part: sp.csr_matrix = p.X
        m, k = part.shape[0], part.nnz
        indptr[row + 1 : row + m + 1] = part.indptr[1:] - part.indptr[0] + at
        indices[at : at + k] = part.indices[part.indptr[0] : part.indptr[-1]]
        data[at : at + k] = part.data[part.indptr[0] : part.indptr[-1]]
        row, at = row + m, at + k
        p.X = None
    return sp.csr_matrix((data, indices, indptr), shape=(n, dim))


def _scalar(table: pa.Table, name: str, dtype, source: str) -> np.ndarray:
    column = table.column(name)
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != 1)
        if bad.size:
            raise DataError("expected one value per row", path=source, row=int(bad[0]), column=name)
        column = pc.list_flatten(column)
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("missing value", path=source, row=row, column=name)
    try:
        return column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    except (ValueError, TypeError, pa.ArrowInvalid) as exc:
        raise DataError(
            f"cannot read as {np.dtype(dtype).name}: {exc}", path=source, column=name
        ) from None


def _out_of_range(values: np.ndarray) -> np.ndarray:
    """Positions (into the flattened values) of NaN, infinite or too large values."""
    return np.flatnonzero(~(np.abs(values) <= LARGEST_VALUE))


def _range_error(value: float, what: str) -> str:
    if not np.isfinite(value):
        return f"{what} is NaN or infinite"
    return f"{what} {value:.6g} is beyond raymix's limit of ±{LARGEST_VALUE:g}: rescale the column"


def check_finite(values: np.ndarray, name: str | None, source: str) -> None:
    """Raise at the first NaN, infinite or too large value (its row and column)."""
    bad = _out_of_range(values)
    if bad.size:
        message = _range_error(values[bad[0]], "value")
        raise DataError(message, path=source, row=int(bad[0]), column=name)


def _labels_fit_task(label: np.ndarray, schema: RowSchema, source: str) -> None:
    """The labels are in the range of the coordinate's task (:func:`raymix.solvers.loss.
    check_labels`: logistic 0 or 1, Poisson >= 0); missing optional labels (NaN) pass."""
    if schema.task is not None:
        check_labels(schema.task, label, path=source, column=schema.label)


def check_unique(uid: np.ndarray, name: str, source: str) -> None:
    """Raise at the second row of a repeated uid."""
    if uid.size < 2:
        return
    order = np.argsort(uid, kind="stable")
    repeats = np.flatnonzero(uid[order][1:] == uid[order][:-1])
    if repeats.size:
        row = int(order[repeats + 1].min())
        raise DataError(
            f"duplicate uid {int(uid[row])}: every row needs its own uid",
            path=source,
            row=row,
            column=name,
        )


def _entity(column, name: str, source: str) -> np.ndarray:
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("missing entity id", path=source, row=row, column=name)
    kind = column.type
    if pa.types.is_dictionary(kind):  # categorical ids (a pandas Categorical): their values
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_integer(kind):
        return column.to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return np.asarray(column.to_pylist(), dtype=object)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return np.asarray([v.decode("utf-8", "replace") for v in column.to_pylist()], dtype=object)
    raise DataError(f"entity ids must be integers or strings, got {kind}", path=source, column=name)


def _sparse_bag(table: pa.Table, schema: RowSchema, source: str) -> sp.csr_matrix:
    name_i, name_v = f"{schema.bag}_indices", f"{schema.bag}_values"
    indices = table.column(name_i).combine_chunks()
    values = table.column(name_v).combine_chunks()
    n = table.num_rows
    len_i = pc.list_value_length(indices).to_numpy(zero_copy_only=False)
    len_v = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    if indices.null_count or values.null_count:
        len_i = np.nan_to_num(len_i.astype(float), nan=0).astype(np.int64)
        len_v = np.nan_to_num(len_v.astype(float), nan=0).astype(np.int64)
    mismatch = np.flatnonzero(len_i != len_v)
    if mismatch.size:
        raise DataError(
            f"{name_i} and {name_v} differ in length",
            path=source,
            row=int(mismatch[0]),
            column=name_i,
        )
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(len_i, out=indptr[1:])
    flat_i = pc.list_flatten(indices).to_numpy(zero_copy_only=False)
    if flat_i.dtype != np.int32:  # int32 indices (routed parts) stay int32
        flat_i = flat_i.astype(np.int64)
    flat_v = pc.list_flatten(values).to_numpy(zero_copy_only=False)
    # float32 values stay float32 (half the memory; the solvers multiply them by float64, so
    # every product is exactly what it would be with float64 values)
    flat_v = flat_v.astype(np.float32 if flat_v.dtype == np.float32 else np.float64, copy=False)
    bad = np.flatnonzero((flat_i < 0) | (flat_i >= schema.dim))
    if bad.size:
        row = int(np.searchsorted(indptr, bad[0], side="right") - 1)
        raise DataError(
            f"feature index {flat_i[bad[0]]} outside [0, {schema.dim})",
            path=source,
            row=row,
            column=name_i,
        )
    bad = _out_of_range(flat_v)
    if bad.size:
        row = int(np.searchsorted(indptr, bad[0], side="right") - 1)
        message = _range_error(flat_v[bad[0]], "feature value")
        raise DataError(message, path=source, row=row, column=name_v)
    if max(indptr[-1], schema.dim) < np.iinfo(np.int32).max:
        flat_i, indptr = flat_i.astype(np.int32, copy=False), indptr.astype(np.int32)
    X = sp.csr_matrix((flat_v, flat_i, indptr), shape=(n, schema.dim))
    if not X.has_canonical_format:  # sort indices and merge repeats, as tf.SparseFeature would
        X = X.astype(np.float64)  # a repeated feature's values add up in float64
        X.sum_duplicates()
    return X


def _column_bag(table: pa.Table, schema: RowSchema, source: str) -> np.ndarray:
    """A bag of scalar columns, one feature each, as a dense (n, k) float64 array."""
    X = np.empty((table.num_rows, len(schema.bag_columns)))
    for j, name in enumerate(schema.bag_columns):
        X[:, j] = _scalar(table, name, np.float64, source)
        check_finite(X[:, j], name, source)
    return X


def _dense_bag(column, schema: RowSchema, source: str) -> np.ndarray:
    if not pa.types.is_fixed_size_list(column.type):  # list<float>: every row of one length
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        lengths = np.nan_to_num(lengths.astype(float), nan=-1)  # a missing list: no length
        bad = np.flatnonzero(lengths != schema.dim)
        if bad.size:
            raise DataError(
                f"a dense bag's lists must all hold {schema.dim} values; this one holds "
                f"{int(lengths[bad[0]]) if lengths[bad[0]] >= 0 else 'none (missing)'}",
                path=source,
                row=int(bad[0]),
                column=schema.bag,
            )
    flat = pc.list_flatten(column.combine_chunks()).to_numpy(zero_copy_only=False)
    # float32 values stay float32 (half the memory; solvers accumulate in float64)
    flat = flat.astype(np.float32 if flat.dtype == np.float32 else np.float64, copy=False)
    n = len(column)
    if flat.size != n * schema.dim:
        raise DataError(
            f"dense bag must have {schema.dim} values per row", path=source, column=schema.bag
        )
    dense = flat.reshape(n, schema.dim)
    bad = _out_of_range(flat)
    if bad.size:
        message = _range_error(flat[bad[0]], "feature value")
        raise DataError(message, path=source, row=int(bad[0]) // schema.dim, column=schema.bag)
    return dense
