"""Synthetic GLMix data with planted coefficients, generated and written one part at a time.

The model (``G`` global features, ``E`` features per random-effect bag)::

    logit_r = b + x_r.beta + (u_r.w_user[user_r] + c_user[user_r])
                           + (v_r.w_item[item_r] + c_item[item_r])
    response_r ~ Bernoulli(sigmoid(logit_r))

with ``beta_j ~ N(0, global_sigma^2)`` and every per-user (per-item) coefficient and intercept
``~ N(0, user_sigma^2)`` (``item_sigma``). The defaults ``global_sigma = 1/sqrt(G)`` and
``user_sigma = item_sigma = 0.5/sqrt(E + 1)`` give the three parts variances 1, 0.25 and 0.25;
with ``b = -1`` the positive rate is about 0.32 and the AUC of the true logit about 0.78.

Features are standard normal quantised to 256 levels (the midpoints of the normal's 256
quantile buckets, rescaled to mean 0 and variance 1, as bucketised production features are):
as informative as continuous ones, 8x cheaper to draw from one random byte, and Parquet
dictionary-encodes them to one byte per value.

Rows go to users and items by popularity: entity ``k`` has weight ``exp(skew * z_k)``,
``z_k ~ N(0, 1)`` (lognormal), and the number of rows of each entity is
``1 + Multinomial(rows - entities, weights)`` when ``rows >= entities`` (so every entity has
at least one row, in train or validation) and ``Multinomial(rows, weights)`` otherwise (then
some ids in ``[0, entities)`` have no rows). With ``skew = 1.5``, 10M rows and 1M users, the
median user has 4 rows and the largest a few thousand. Rows are a uniformly random
arrangement of those counts, dealt part by part (a multivariate hypergeometric draw per part),
so every part is an unbiased sample and nothing holds all rows at once.

Columns (the row convention of :mod:`raymix.data.rows`): ``uid`` int64 0..rows-1, ``response``
int64, ``weight`` float32 1.0, ``user_id``/``item_id`` int64, ``global`` as a DENSE bag
``fixed_size_list<float32>[G]`` (it has every entry: no indices to store, check or sort, so it
reads several times faster than a sparse bag), ``per_user`` and ``per_item`` as sparse bags
with all ``E`` entries (the per-entity solvers take sparse rows), and ``true_logit`` float32.

Layout under ``dest``: ``{train,validation}/part-NNNNN.{parquet,tfrecord}`` (train rows are
``uid < train_rows``), ``metadata/tensor_metadata.json``, ``featureList/{global,per_user,
per_item}`` (``g0``, ``u0``, ``i0``, ...), ``truth.npz`` (see :class:`Truth`) and
``summary.json``. Every file appears atomically; the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import expit, ndtri

from raymix.data.metadata import Metadata, TensorSpec, write_feature_list
from raymix.errors import DataError
from raymix.files import atomic_path, write_text
from raymix.metrics import auc

__all__ = ["FORMATS", "Truth", "generate_synthetic", "load_truth", "metadata"]

FORMATS = ("parquet", "tfrecord")
SPLITS = ("train", "validation")
BAG_PREFIX = {"global": "g", "per_user": "u", "per_item": "i"}
#: Rows generated (and written as one Parquet row group) at a time: bounds the memory.
SLICE_ROWS = 1 << 17
_OWN = {"train", "validation", "metadata", "featureList", "truth.npz", "summary.json"}
_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}


def _levels() -> np.ndarray:
    mid = ndtri((np.arange(256) + 0.5) / 256)
    return ((mid - mid.mean()) / mid.std()).astype(np.float32)


LEVELS = _levels()


@dataclass(frozen=True)
class Truth:
    """The planted model; ``truth.npz`` holds these arrays under the same names.

    ``beta`` (G,), ``user_coef`` (U, E), ``user_intercept`` (U,), ``item_coef`` (I, E),
    ``item_intercept`` (I,), all float32; ``intercept`` the global ``b``; ``user_rows`` (U,)
    and ``item_rows`` (I,) the number of rows of each entity (train + validation).
    """

    intercept: float
    beta: np.ndarray
    user_coef: np.ndarray
    user_intercept: np.ndarray
    item_coef: np.ndarray
    item_intercept: np.ndarray
    user_rows: np.ndarray
    item_rows: np.ndarray

    def logit(self, x_global, user_id, x_user, item_id, x_item) -> np.ndarray:
        """True logits (float64) of rows: dense ``(n, G)``, ``(n, E)`` features and ids."""
        z = self.intercept + np.einsum("ij,j->i", x_global, self.beta).astype(np.float64)
        z += np.einsum("ij,ij->i", x_user, self.user_coef[user_id])
        z += self.user_intercept[user_id]
        z += np.einsum("ij,ij->i", x_item, self.item_coef[item_id])
        z += self.item_intercept[item_id]
        return z

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "intercept": np.float64(self.intercept),
            **{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "intercept"},
        }


def load_truth(path: str | os.PathLike) -> Truth:
    """Read ``truth.npz`` written by :func:`generate_synthetic`."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Truth(**{**arrays, "intercept": float(arrays["intercept"])})


