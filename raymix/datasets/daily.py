"""Synthetic GLMix data arriving in time-ordered days (incremental training's data set).

One planted model over every day: a global intercept ``b`` and coefficients ``beta`` (``G``
dense global features), and per user ``w_user[u]`` (``E`` features) and ``c_user[u]``::

    z_r = b + x_r.beta + u_r.w_user[user_r] + c_user[user_r]
    logistic: response_r ~ Bernoulli(sigmoid(z_r));   linear: response_r = z_r + N(0, noise^2)

Day 1 has ``rows`` rows over users ``0..users-1`` (lognormal popularity, as
:mod:`raymix.datasets.synthetic`); each later day has ``update_rows`` rows over a random
``active_fraction`` of the users known so far plus ``new_users`` users never seen before
(their ids follow the known ones), so the same planted entities recur across days and new
ones arrive. ``uid`` is unique over all days.

Layout under ``dest``: ``day-<d>/{train,validation}/part-00000.parquet`` (the last
``validation_fraction`` of each day's rows are its validation split), ``featureList/{global,
per_user}`` (``g0``..., ``u0``...), ``truth.npz`` (``intercept``, ``beta``, ``user_coef``,
``user_intercept``) and ``summary.json`` (written last). The same arguments give the same
files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import expit

from raymix.data.metadata import Metadata, TensorSpec, write_feature_list
from raymix.errors import DataError
from raymix.files import atomic_path, write_text

__all__ = ["day_dirs", "generate_days", "plan_days"]


def plan_days(
    *,
    days: int,
    rows: int,
    update_rows: int | Sequence[int],
    users: int,
    new_users: int,
    active_fraction: float,
    skew: float,
    seed: int,
) -> list[np.ndarray]:
    """The user id of every row of each day (a pure plan: ids only); ``update_rows`` is the
    rows of every later day, or of each (``days - 1`` numbers)."""
    later = [update_rows] * (days - 1) if isinstance(update_rows, int) else list(update_rows)
    if len(later) != days - 1:
        raise DataError(f"update_rows: {days - 1} numbers for {days} days; got {len(later)}")
    if days < 1 or rows < 1 or users < 1 or min(later, default=0) < 0 or new_users < 0:
        raise DataError("days, rows and users must be >= 1, update_rows and new_users >= 0")
    if not 0.0 <= active_fraction <= 1.0:
        raise DataError(f"active_fraction must lie in [0, 1]; got {active_fraction!r}")
    total = users + new_users * (days - 1)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(10,)))
    popularity = np.exp(skew * rng.standard_normal(total))
    plan = [_deal(rng, np.arange(users), popularity, rows)]
    known = users
    for n in later:
        active = rng.choice(known, size=round(active_fraction * known), replace=False)
        fresh = np.arange(known, known + new_users)
        plan.append(_deal(rng, np.sort(np.concatenate([active, fresh])), popularity, n))
        known += new_users
    return plan


def _deal(rng, ids: np.ndarray, popularity: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows over ``ids`` by popularity, every id at least once when ``n >= ids.size``."""
    if ids.size == 0 or n == 0:
        return np.zeros(0, np.int64)
    weight = popularity[ids] / popularity[ids].sum()
    floor = 1 if n >= ids.size else 0
    counts = floor + rng.multinomial(n - floor * ids.size, weight)
    out = np.repeat(ids.astype(np.int64), counts)
    rng.shuffle(out)
    return out


def day_dirs(dest: str | os.PathLike, days: int) -> list[Path]:
    return [Path(dest) / f"day-{d}" for d in range(1, days + 1)]


