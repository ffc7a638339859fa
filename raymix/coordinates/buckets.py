"""What a bucket actor does with a random effect's rows, as pure functions (no Ray).

A bucket actor (``raymix.engine.random_effect``) holds, for every random-effect coordinate,
the rows of its buckets grouped by entity: a :class:`BucketRows`. Everything it decides about
them is here, so that it only holds rows, moves them and calls these:

* :func:`group_train` and :func:`with_validation` group the routed rows (the spec's
  ``min_samples``, ``max_samples`` and the run's seed) and note each entity's bucket;
  :func:`loaded` is what the actor reports of them (:class:`LoadedBucket`);
* :func:`fit_bucket` maps the spec onto the per-entity solver (the problem of the active
  rows of the entities with a model, ``l2`` given by the driver for ``l2="auto"``, the
  variances and threshold of an EM step) and scores the rows; :func:`score_bucket` only
  scores; both reply with a :class:`BucketFit`;
* :func:`write_bucket_models`, :func:`save_bucket_models` and :func:`warm_start_models` map
  the models onto files: one Avro file per bucket, a checkpoint's Arrow table, a warm start.

The driver's commands are :class:`FitCommand`; the per-row offsets travel beside it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np

from raymix.coordinates.base import HolderRows
from raymix.coordinates.bucket_prior import BucketPrior, scoring_models
from raymix.data.grouping import Grouped, group_rows, lookup_entities
from raymix.data.rows import Rows
from raymix.errors import RecipeError
from raymix.recipe.spec import RandomEffect
from raymix.solvers.entity import EntityModels, EntityProblem, fit_entities, score_entities
from raymix.solvers.feature_variances import FeatureMoments, feature_moments, feature_priors
from raymix.solvers.variance_components import (
    LinearMoments,
    intercept_coupling,
    linear_moments,
    prior_moments,
)


@dataclass(frozen=True)
class BucketRows:
    """One actor's rows of one random-effect coordinate."""

    train: Grouped
    validation: Grouped | None
    val_model_group: np.ndarray  # per validation entity: its index in train.entities, or -1
    bucket_of_entity: np.ndarray  # per training entity: its bucket (its model file)


@dataclass(frozen=True)
class LoadedBucket:
    """An actor's reply to a load: its rows, in its own order, as the descent sees them.
    ``validation.entity_code`` numbers the actor's ``n_val_entities`` validation entities
    from 0; the coordinate shifts them into codes unique over the actors."""

    train: HolderRows
    validation: HolderRows
    n_val_entities: int


@dataclass(frozen=True)
class FitCommand:
    """Refit an actor's entities: ``l2`` overrides the spec's (how the driver passes the
    value of ``l2="auto"``); ``moments`` asks for an EM step's prior moments;
    ``variance_scale`` multiplies the models' variances (a linear task's ``sigma_e^2``);
    ``l2s``: one l2 per coefficient slot (intercept first, then each feature) for
    ``l2_per_feature``, in place of ``l2``; ``coupling``: REML's coupling with the fixed
    intercept in a linear task's moments (:func:`intercept_coupling`)."""

    l2: float | None = None
    moments: bool = False
    variance_scale: float = 1.0
    l2s: tuple[float, ...] | None = None
    coupling: bool = False


@dataclass(frozen=True)
class BucketFit:
    """An actor's reply to a fit or a score: the scores of its training and validation rows
    (its own order, offsets not included) and the models it holds now. After a refit, what
    the solver did; ``prior_moments`` is ``(sum of theta^2 + v, terms)`` of an EM step
    (see :mod:`raymix.solvers.variance_components`), ``(0.0, 0)`` when not asked for."""

    train_scores: np.ndarray
    val_scores: np.ndarray
    models: EntityModels | None
    entities: int = 0
    not_converged: int = 0
    solver_seconds: float = 0.0
    prior_moments: tuple[float, int] = (0.0, 0)
    linear_moments: LinearMoments | None = None
    feature_moments: FeatureMoments | None = None


def group_train(spec: RandomEffect, seed: int, rows: Rows, row_bucket: np.ndarray) -> BucketRows:
    """Group an actor's training rows (reordered in place) by entity; ``row_bucket`` is each
    row's bucket, as routed."""
    train = group_rows(rows, spec.min_samples, spec.max_samples, seed)
    return BucketRows(
        train=train,
        validation=None,
        val_model_group=np.zeros(0, np.int64),
        bucket_of_entity=row_bucket[train.first_row],
    )


def with_validation(bucket: BucketRows, rows: Rows) -> BucketRows:
    """``bucket`` with its validation rows (reordered in place), grouped by entity."""
    validation = group_rows(rows)
    return dataclasses.replace(
        bucket,
        validation=validation,
        val_model_group=lookup_entities(validation.entities, bucket.train.entities),
    )


