"""A random effect's entities as the report draws them: a seeded sample, pure (no Ray).

The report shows the distribution of a random effect's coefficients and their shrinkage
(how far an entity's model is pulled towards zero — the fixed effect's prediction — when it
has few rows: small entities near 0, large ones spread out). Both need, per entity, its
number of training rows and its model; a bucket actor knows both for its entities, so each
draws a sample of its own (:func:`sample_entities`) and the driver only concatenates them
(:func:`concatenate_samples`): a report of 100M entities moves a few thousand numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raymix.coordinates.bucket_prior import take_models
from raymix.data.grouping import Grouped
from raymix.solvers.entity import EntityModels


@dataclass(frozen=True)
class EntitySample:
    """Per sampled entity: ``rows`` (its training rows), ``intercept`` and ``slope_norm``
    (the Euclidean norm of its other coefficients); ``slopes`` every coefficient but the
    intercepts of the sampled entities; ``entities`` how many had a model (the population
    sampled)."""

    rows: np.ndarray
    intercept: np.ndarray
    slope_norm: np.ndarray
    slopes: np.ndarray
    entities: int

    @property
    def n(self) -> int:
        return int(self.rows.size)


def sample_entities(train: Grouped, models: EntityModels | None, k: int, seed: int) -> EntitySample:
    """Up to ``k`` of the entities fitted today (those with ``has_model``, in the order
    ``models`` holds them), drawn without replacement with ``seed``."""
    fitted = np.flatnonzero(train.has_model)
    if models is None or fitted.size == 0:
        return _empty()
    rows = np.diff(train.entity_ptr)[fitted]
    chosen = np.arange(fitted.size)
    if fitted.size > k:
        chosen = np.sort(np.random.default_rng(seed).choice(fitted.size, k, replace=False))
    picked = take_models(models, chosen)
    slopes = np.asarray(picked.coef_value, np.float64)
    owner = np.repeat(np.arange(chosen.size), np.diff(picked.coef_ptr))
    norm = np.sqrt(np.bincount(owner, weights=slopes**2, minlength=chosen.size))
    return EntitySample(
        rows=rows[chosen].astype(np.int64),
        intercept=np.asarray(picked.intercepts, np.float64),
        slope_norm=norm,
        slopes=slopes,
        entities=int(fitted.size),
    )


def concatenate_samples(parts: list[EntitySample]) -> EntitySample:
    """The holders' samples as one."""
    if not parts:
        return _empty()
    return EntitySample(
        rows=np.concatenate([p.rows for p in parts]),
        intercept=np.concatenate([p.intercept for p in parts]),
        slope_norm=np.concatenate([p.slope_norm for p in parts]),
        slopes=np.concatenate([p.slopes for p in parts]),
        entities=sum(p.entities for p in parts),
    )


def _empty() -> EntitySample:
    none = np.zeros(0)
    return EntitySample(np.zeros(0, np.int64), none, none, none, 0)