def generate_days(
    dest: str | os.PathLike,
    *,
    days: int = 3,
    rows: int = 100_000,
    update_rows: int | Sequence[int] = 10_000,
    users: int = 10_000,
    new_users: int = 100,
    active_fraction: float = 0.1,
    global_features: int = 10,
    entity_features: int = 5,
    task: str = "logistic",
    noise: float = 0.5,
    intercept: float = -1.0,
    skew: float = 1.0,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the days of the module docstring under ``dest``; returns ``summary.json``'s content."""
    if task not in ("logistic", "linear"):
        raise DataError(f"task must be 'logistic' or 'linear'; got {task!r}")
    plan = plan_days(days=days, rows=rows, update_rows=update_rows, users=users,
                     new_users=new_users, active_fraction=active_fraction, skew=skew,
                     seed=seed)  # fmt: skip
    g, e = global_features, entity_features
    total = users + new_users * (days - 1)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(11,)))
    beta = rng.normal(0.0, 1 / math.sqrt(g), g)
    user_coef = rng.normal(0.0, 0.5 / math.sqrt(e + 1), (total, e))
    user_intercept = rng.normal(0.0, 0.5, total)
    dest = Path(dest)
    first, per_day = 0, []
    for d, user_id in enumerate(plan, start=1):
        n = user_id.size
        day_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(12, d)))
        x_global = day_rng.standard_normal((n, g))
        x_user = day_rng.standard_normal((n, e))
        z = intercept + x_global @ beta + np.einsum("ij,ij->i", x_user, user_coef[user_id])
        z += user_intercept[user_id]
        if task == "logistic":
            y = (day_rng.random(n) < expit(z)).astype(np.float64)
        else:
            y = z + noise * day_rng.standard_normal(n)
        n_val = round(n * validation_fraction)
        table = _table(first, user_id, x_global, x_user, y, z)
        for split, part in (("train", table.slice(0, n - n_val)), ("validation", table.slice(n - n_val))):  # fmt: skip
            path = dest / f"day-{d}" / split / "part-00000.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                pq.write_table(part, str(tmp))
        per_day.append({"rows": n, "validation_rows": n_val, "users": int(np.unique(user_id).size)})  # fmt: skip
        first += n
    _metadata(g, e).write(dest / "metadata" / "tensor_metadata.json")
    write_feature_list(dest / "featureList" / "global", [(f"g{j}", "") for j in range(g)])
    write_feature_list(dest / "featureList" / "per_user", [(f"u{j}", "") for j in range(e)])
    with atomic_path(dest / "truth.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, intercept=intercept, beta=beta, user_coef=user_coef,
                 user_intercept=user_intercept)  # fmt: skip
    summary = {"days": per_day, "task": task, "users": users, "new_users": new_users,
               "active_fraction": active_fraction, "global_features": g,
               "entity_features": e, "seed": seed}  # fmt: skip
    write_text(dest / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _metadata(g: int, e: int) -> Metadata:
    return Metadata(
        (
            TensorSpec("uid", "long"),
            TensorSpec("weight", "double"),
            TensorSpec("user_id", "long"),
            TensorSpec("global", "double", (g,), False),
            TensorSpec("per_user", "double", (e,), True),
            TensorSpec("true_logit", "double"),
        ),
        (TensorSpec("response", "double"),),
    )


def _table(first, user_id, x_global, x_user, y, z) -> pa.Table:
    """Rows in raymix's row convention: a dense global bag, a sparse per-user bag."""
    n, g = x_global.shape
    e = x_user.shape[1]
    offsets = pa.array(np.arange(0, (n + 1) * e, e, dtype=np.int32))
    indices = pa.array(np.tile(np.arange(e, dtype=np.int64), n))
    return pa.table({
        "uid": np.arange(first, first + n, dtype=np.int64),
        "response": y,
        "weight": np.ones(n),
        "user_id": user_id,
        "global": pa.FixedSizeListArray.from_arrays(pa.array(x_global.reshape(-1)), g),
        "per_user_indices": pa.ListArray.from_arrays(offsets, indices),
        "per_user_values": pa.ListArray.from_arrays(offsets, pa.array(x_user.reshape(-1))),
        "true_logit": z,
    })  # fmt: skip
