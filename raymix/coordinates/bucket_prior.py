"""A random effect's prior inside a bucket actor, as pure functions (no Ray).

With a ``prior`` (yesterday's models), a bucket actor holds for each of its random effects:

* the Gaussian prior of every entity it fits today (:class:`~raymix.solvers.prior.EntityPriors`
  aligned to its entities with a model): yesterday's mean and precision where the entity had
  a model, the coordinate's ridge elsewhere;
* the **carried** models: yesterday's models of the entities of its buckets that have no
  model today (no new rows). They are not refit: they score their entities' rows (a
  validation row of an entity absent from today's training data) and are written to the
  new output unchanged, so that an update costs in proportion to the new data and tomorrow
  still knows every entity.

The routing of rows (``stable_bucket(entity) % n_actors``) decides which actor carries a
model: the one that would hold that entity's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raymix.data.avro.priors import PriorModels, prior_models_dir, read_prior_models
from raymix.data.grouping import Grouped, lookup_entities, stable_bucket
from raymix.errors import DataError
from raymix.recipe.spec import RandomEffect
from raymix.solvers.entity import EntityModels
from raymix.solvers.prior import EntityPriors, covariance_ptr


@dataclass(frozen=True)
class Carried:
    """Yesterday's models kept as they are: ``ids`` (sorted) with ``models`` and ``bucket``."""

    ids: np.ndarray
    models: EntityModels
    bucket: np.ndarray

    @property
    def n(self) -> int:
        return int(self.ids.size)


@dataclass(frozen=True)
class BucketPrior:
    """An actor's prior of one random effect: ``priors`` of its entities with a model (in
    entity order), and the ``carried`` models of the others."""

    priors: EntityPriors
    carried: Carried


def typed_ids(ids: np.ndarray, like: np.ndarray, path: str = "") -> np.ndarray:
    """Model ids (strings) as the data's entity ids are: int64 when those are integers."""
    if like.dtype.kind not in "iu":
        return np.asarray(ids).astype(str).astype(object)
    try:
        return np.array([int(i) for i in ids], dtype=np.int64)
    except ValueError:
        bad = next(i for i in ids if not str(i).lstrip("-").isdigit())
        raise DataError(
            f"model id '{bad}' is not an integer, as the entity ids of the data are", path=path
        ) from None


def take_models(models: EntityModels, rows: np.ndarray) -> EntityModels:
    """The models ``rows`` of ``models`` (every row found), in that order."""
    rows = np.asarray(rows, np.int64)
    counts = np.diff(models.coef_ptr)[rows]
    ptr = np.zeros(rows.size + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])

    def gather(values, starts, sizes):
        out_ptr = np.zeros(sizes.size + 1, np.int64)
        np.cumsum(sizes, out=out_ptr[1:])
        source = np.repeat(starts - out_ptr[:-1], sizes) + np.arange(out_ptr[-1])
        return np.asarray(values)[source]

    cs = models.coef_ptr[rows]
    variances = covariances = None
    if models.variances is not None:
        variances = gather(models.variances, models.variance_ptr[rows], counts + 1)
    if models.covariances is not None:
        covariances = gather(models.covariances, covariance_ptr(models.coef_ptr)[rows], (counts + 1) ** 2)  # fmt: skip
    return EntityModels(
        np.asarray(models.intercepts)[rows],
        ptr,
        gather(models.coef_index, cs, counts),
        gather(models.coef_value, cs, counts),
        np.asarray(models.converged)[rows],
        np.asarray(models.n_iter)[rows],
        variances,
        covariances,
    )


def bucket_prior(
    spec: RandomEffect,
    train: Grouped,
    models: PriorModels,
    actor: int,
    n_actors: int,
    n_buckets: int,
    path: str = "",
) -> BucketPrior:
    """The prior of an actor's entities with a model, and the models it carries: those of
    the entities its buckets hold (routing's ``stable_bucket % n_actors``) that have none
    today."""
    prior = spec.prior
    assert prior is not None  # noqa: S101 - callers pass a spec with a prior
    ids = typed_ids(models.ids, train.entities, path)
    modelled = train.entities[train.has_model]
    order = np.argsort(ids, kind="stable")
    at = lookup_entities(modelled, ids[order]) if ids.size else np.full(modelled.size, -1)
    rows = np.where(at >= 0, order[np.maximum(at, 0)], -1)
    priors = models.priors(prior.weight, prior.forgetting).take(rows)
    bucket = stable_bucket(ids, n_buckets) if ids.size else np.zeros(0, np.int64)
    mine = (bucket % n_actors == actor) & (lookup_entities(ids, modelled) < 0)
    keep = np.flatnonzero(mine)
    keep = keep[np.argsort(ids[keep], kind="stable")]
    carried = Carried(ids[keep], take_models(models.models, keep), bucket[keep])
    return BucketPrior(priors, carried)


def load_bucket_prior(
    spec: RandomEffect,
    train: Grouped,
    names: list[tuple[str, str]] | None,
    dim: int,
    actor: int,
    n_actors: int,
    n_buckets: int,
) -> BucketPrior:
    """:func:`bucket_prior` of the spec's prior, read from its files."""
    assert spec.prior is not None  # noqa: S101 - callers pass a spec with a prior
    where = prior_models_dir(spec.prior.models, spec.name, "random_effect")
    models = read_prior_models(where, names, spec.task, dim)
    return bucket_prior(spec, train, models, actor, n_actors, n_buckets, str(where))


@dataclass(frozen=True)
class Scoring:
    """The models that score an actor's rows: today's fits followed by the carried ones, and
    per training / validation entity the index of its model (-1: none)."""

    models: EntityModels | None
    train_model: np.ndarray
    val_model: np.ndarray


def scoring_models(
    train: Grouped,
    val_entities: np.ndarray | None,
    val_model_group: np.ndarray,
    fitted: EntityModels | None,
    prior: BucketPrior | None,
) -> Scoring:
    """Which model scores each entity's rows: its fit of today, else (with a prior) the
    model carried from yesterday, else none."""
    n_fitted = int(np.count_nonzero(train.has_model))
    train_model = np.where(train.has_model, np.cumsum(train.has_model) - 1, -1)
    if fitted is None:
        train_model = np.full(train.entities.size, -1, np.int64)
        n_fitted = 0
    val_model = np.zeros(0, np.int64)
    if val_entities is not None:
        val_model = np.append(train_model, -1)[val_model_group]
    if prior is None or prior.carried.n == 0:
        return Scoring(fitted, train_model, val_model)
    # only the carried models that score a row join today's (most carried entities have no
    # row at all: concatenating and sorting them at every step would cost per entity kept)
    carried = prior.carried
    train_at = np.where(train_model < 0, lookup_entities(train.entities, carried.ids), -1)
    val_at = np.zeros(0, np.int64)
    if val_entities is not None:
        val_at = np.where(val_model < 0, lookup_entities(val_entities, carried.ids), -1)
    used = np.unique(np.concatenate([train_at[train_at >= 0], val_at[val_at >= 0]]))
    if used.size == 0:
        return Scoring(fitted, train_model, val_model)
    kept = take_models(carried.models, used)
    models = kept if fitted is None else EntityModels.concatenate([fitted, kept])

    def joined(model: np.ndarray, at: np.ndarray) -> np.ndarray:
        return np.where(at >= 0, n_fitted + np.searchsorted(used, at), model)

    return Scoring(models, joined(train_model, train_at), joined(val_model, val_at))