def loaded(bucket: BucketRows) -> LoadedBucket:
    rows = bucket.train.rows
    train = HolderRows(rows.uid, rows.label, rows.weight, rows.offset)
    val = bucket.validation
    if val is None:
        empty = HolderRows(
            np.zeros(0, np.int64), np.zeros(0), np.ones(0), np.zeros(0), np.zeros(0, np.int64)
        )
        return LoadedBucket(train, empty, 0)
    n = int(val.entities.size)
    codes = np.repeat(np.arange(n), np.diff(val.entity_ptr))
    rows = val.rows
    return LoadedBucket(
        train, HolderRows(rows.uid, rows.label, np.ones(rows.uid.size), rows.offset, codes), n
    )


def entity_problem(
    train: Grouped, offsets: np.ndarray, labels: np.ndarray | None = None
) -> EntityProblem:
    """The solver's problem: the active rows (``max_samples``) of the entities with a model
    (``min_samples``), their fitting weights and these offsets (one per row of ``train``);
    ``labels`` in place of the rows' own."""
    rows, active = train.rows, train.active
    codes = np.repeat(np.arange(train.entities.size), np.diff(train.entity_ptr))[active]
    counts = np.bincount(codes, minlength=train.entities.size)[train.has_model]
    ptr = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    arrays = (rows.X, rows.label if labels is None else labels, train.fit_weight, offsets)
    if not active.all():  # rows left out (max_samples): copies without them
        arrays = tuple(a[active] for a in arrays)
    return EntityProblem(ptr, *arrays)


def fit_bucket(
    spec: RandomEffect,
    bucket: BucketRows,
    offsets: np.ndarray,
    *,
    l2: float | None = None,
    moments: bool = False,
    variance_scale: float = 1.0,
    warm_start: EntityModels | None = None,
    prior: BucketPrior | None = None,
    threads: int = 1,
    l2s: tuple[float, ...] | None = None,
    coupling: bool = False,
) -> BucketFit:
    """Fit the models of ``bucket``'s entities with these offsets and score its rows.

    ``l2`` overrides ``spec.l2`` (required when that is ``"auto"``). With ``moments`` (an EM
    step of ``l2="auto"``) the fit keeps every coefficient and its full variance, and the
    reply carries the prior moments (and a linear task's :class:`LinearMoments`, residuals
    over every training row of the bucket); ``variance_scale`` multiplies the variances
    the models keep (``sigma_e^2`` of a linear task). The spec's ``variance`` and ``sparsity_threshold`` are
    for the models the run keeps. ``warm_start`` are the models of the same entities, as a
    previous fit returned them. With a ``prior`` (:mod:`raymix.coordinates.bucket_prior`)
    each entity's ridge is its prior where it has one, and the carried models score their
    entities' rows. ``l2s`` (``l2_per_feature``) is one ridge per coefficient slot, and
    its EM step's reply carries :class:`FeatureMoments`. ``coupling`` adds REML's coupling
    with the fixed intercept to a linear EM step's moments (:func:`_with_coupling`).
    """
    penalty = _penalty(spec, l2, l2s)
    problem = entity_problem(bucket.train, offsets)
    entity_prior = None if prior is None else prior.priors
    if l2s is not None:
        entity_prior = _ridge_prior(problem, l2s, spec)
    started = time.perf_counter()
    models = fit_entities(
        problem,
        task=spec.task,
        l2=penalty,
        **_solver_settings(spec),
        warm_start=warm_start,
        variance="full" if moments or spec.variance == "covariance" else spec.variance,
        covariance=spec.variance == "covariance" and not moments,
        prior=entity_prior,
        threshold=0.0 if moments else spec.sparsity_threshold,
        n_threads=threads,
    )
    seconds = time.perf_counter() - started
    em = prior_moments(models, spec.regularize_intercept) if moments else (0.0, 0)
    scored = score_bucket(bucket, models, prior)
    linear = per_feature = None
    if moments and spec.task == "linear":
        rows = bucket.train.rows
        residuals = rows.label - offsets - scored.train_scores
        linear = linear_moments(models, spec.regularize_intercept, residuals, rows.weight)
        if coupling:
            linear = _with_coupling(linear, spec, bucket, penalty, threads)
        if l2s is not None:
            dim = rows.X.shape[1]
            per_feature = feature_moments(models, dim, spec.regularize_intercept, residuals, rows.weight)  # fmt: skip
    if variance_scale != 1.0:
        models = _scaled_variances(models, variance_scale)
        scored = dataclasses.replace(scored, models=models)
    return dataclasses.replace(
        scored,
        entities=int(models.n_entities),
        not_converged=int(models.n_not_converged),
        solver_seconds=seconds,
        prior_moments=em,
        linear_moments=linear,
        feature_moments=per_feature,
    )


