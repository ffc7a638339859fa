"""Pure helpers of the random-effect coordinate: stable buckets, grouping, active/passive rows.

* :func:`stable_bucket` maps entity ids (int64 or str) to buckets with a hash that is the
  same in every process and run (never Python's salted ``hash``).
* :func:`group_rows` sorts rows by (entity, uid), so each entity's rows are contiguous and in
  a canonical order whatever the number of actors or buckets, and marks the rows used for
  fitting: entities under ``min_samples`` rows get no model (passive rows, scored by the
  offset alone); over ``max_samples``, a deterministic sample of ``max_samples`` rows is
  active, re-weighted by count/max_samples (Photon ML's rule), the rest passive.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from raymix.data.rows import Rows

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def stable_hash(values: np.ndarray) -> np.ndarray:
    """A uint64 hash per id: splitmix64 of integers, CRC32 of UTF-8 for strings."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return _mix(values.astype(np.int64).view(np.uint64))
    if values.dtype.kind == "S" or (values.size and isinstance(values.flat[0], bytes)):
        # TFRecord's bytes_list ids: their UTF-8 text, as the readers give them (data/rows.py)
        values = np.asarray([v.decode("utf-8", "replace") for v in values.tolist()], object)
    unique, inverse = np.unique(values.astype(str), return_inverse=True)
    hashed = np.fromiter((zlib.crc32(v.encode("utf-8")) for v in unique), np.uint64, unique.size)
    return _mix(hashed)[inverse]


def stable_bucket(values: np.ndarray, n_buckets: int) -> np.ndarray:
    return (stable_hash(values) % np.uint64(n_buckets)).astype(np.int64)


@dataclass
class Grouped:
    """Rows of one holder grouped by entity."""

    rows: Rows  # sorted by (entity, uid)
    entities: np.ndarray  # sorted unique entity ids, one per group
    entity_ptr: np.ndarray  # rows of entity k: entity_ptr[k]:entity_ptr[k+1]
    active: np.ndarray  # bool per row: used for fitting
    fit_weight: np.ndarray  # weight per row for fitting (re-weighted when sampled)
    has_model: np.ndarray  # bool per entity
    first_row: np.ndarray  # per entity: where its first row sat in the rows given (int64)


def group_rows(
    rows: Rows, min_samples: int = 0, max_samples: int | None = None, seed: int = 0
) -> Grouped:
    """Group ``rows`` by entity (ids sorted, rows by uid within an entity). ``rows`` is
    reordered in place and becomes the result's ``rows``: no second copy of the data.

    ``first_row[k]`` is the position, in the order ``rows`` had, of entity ``k``'s first
    row: what ``np.unique(entity, return_index=True)`` gives, without a second sort, so that
    anything the caller holds per row of the input (a bucket) can be read per entity."""
    entity = rows.entity
    if entity is None:
        raise ValueError("group_rows needs rows with an entity id per row")
    entities, codes = np.unique(entity, return_inverse=True)
    order = np.lexsort((rows.uid, codes))
    rows.permute(order)
    codes = codes[order]
    counts = np.bincount(codes, minlength=entities.size)
    entity_ptr = np.zeros(entities.size + 1, np.int64)
    np.cumsum(counts, out=entity_ptr[1:])
    first_row = np.zeros(0, np.int64)
    if entities.size:  # an entity's rows are contiguous now: the least of their old positions
        first_row = np.minimum.reduceat(order, entity_ptr[:-1]).astype(np.int64, copy=False)
    has_model = counts >= max(min_samples, 1)
    active = has_model[codes].copy()
    fit_weight = rows.weight.copy()
    if max_samples is not None and counts.size and counts.max() > max_samples:
        # rank rows within their entity by a seeded hash of the uid; keep the first max_samples
        key = _mix(rows.uid.view(np.uint64) ^ _mix(np.full(1, seed, np.int64).view(np.uint64)))
        within = np.lexsort((key, codes))
        rank = np.empty(rows.uid.size, np.int64)
        rank[within] = np.arange(rows.uid.size) - entity_ptr[codes[within]]
        big = counts[codes] > max_samples
        active &= ~big | (rank < max_samples)
        scale = np.where(big, counts[codes] / max_samples, 1.0)
        fit_weight = fit_weight * scale
    return Grouped(
        rows=rows,
        entities=entities,
        entity_ptr=entity_ptr,
        active=active,
        fit_weight=fit_weight,
        has_model=has_model,
        first_row=first_row,
    )


def lookup_entities(values: np.ndarray, entities: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted ``entities`` array, -1 where absent."""
    if entities.size == 0 or values.size == 0:
        return np.full(values.size, -1, np.int64)
    pos = np.searchsorted(entities, values)
    pos_clipped = np.minimum(pos, entities.size - 1)
    found = entities[pos_clipped] == values
    return np.where(found, pos_clipped, -1).astype(np.int64)
