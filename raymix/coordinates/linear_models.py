"""A trained linear coordinate held for scoring: the one place a row's linear score is computed.

``raymix score`` (batch, through Ray Data) and ``raymix serve`` (online, through Ray Serve)
both score a coordinate's rows with :meth:`LinearModels.scores`, so a served row gets exactly
the score the batch command writes.

Layout (compact: a million entities of ~10 coefficients are ~130 MB):

    keys        str  [E]        entity ids, sorted (one "" or "global model" for a fixed effect)
    intercepts  f64  [E]        b_k
    coef_ptr    i64  [E + 1]    model k's coefficients are coef_value[coef_ptr[k]:coef_ptr[k+1]]
    coef_index  i64  [nnz]      on features coef_index[...] (ascending within a model)
    coef_value  f64  [nnz]

i.e. one CSR matrix ``W`` (E x dim) of coefficients beside the intercepts. Row ``r`` with
entity ``e`` scores ``b_e + x_r . w_e``, without the offset; a row whose entity has no model
scores 0 (it is scored by the other coordinates alone, as GDMix does). A fixed effect's one
model scores every row: ``x_r . w + b``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from raymix.data.avro.model_reader import read_avro_model_table
from raymix.errors import DataError
from raymix.solvers.entity import EntityModels, score_entities
from raymix.solvers.glm import linear_predictor

TABLE_SPAN = 4  # integer ids spanning at most this many times their number: a direct table


@dataclass(frozen=True)
class LinearModels:
    """Models of one coordinate in the layout of this module's docstring."""

    keys: np.ndarray
    intercepts: np.ndarray
    coef_ptr: np.ndarray
    coef_index: np.ndarray
    coef_value: np.ndarray

    @property
    def n_models(self) -> int:
        return int(self.keys.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (ids, intercepts, coefficients)."""
        return sum(
            a.nbytes
            for a in (self.keys, self.intercepts, self.coef_ptr, self.coef_index, self.coef_value)
        )

    @cached_property
    def _entity_models(self) -> EntityModels:
        n = self.keys.size
        return EntityModels(
            self.intercepts,
            self.coef_ptr,
            self.coef_index,
            self.coef_value,
            np.ones(n, bool),
            np.zeros(n, np.int32),
        )

    @cached_property
    def int_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """The ids that are integers in canonical decimal (``"7"``, not ``"07"``), as int64
        sorted (stably), and each one's row: integer ids are looked up here, without
        formatting each as a string."""
        try:
            values = self.keys.astype(np.int64)
        except (ValueError, OverflowError):  # some id is not an integer: only the canonical
            canonical = [k for k in self.keys.tolist() if _canonical_int(k)]
            rows = np.flatnonzero(np.isin(self.keys, np.asarray(canonical, dtype=str)))
            values = np.asarray([int(k) for k in self.keys[rows].tolist()], dtype=np.int64)
        else:
            rows = np.flatnonzero(values.astype(str) == self.keys)
            values = values[rows]
        order = np.argsort(values, kind="stable")
        return values[order], rows[order].astype(np.int64)

    @cached_property
    def int_table(self) -> tuple[int, np.ndarray] | None:
        """The integer ids' rows as a direct table, when the ids span at most
        :data:`TABLE_SPAN` times their number: ``(lo, table)``, ``table[v - lo]`` the row of id
        ``v`` (-1: none; of two equal ids, the first). A million ids: 8 MB, and a lookup is
        one read, not a binary search's twenty."""
        values, rows = self.int_ids
        if not values.size:
            return None
        lo = int(values[0])
        span = int(values[-1]) - lo + 1
        if span > TABLE_SPAN * values.size:
            return None
        first = np.r_[True, values[1:] != values[:-1]]  # sorted stably: the first of equals
        table = np.full(span, -1, np.int64)
        table[values[first] - lo] = rows[first]
        return lo, table

    def rows_of(self, entity: np.ndarray) -> np.ndarray:
        """Model row per entity id (ints or strings; an int ``7`` is the id ``"7"``), -1 for
        an entity without a model."""
        n = entity.size
        if not (self.keys.size and n):
            return np.full(n, -1, np.int64)
        ints = _int64_ids(entity)
        if ints is not None:
            direct = self.int_table
            if direct is not None:  # (ints - lo) wraps only for ids outside the table
                lo, table = direct
                at = ints - np.int64(lo)
                inside = (at >= 0) & (at < table.size)
                out = np.full(n, -1, np.int64)
                out[inside] = table[at[inside]]
                return out
            values, rows = self.int_ids
            if not values.size:
                return np.full(n, -1, np.int64)
            pos = np.minimum(np.searchsorted(values, ints), values.size - 1)
            return np.where(values[pos] == ints, rows[pos], -1).astype(np.int64)
        keys = np.asarray([entity_key(v) for v in entity.tolist()], dtype=str)
        pos = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        return np.where(self.keys[pos] == keys, pos, -1).astype(np.int64)

    def scores(self, X, entity: np.ndarray | None, *, threads: int | None = None) -> np.ndarray:
        """Per-row scores (float64, no offset) of rows ``X`` (CSR or dense, n x dim) with
        entity ids ``entity`` (None for a fixed effect). ``threads``: the fixed effect's
        kernel threads (default: all; 1 for a few rows, where waking threads costs more)."""
        n = X.shape[0]
        if entity is None:  # a fixed effect: the fit's own scoring, X @ coef + b
            coef = np.zeros(X.shape[1])
            coef[self.coef_index] = self.coef_value
            return linear_predictor(X, coef, float(self.intercepts[0]), n_threads=threads)
        if not sp.issparse(
            X
        ):  # a dense bag: the entity kernels take CSR (as routing gives the fit)
            X = sp.csr_matrix(X)
        # each row a group of its own: its model's score, b_m + x_r . w_m, is summed as in
        # any grouping (row by row), so the rows need no sorting by entity
        wanted, model_of_row = np.unique(self.rows_of(entity), return_inverse=True)
        models, model_index = self._models_of(wanted)
        rows = np.arange(n + 1, dtype=np.int64)
        return score_entities(models, X, rows, model_index=model_index[model_of_row.ravel()])

    def _models_of(self, wanted: np.ndarray) -> tuple[EntityModels, np.ndarray]:
        """The models ``wanted`` (distinct rows, -1: none) alone, and each one's row among
        them: a request of a few rows checks and scores a few models, not a million."""
        if wanted.size * 4 > self.keys.size:  # most of them: all, as they are
            return self._entity_models, wanted
        keep = wanted[wanted >= 0]
        lo = self.coef_ptr[keep]
        counts = self.coef_ptr[keep + 1] - lo
        ptr = np.zeros(keep.size + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        gather = np.repeat(lo - ptr[:-1], counts) + np.arange(ptr[-1])
        models = EntityModels(
            self.intercepts[keep],
            ptr,
            self.coef_index[gather],
            self.coef_value[gather],
            np.ones(keep.size, bool),
            np.zeros(keep.size, np.int32),
        )
        index = np.where(wanted >= 0, np.cumsum(wanted >= 0) - 1, -1).astype(np.int64)
        return models, index


def _canonical_int(key: str) -> bool:
    return key.isascii() and key.lstrip("-").isdigit() and str(int(key)) == key


def _int64_ids(entity: np.ndarray) -> np.ndarray | None:
    """``entity`` as int64 if every id is an integer (numpy, or Python ``int`` that fits),
    else None (strings, bools, a mix: looked up as strings)."""
    if entity.dtype.kind == "i" or (entity.dtype.kind == "u" and entity.dtype.itemsize < 8):
        return entity.astype(np.int64, copy=False)
    if entity.dtype != object:
        return None
    values = entity.tolist()
    if set(map(type, values)) != {int}:
        return None
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError:
        return None


def entity_key(value) -> str:
    """An entity id as the models name it: strings as they are, integers in decimal."""
    return value if isinstance(value, str) else str(int(value))


def load_linear_models(directory: str | Path, names, dim: int) -> LinearModels:
    """The models of an Avro model directory (or file), read with the compiled reader and
    sorted by id (stably: of two models with one id, the first in file order is used).

    ``names[j]`` is feature ``j``'s ``(name, term)`` (None: a feature's name is its index);
    coefficients on unknown features are dropped, one on a feature ``>= dim`` is an error.
    """
    table = read_avro_model_table(directory, names)
    entity = table.column("entity").combine_chunks()
    order = pc.sort_indices(entity).to_numpy()  # stable; UTF-8 bytes sort as code points
    index_lists = table.column("index").combine_chunks()
    value_lists = table.column("value").combine_chunks()
    offsets = index_lists.offsets.to_numpy().astype(np.int64)
    index = index_lists.values.to_numpy().astype(np.int64, copy=False)
    value = value_lists.values.to_numpy().astype(np.float64, copy=False)
    if index.size and index.max() >= dim:
        bad = int(np.searchsorted(offsets, int(np.argmax(index)), side="right") - 1)
        raise DataError(
            f"model '{entity[bad].as_py()}' has feature index {index.max()} >= {dim}",
            path=str(directory),
        )
    counts = np.diff(offsets)[order]
    ptr = np.zeros(order.size + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    gather = np.repeat(offsets[:-1][order] - ptr[:-1], counts) + np.arange(ptr[-1])
    keys = entity.take(pa.array(order)).to_numpy(zero_copy_only=False).astype(str)
    return LinearModels(
        keys,
        table.column("intercept").to_numpy()[order].astype(np.float64),
        ptr,
        index[gather],
        value[gather],
    )