def _penalty(spec: RandomEffect, l2: float | None, l2s: tuple[float, ...] | None) -> float:
    """The entities' ridge: ``l2`` in place of the spec's (which must then be resolved);
    unused (1.0) with ``l2s``, where every coefficient has its slot's ridge (a prior of
    mean 0)."""
    if l2s is not None:
        return 1.0
    penalty = spec.l2 if l2 is None else l2
    if isinstance(penalty, str):
        raise RecipeError(
            "is 'auto': the coordinate resolves it", field=f"coordinates.{spec.name}.l2"
        )
    return float(penalty)


def _solver_settings(spec: RandomEffect) -> dict:
    """The per-entity solver's settings a random effect's spec gives (its penalty aside)."""
    return {
        "l1": spec.l1,
        "fit_intercept": spec.fit_intercept,
        "regularize_intercept": spec.regularize_intercept,
        "max_iter": spec.solver.max_iter,
        "tol": spec.solver.tolerance,
    }


def _ridge_prior(problem: EntityProblem, l2s: tuple[float, ...], spec: RandomEffect):
    """``l2_per_feature``'s ridges as a prior of mean 0; a free intercept has none."""
    slots = np.array(l2s, np.float64)
    if not spec.regularize_intercept:
        slots[0] = 0.0
    return feature_priors(problem, slots)


def _with_coupling(
    moments: LinearMoments, spec: RandomEffect, bucket: BucketRows, l2: float, threads: int
) -> LinearMoments:
    """``moments`` with REML's coupling of the bucket's entities with the fixed intercept:
    each entity's penalized least-squares fit of the constant label 1 (offsets 0) at this
    ``l2`` and its scores on every training row (:func:`intercept_coupling`)."""
    rows = bucket.train.rows
    n = rows.label.size
    problem = entity_problem(bucket.train, np.zeros(n), labels=np.ones(n))
    ones = fit_entities(problem, task="linear", l2=l2, **_solver_settings(spec), n_threads=threads)
    scores = score_bucket(bucket, ones, None).train_scores
    squares, absorbed = intercept_coupling(ones, spec.regularize_intercept, scores, rows.weight)
    return dataclasses.replace(moments, coupling=squares, absorbed=absorbed)


def project_bucket(
    spec: RandomEffect,
    bucket: BucketRows,
    labels: np.ndarray,
    offsets: np.ndarray,
    *,
    l2: float | None = None,
    l2s: tuple[float, ...] | None = None,
    threads: int = 1,
) -> np.ndarray:
    """The training-row scores of the entities' penalized least-squares fits of each column
    of ``labels`` with that column of ``offsets`` (both ``(rows, k)``, the bucket's order),
    at the penalty the run fitted with (``l2``, or ``l2s`` per slot); the models are not
    kept. A linear model's marginal fixed-effect variances project the fixed effect's design
    columns so (:mod:`raymix.coordinates.marginal_variance`)."""
    penalty = _penalty(spec, l2, l2s)
    scores = np.zeros(labels.shape)
    for j in range(labels.shape[1]):
        problem = entity_problem(bucket.train, offsets[:, j], labels=labels[:, j])
        prior = None if l2s is None else _ridge_prior(problem, l2s, spec)
        fitted = fit_entities(problem, task="linear", l2=penalty, **_solver_settings(spec), prior=prior, n_threads=threads)  # fmt: skip
        scores[:, j] = score_bucket(bucket, fitted, None).train_scores
    return scores


def shifted_intercepts(models: EntityModels | None, by: float) -> EntityModels | None:
    """``models`` with ``by`` added to every entity's intercept (:func:`raymix.descent.recenter`)."""
    if models is None:
        return None
    return dataclasses.replace(models, intercepts=models.intercepts + by)


def _scaled_variances(models: EntityModels, scale: float) -> EntityModels:
    variances, covariances = models.variances, models.covariances
    return dataclasses.replace(
        models,
        variances=None if variances is None else variances * scale,
        covariances=None if covariances is None else covariances * scale,
    )