def metadata(global_features: int, entity_features: int) -> Metadata:
    """The GDMix tensor metadata of the synthetic columns."""
    return Metadata(
        (
            TensorSpec("uid", "long"),
            TensorSpec("weight", "float"),
            TensorSpec("user_id", "long"),
            TensorSpec("item_id", "long"),
            TensorSpec("global", "float", (global_features,), False),
            TensorSpec("per_user", "float", (entity_features,), True),
            TensorSpec("per_item", "float", (entity_features,), True),
            TensorSpec("true_logit", "float"),
        ),
        (TensorSpec("response", "int"),),
    )


def generate_synthetic(
    dest: str | os.PathLike,
    *,
    rows: int,
    users: int,
    items: int,
    global_features: int = 50,
    entity_features: int = 10,
    fmt: str = "parquet",
    rows_per_file: int = 1_000_000,
    seed: int = 0,
    validation_fraction: float = 0.1,
    intercept: float = -1.0,
    global_sigma: float | None = None,
    user_sigma: float | None = None,
    item_sigma: float | None = None,
    skew: float = 1.5,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Generate the data set described in the module docstring under ``dest``.

    The last ``round(rows * validation_fraction)`` rows are the validation split. A non-empty
    ``dest`` is refused unless ``overwrite``, and even then only if it holds nothing but this
    generator's files; ``summary.json`` is written last, so a directory without it holds an
    unfinished generation. Memory: the planted coefficients (``4 (E + 1)`` bytes per entity),
    two id arrays of one part and one slice of rows; not the data set. Returns ``summary.json``'s content plus ``seconds`` and
    ``rows_per_second``.
    """
    start = time.perf_counter()
    n_val = _check_parameters(locals())
    dest = Path(dest)
    _check_dest(dest, overwrite)
    (dest / "summary.json").unlink(missing_ok=True)  # written last: marks a finished generation
    say = progress or (lambda message: None)
    sigmas = {
        "global_sigma": 1 / math.sqrt(global_features) if global_sigma is None else global_sigma,
        "user_sigma": 0.5 / math.sqrt(entity_features + 1) if user_sigma is None else user_sigma,
        "item_sigma": 0.5 / math.sqrt(entity_features + 1) if item_sigma is None else item_sigma,
    }
    truth = _plant(
        seed, rows, users, items, global_features, entity_features, intercept, skew, sigmas
    )
    meta = metadata(global_features, entity_features)
    parts = _plan(rows, n_val, rows_per_file)
    user_dealer, item_dealer = _Dealer(truth.user_rows), _Dealer(truth.item_rows)
    stats = _Stats()
    written: set[Path] = set()
    for number, (split, index, first, count) in enumerate(parts):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, number)))
        user_id = user_dealer.deal(count, rng)
        item_id = item_dealer.deal(count, rng)
        tables = _slices(rng, truth, meta, first, user_id, item_id, stats, split)
        path = dest / split / f"part-{index:05d}.{fmt}"
        (_write_parquet if fmt == "parquet" else _write_tfrecord)(path, tables, meta)
        written.add(path)
        say(f"{split}/{path.name}: {count} rows ({first + count}/{rows})")

    meta.write(
        dest / "metadata" / "tensor_metadata.json", {"numberOfTrainingSamples": rows - n_val}
    )
    for bag, prefix in BAG_PREFIX.items():
        dim = global_features if bag == "global" else entity_features
        write_feature_list(dest / "featureList" / bag, [(f"{prefix}{j}", "") for j in range(dim)])
    _save_npz(dest / "truth.npz", truth.arrays())
    summary = {
        "rows": rows,
        "train_rows": rows - n_val,
        "validation_rows": n_val,
        "users": users,
        "items": items,
        "global_features": global_features,
        "entity_features": entity_features,
        "format": fmt,
        "rows_per_file": rows_per_file,
        "files": {s: sum(p[0] == s for p in parts) for s in SPLITS},
        "seed": seed,
        "validation_fraction": validation_fraction,
        "intercept": intercept,
        **sigmas,
        "skew": skew,
        **stats.summary(),
        "entity_rows": {"users": _sizes(truth.user_rows), "items": _sizes(truth.item_rows)},
    }
    write_text(dest / "summary.json", json.dumps(summary, indent=2) + "\n")
    _remove_stale(dest, written)
    seconds = time.perf_counter() - start
    return {**summary, "seconds": seconds, "rows_per_second": rows / seconds}


# ----------------------------------------------------------------------------- planting


def _plant(seed, rows, users, items, g, e, intercept, skew, sigmas) -> Truth:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))

    def normal(sigma, shape):
        return (sigma * rng.standard_normal(shape)).astype(np.float32)

    beta = normal(sigmas["global_sigma"], g)
    user_sigma, item_sigma = sigmas["user_sigma"], sigmas["item_sigma"]
    sizes = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return Truth(
        intercept=float(intercept),
        beta=beta,
        user_coef=normal(user_sigma, (users, e)),
        user_intercept=normal(user_sigma, users),
        item_coef=normal(item_sigma, (items, e)),
        item_intercept=normal(item_sigma, items),
        user_rows=_entity_rows(rows, users, skew, sizes),
        item_rows=_entity_rows(rows, items, skew, sizes),
    )


def _entity_rows(rows: int, entities: int, skew: float, rng) -> np.ndarray:
    """Rows per entity: lognormal popularity, at least one each when ``rows >= entities``."""
    weight = np.exp(skew * rng.standard_normal(entities))
    weight /= weight.sum()
    floor = 1 if rows >= entities else 0
    return floor + rng.multinomial(rows - floor * entities, weight)


class _Dealer:
    """Deals entity ids to consecutive blocks of rows: a random arrangement of the counts."""

    def __init__(self, counts: np.ndarray):
        self.remaining = counts.astype(np.int64)
        self.left = int(counts.sum())

    def deal(self, n: int, rng) -> np.ndarray:
        take = (
            self.remaining if n == self.left else rng.multivariate_hypergeometric(self.remaining, n)
        )
        self.remaining = self.remaining - take
        self.left -= n
        ids = np.repeat(np.arange(len(take), dtype=np.int64), take)
        rng.shuffle(ids)
        return ids


def _plan(rows: int, n_val: int, per_file: int) -> list[tuple[str, int, int, int]]:
    """(split, part index, first uid, row count) of every part, train first."""
    parts = []
    for split, lo, hi in (("train", 0, rows - n_val), ("validation", rows - n_val, rows)):
        for index, first in enumerate(range(lo, hi, per_file)):
            parts.append((split, index, first, min(per_file, hi - first)))
    return parts


# ----------------------------------------------------------------------------- rows


def _slices(rng, truth, meta, first, user_id, item_id, stats, split) -> Iterator[pa.Table]:
    """The part's rows as tables of at most SLICE_ROWS rows, in the metadata's column order."""
    schema = meta.arrow_schema()
    g, e = truth.beta.size, truth.user_coef.shape[1]
    indices = pa.array(np.tile(np.arange(e, dtype=np.int64), min(len(user_id), SLICE_ROWS)))
    for lo in range(0, len(user_id), SLICE_ROWS):
        users, items = user_id[lo : lo + SLICE_ROWS], item_id[lo : lo + SLICE_ROWS]
        n = len(users)
        x_global = LEVELS[rng.integers(0, 256, (n, g), dtype=np.uint8)]
        x_user = LEVELS[rng.integers(0, 256, (n, e), dtype=np.uint8)]
        x_item = LEVELS[rng.integers(0, 256, (n, e), dtype=np.uint8)]
        z = truth.logit(x_global, users, x_user, items, x_item)
        y = (rng.random(n) < expit(z)).astype(np.int64)
        stats.add(split, z, y)
        offsets = pa.array(np.arange(0, (n + 1) * e, e, dtype=np.int32))
        bag_indices = pa.ListArray.from_arrays(offsets, indices.slice(0, n * e))
        columns = {
            "uid": np.arange(first + lo, first + lo + n, dtype=np.int64),
            "weight": np.ones(n, np.float32),
            "user_id": users,
            "item_id": items,
            "global": pa.FixedSizeListArray.from_arrays(pa.array(x_global.reshape(-1)), g),
            "per_user_indices": bag_indices,
            "per_user_values": pa.ListArray.from_arrays(offsets, pa.array(x_user.reshape(-1))),
            "per_item_indices": bag_indices,
            "per_item_values": pa.ListArray.from_arrays(offsets, pa.array(x_item.reshape(-1))),
            "true_logit": z.astype(np.float32),
            "response": y,
        }
        yield pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


class _Stats:
    """Streaming label / logit statistics; validation logits are kept for the exact AUC."""

    def __init__(self):
        self.n = self.pos = 0
        self.sum = self.sum2 = 0.0
        self.split_pos = dict.fromkeys(SPLITS, 0)
        self.split_n = dict.fromkeys(SPLITS, 0)
        self.val_logit: list[np.ndarray] = []
        self.val_label: list[np.ndarray] = []

    def add(self, split: str, z: np.ndarray, y: np.ndarray) -> None:
        self.n += len(y)
        self.pos += int(y.sum())
        self.sum += float(z.sum())
        self.sum2 += float(np.dot(z, z))
        self.split_n[split] += len(y)
        self.split_pos[split] += int(y.sum())
        if split == "validation":
            self.val_logit.append(z.astype(np.float32))
            self.val_label.append(y.astype(np.int8))

    def summary(self) -> dict[str, Any]:
        mean = self.sum / self.n
        rate = {s: self.split_pos[s] / self.split_n[s] if self.split_n[s] else None for s in SPLITS}
        true_auc = None
        if self.val_logit:
            value = auc(np.concatenate(self.val_logit), np.concatenate(self.val_label))
            true_auc = None if math.isnan(value) else value
        return {
            "positive_rate": self.pos / self.n,
            "train_positive_rate": rate["train"],
            "validation_positive_rate": rate["validation"],
            "true_logit_mean": mean,
            "true_logit_std": math.sqrt(max(self.sum2 / self.n - mean * mean, 0.0)),
            "validation_true_auc": true_auc,
        }


def _sizes(counts: np.ndarray) -> dict[str, Any]:
    q = np.quantile(counts, list(_QUANTILES.values()), method="lower")
    return {
        "entities": int(counts.size),
        "with_rows": int(np.count_nonzero(counts)),
        "min": int(counts.min()),
        **{k: int(v) for k, v in zip(_QUANTILES, q, strict=True)},
        "max": int(counts.max()),
        "mean": float(counts.mean()),
    }


# ----------------------------------------------------------------------------- writing


def _write_parquet(path: Path, tables: Iterator[pa.Table], meta: Metadata) -> None:
    schema = meta.arrow_schema()
    # Dictionary-encode the 256 feature levels, bag indices and constant columns only: unique
    # ids and logits would just pay for a dictionary that overflows.
    nested = [
        f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type)
    ]
    dictionary = ["response", "weight", *(f"{name}.list.element" for name in nested)]
    with (
        atomic_path(path) as tmp,
        pq.ParquetWriter(str(tmp), schema, compression="zstd", use_dictionary=dictionary) as writer,
    ):
        for table in tables:
            writer.write_table(table, row_group_size=SLICE_ROWS)


def _write_tfrecord(path: Path, tables: Iterator[pa.Table], meta: Metadata) -> None:
    """Like :func:`raymix.data.tfrecord.tables.write_tfrecord_file`, but a slice at a time."""
    from raymix.data.tfrecord import example_codec as codec

    specs = list(meta.tensors)
    t = codec.tf()
    options = t.io.TFRecordOptions(compression_type=codec.compression_type(str(path)))
    with atomic_path(path) as tmp, t.io.TFRecordWriter(str(tmp), options) as writer:
        for table in tables:
            plan = codec.example_plan(table, specs, str(path))
            for record in codec.serialize_rows(plan, table.num_rows):
                writer.write(record)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with fixed timestamps, so the same arrays give the same bytes."""
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive,
    ):
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def _check_parameters(p: dict[str, Any]) -> int:
    """Check :func:`generate_synthetic`'s arguments (sklearn's message); the validation rows."""
    owner = "generate_synthetic"
    for name, low in (
        ("rows", 1),
        ("users", 1),
        ("items", 1),
        ("global_features", 1),
        ("entity_features", 1),
        ("rows_per_file", 1),
        ("seed", 0),
    ):
        value = p[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(
                f"The '{name}' parameter of {owner} must be an int in the range [{low}, inf). "
                f"Got {value!r} instead."
            )
    if p["fmt"] not in FORMATS:
        raise ValueError(
            f"The 'fmt' parameter of {owner} must be one of {list(FORMATS)}. Got {p['fmt']!r} instead."
        )
    _check_float(owner, "validation_fraction", p["validation_fraction"], 0.0, 1.0, "[0, 1)")
    _check_float(owner, "intercept", p["intercept"], -math.inf, math.inf, "(-inf, inf)")
    _check_float(owner, "skew", p["skew"], 0.0, math.inf, "[0, inf)")
    for name in ("global_sigma", "user_sigma", "item_sigma"):
        if p[name] is not None:
            _check_float(owner, name, p[name], 0.0, math.inf, "[0, inf) or None")
    rows, fraction = p["rows"], p["validation_fraction"]
    n_val = round(rows * fraction)
    if n_val >= rows:
        raise ValueError(
            f"The 'validation_fraction' parameter of {owner} leaves no training rows "
            f"(rows={rows}). Got {fraction!r} instead."
        )
    return n_val


def _check_dest(dest: Path, overwrite: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise DataError("output exists and is not a directory", str(dest))
    entries = sorted(p.name for p in dest.iterdir()) if dest.is_dir() else []
    if entries and not overwrite:
        raise DataError("output directory is not empty (pass overwrite=True)", str(dest))
    foreign = [name for name in entries if name not in _OWN]
    if foreign:
        raise DataError(
            f"refusing to overwrite: {foreign} were not written by the synthetic generator",
            str(dest),
        )


def _remove_stale(dest: Path, written: set[Path]) -> None:
    """After an overwrite, delete part files of an earlier generation that this one did not."""
    for split in SPLITS:
        for pattern in (f"part-*.{f}" for f in FORMATS):
            for path in (dest / split).glob(pattern):
                if path not in written:
                    path.unlink()


def _check_float(owner: str, name: str, value, low: float, high: float, interval: str) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and low <= value and (value < high or high == math.inf)
    if not ok:
        raise ValueError(
            f"The '{name}' parameter of {owner} must be a float in the range {interval}. "
            f"Got {value!r} instead."
        )
