"""The deep coordinate's inputs: text columns tokenized, rows held as a :class:`Shard`.

A file's rows become a table whose text column is fixed-width token ids
(:func:`tokenized_table`), so that workers receive numbers only; a worker turns its blocks
into a :class:`Shard` (:func:`shard_of`), sorted by uid, and keeps it resident across
coordinate-descent passes. Where the files are read (one Ray Data task per file) and how the
rows are cut between workers is the engine's (:mod:`raymix.engine.reading`);
:func:`read_local_shard` reads every row in this process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymix.data.rows import Rows, concat_rows, rows_from_table
from raymix.data.source import Source
from raymix.deep.text import Framing, Vocabulary, tokenize
from raymix.errors import DataError

TOKENS, LENGTH = "__raymix_tokens", "__raymix_length"


@dataclass(frozen=True)
class TextInput:
    """Which column holds the text and how it becomes token ids."""

    column: str
    vocab: Vocabulary
    framing: Framing


@dataclass
class Shard:
    """One worker's rows, resident: what training and scoring need, as arrays.

    ``wide_ids``/``wide_values`` are the wide bag padded to the shard's largest row
    (``[n, K]``, id -1 marks padding), which keeps every batch a plain dense gather.
    """

    uid: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    offset: np.ndarray
    tokens: np.ndarray
    lengths: np.ndarray
    wide_ids: np.ndarray
    wide_values: np.ndarray

    def __len__(self) -> int:
        return self.uid.size

    @classmethod
    def from_rows(cls, rows: Rows, tokens: np.ndarray, lengths: np.ndarray) -> Shard:
        ids, values = pad_sparse(rows.X)
        return cls(
            rows.uid,
            rows.label,
            rows.weight,
            rows.offset,
            tokens.astype(np.int32),
            lengths.astype(np.int32),
            ids,
            values,
        )

    def take(self, index: np.ndarray) -> Shard:
        return Shard(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def pad_sparse(X) -> tuple[np.ndarray, np.ndarray]:
    """CSR (or dense) rows -> padded ``(ids int64 [n, K], values float32 [n, K])``, pad id -1."""
    import scipy.sparse as sp

    X = sp.csr_matrix(X)
    n = X.shape[0]
    counts = np.diff(X.indptr)
    k = max(int(counts.max()) if n else 0, 1)
    ids = np.full((n, k), -1, np.int64)
    values = np.zeros((n, k), np.float32)
    rows = np.repeat(np.arange(n), counts)
    cols = np.arange(X.nnz) - np.repeat(X.indptr[:-1], counts)
    ids[rows, cols] = X.indices
    values[rows, cols] = X.data
    return ids, values


def read_text_table(source: Source, column: str, path: str) -> pa.Table:
    """One file of ``source`` with the text ``column`` as well (row convention)."""
    if source.format == "parquet":
        from raymix.data.parquet import read_parquet_rows

        return read_parquet_rows(path, source.schema, extra=(column,))
    if source.format == "photon":
        raise DataError(
            "a deep coordinate reads its text from Parquet or TFRecord, not Photon Avro", path=path
        )
    from raymix.data.tfrecord.tables import read_tfrecord_file

    if source.metadata is None:
        raise DataError("TFRecord input needs its tensor metadata", path=path)
    return read_tfrecord_file(path, source.metadata, source.tensors() + [column])


def texts_of(column) -> list[str]:
    """A string/binary Arrow column as Python strings (missing -> empty text)."""
    out = []
    for value in column.to_pylist():
        if value is None:
            value = ""
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out.append(value)
    return out


def tokenized_table(path: str, source: Source, text: TextInput) -> pa.Table:
    """One file of ``source`` in the row convention, its text turned into token ids
    (columns ``TOKENS``: fixed-width lists, ``LENGTH``) so that workers receive numbers only."""
    table = read_text_table(source, text.column, path)
    ids, lengths = tokenize(texts_of(table.column(text.column)), text.vocab, text.framing)
    table = table.drop_columns([text.column])
    table = table.append_column(
        TOKENS, pa.FixedSizeListArray.from_arrays(pa.array(ids.ravel()), ids.shape[1])
    )
    return table.append_column(LENGTH, pa.array(lengths))


def tokens_of(table: pa.Table, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The token ids ``[n, width]`` and lengths ``[n]`` of a :func:`tokenized_table`."""
    flat = pc.list_flatten(table.column(TOKENS)).to_numpy(zero_copy_only=False)
    return flat.reshape(-1, width), table.column(LENGTH).to_numpy(zero_copy_only=False)


def shard_of(
    parts: list[Rows], tokens: list[np.ndarray], lengths: list[np.ndarray], dim: int, width: int
) -> Shard:
    """Blocks of rows and their tokens -> one :class:`Shard`, sorted by uid (so that every
    sum over it is independent of the order the blocks came in)."""
    rows = concat_rows(parts, dim)
    ids = np.concatenate(tokens) if tokens else np.zeros((0, width), np.int32)
    length = np.concatenate(lengths) if lengths else np.zeros(0, np.int32)
    order = np.argsort(rows.uid, kind="stable")
    return Shard.from_rows(rows.take(order), ids[order], length[order])


def check_text_column(source: Source, column: str) -> None:
    """Fail before anything starts if the data lacks the text column or it is not text."""
    if source.metadata is not None:
        if column not in source.metadata:
            raise DataError(
                f"metadata has no tensor '{column}' for the text column "
                f"(has {list(source.metadata.names)})",
                column=column,
            )
        spec = source.metadata[column]
        if spec.dtype not in ("string", "bytes") or spec.shape:
            raise DataError(
                f"the text column must be a scalar string tensor, got {spec.dtype} {list(spec.shape)}",
                column=column,
            )
        return
    from raymix.data.parquet import parquet_schema

    schema = parquet_schema(source.files[0])
    if column not in schema.names:
        raise DataError(
            f"missing text column (has {schema.names})", path=source.files[0], column=column
        )
    kind = schema.field(column).type
    if not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        raise DataError(
            f"the text column must hold strings, got {kind}", path=source.files[0], column=column
        )


def read_local_shard(source: Source, text: TextInput) -> Shard:
    """Every row of ``source`` as one :class:`Shard`, read in this process (no Ray)."""
    parts, tokens, lengths = [], [], []
    for path in source.files:
        table = read_text_table(source, text.column, path)
        parts.append(rows_from_table(table, source.schema, source=path))
        ids, length = tokenize(texts_of(table.column(text.column)), text.vocab, text.framing)
        tokens.append(ids)
        lengths.append(length)
    return shard_of(parts, tokens, lengths, source.schema.dim, text.framing.width)