def score_bucket(
    bucket: BucketRows, models: EntityModels | None, prior: BucketPrior | None = None
) -> BucketFit:
    """The rows' scores by ``models`` (one per entity with ``has_model``, in entity order)
    and, with a prior, by the models it carries for entities without one; 0 for the rows of
    an entity without a model, and for every row without models. The reply's ``models`` are
    today's fits only."""
    train = bucket.train
    train_scores = np.zeros(len(train.rows))
    val = bucket.validation
    val_scores = np.zeros(0 if val is None else len(val.rows))
    if prior is None and models is None:
        return BucketFit(train_scores, val_scores, None)
    if prior is None and models is not None:  # as it always was (no prior: bit for bit)
        model_of_entity = np.where(train.has_model, np.cumsum(train.has_model) - 1, -1)
        train_scores = score_entities(
            models, train.rows.X, train.entity_ptr, model_index=model_of_entity
        )
        if val is not None:
            # a validation entity unseen in training (-1) picks the appended -1: no model
            group_model = np.append(model_of_entity, -1)[bucket.val_model_group]
            val_scores = score_entities(models, val.rows.X, val.entity_ptr, model_index=group_model)  # fmt: skip
        return BucketFit(train_scores, val_scores, models)
    use = scoring_models(
        train, None if val is None else val.entities, bucket.val_model_group, models, prior
    )
    if use.models is not None:
        train_scores = score_entities(
            use.models, train.rows.X, train.entity_ptr, model_index=use.train_model
        )
        if val is not None:
            val_scores = score_entities(
                use.models, val.rows.X, val.entity_ptr, model_index=use.val_model
            )
    return BucketFit(train_scores, val_scores, models)


def bucket_members(buckets: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(bucket, positions)`` per bucket present in ``buckets`` (one per model), buckets
    ascending, each bucket's positions ascending (the models' entity order)."""
    order = np.argsort(buckets, kind="stable")
    bounds = np.flatnonzero(np.diff(buckets[order])) + 1
    members = np.split(order, bounds) if order.size else []
    return [(int(buckets[m[0]]), m) for m in members]


def write_bucket_models(
    spec: RandomEffect,
    bucket: BucketRows,
    models: EntityModels | None,
    directory: str,
    names: list[tuple[str, str]] | None,
    prior: BucketPrior | None = None,
) -> list[str]:
    """One Avro file per bucket: ``part-<bucket:05d>.avro``; entities in id order. With a
    prior, the models it carries are written beside today's, unchanged; with
    ``variance="covariance"`` each file's covariance matrices beside it."""
    from raymix.data.avro.model_writer import ModelEncoder
    from raymix.data.avro.models import MODEL_CLASS
    from raymix.data.avro.priors import COVARIANCE_SUFFIX, write_covariances

    modelled = np.flatnonzero(bucket.train.has_model)
    ids, buckets = bucket.train.entities[modelled], bucket.bucket_of_entity[modelled]
    if prior is not None and prior.carried.n:
        carried = prior.carried
        models = carried.models if models is None else EntityModels.concatenate([models, carried.models])  # fmt: skip
        ids = np.concatenate([ids, carried.ids.astype(ids.dtype)])
        buckets = np.concatenate([buckets, carried.bucket])
    if models is None:
        return []
    encoder = ModelEncoder(  # ids and feature names encoded once for every bucket
        ids,
        intercepts=models.intercepts if spec.fit_intercept else None,
        coef_ptr=models.coef_ptr,
        coef_index=models.coef_index,
        coef_value=models.coef_value,
        names=names,
        model_class=MODEL_CLASS[spec.task],
        variances=models.variances,
    )
    with_covariances = spec.variance == "covariance" and models.covariances is not None
    written = []
    for number, members in bucket_members(buckets):
        if prior is not None:
            members = members[np.argsort(ids[members], kind="stable")]
        path = os.path.join(directory, f"part-{number:05d}.avro")
        written.append(str(encoder.write(path, members)))
        if with_covariances:
            beside = path.removesuffix(".avro") + COVARIANCE_SUFFIX
            written.append(str(write_covariances(beside, ids, models, members)))
    return written


def save_bucket_models(
    bucket: BucketRows, models: EntityModels | None, directory: str, part: int
) -> list[str]:
    """The models as one Arrow table ``part-<part:05d>`` (a checkpoint's format: see
    :mod:`raymix.data.model_table`)."""
    from raymix.data.model_table import SUFFIX, write_model_table

    if models is None:
        return []
    modelled = np.flatnonzero(bucket.train.has_model)
    path = os.path.join(directory, f"part-{part:05d}{SUFFIX}")
    return [str(write_model_table(path, bucket.train.entities[modelled], models))]


def warm_start_models(
    bucket: BucketRows, path: str, names: list[tuple[str, str]] | None, dim: int
) -> tuple[EntityModels, int]:
    """Models for ``bucket``'s entities with a model, from a model directory (the others
    are ignored): Avro models, or the Arrow tables of a checkpoint; and how many were found."""
    from raymix.data.avro.model_reader import read_avro_model_table
    from raymix.data.model_table import has_model_tables, read_model_tables, select_models

    if has_model_tables(path):
        table = read_model_tables(path)
    else:
        table = read_avro_model_table(path, names)
    modelled = bucket.train.entities[bucket.train.has_model]
    return select_models(table, modelled, dim)
