"""Random effects on a pool of Ray actors, each owning the entities of some hash buckets.

Routing is a Ray-core shuffle (:mod:`raymix.engine.routing`): actor *i* receives part *i* of
every input file. The actor groups its rows by entity once and keeps them resident; each
coordinate-descent pass then ships it only the new offsets (one float per row) and takes back
its scores. An actor only holds and moves rows: what it does with them is decided by the pure
functions of :mod:`raymix.coordinates.buckets`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import ray

from raymix.coordinates.bucket_prior import BucketPrior, load_bucket_prior
from raymix.coordinates.buckets import (
    BucketFit,
    BucketRows,
    FitCommand,
    LoadedBucket,
    fit_bucket,
    group_train,
    loaded,
    project_bucket,
    save_bucket_models,
    score_bucket,
    shifted_intercepts,
    warm_start_models,
    with_validation,
    write_bucket_models,
)
from raymix.coordinates.entity_sample import EntitySample, concatenate_samples, sample_entities
from raymix.data.routing import rows_of_parts
from raymix.data.source import Source
from raymix.engine.cluster import spread_actor_options
from raymix.engine.routing import Parts, fetched, route
from raymix.recipe.spec import RandomEffect
from raymix.solvers.entity import EntityModels


class ActorStateLost(RuntimeError):
    """A (restarted) actor was asked about a coordinate it holds no rows of."""


@dataclass
class _CoordinateState:
    """One random-effect coordinate's rows and models inside an actor."""

    spec: RandomEffect
    rows: BucketRows
    models: EntityModels | None = None  # of the entities with has_model, in entity order
    prior: BucketPrior | None = None  # yesterday's models: the priors and the carried ones


class BucketActor:
    """Holds the rows of its buckets, grouped by entity, for every random-effect coordinate;
    fits and scores their models. One pool of actors serves all random effects (as
    :data:`RemoteBucketActor`, its Ray actor class)."""

    def __init__(self, threads: int):
        from raymix.solvers.warmup import warm_up_entity_solver

        self.threads = threads
        self.coordinates: dict[str, _CoordinateState] = {}
        warm_up_entity_solver()  # while the driver routes this actor's rows

    def pid(self) -> int:
        return os.getpid()

    def load(
        self,
        spec: RandomEffect,
        seed: int,
        train_parts: Parts,
        val_parts: Parts,
        train_source: Source,
        val_source: Source | None,
    ) -> LoadedBucket:
        """Group the routed rows (the training rows first, then the validation rows)."""
        self.coordinates.pop(spec.name, None)
        train_rows, train_bucket = rows_of_parts(fetched(train_parts), train_source)
        rows = group_train(spec, seed, train_rows, train_bucket)
        del train_rows, train_bucket
        if val_source is not None:
            rows = with_validation(rows, rows_of_parts(fetched(val_parts), val_source)[0])
        self.coordinates[spec.name] = _CoordinateState(spec, rows)
        return loaded(rows)

    def _state(self, name: str) -> _CoordinateState:
        if name not in self.coordinates:
            raise ActorStateLost(name)
        return self.coordinates[name]

    def fit(self, name: str, offsets: np.ndarray, command: FitCommand) -> BucketFit:
        state = self._state(name)
        fit = fit_bucket(
            state.spec,
            state.rows,
            offsets,
            l2=command.l2,
            moments=command.moments,
            variance_scale=command.variance_scale,
            warm_start=state.models,
            prior=state.prior,
            threads=self.threads,
            l2s=command.l2s,
            coupling=command.coupling,
        )
        state.models = fit.models
        return fit

    def project(
        self,
        name: str,
        labels: np.ndarray,
        offsets: np.ndarray,
        l2: float | None,
        l2s: tuple[float, ...] | None,
    ) -> np.ndarray:
        """Its entities' fits of each column of ``labels`` (models not kept): their scores."""
        state = self._state(name)
        return project_bucket(
            state.spec, state.rows, labels, offsets, l2=l2, l2s=l2s, threads=self.threads
        )

    def score(self, name: str) -> BucketFit:
        state = self._state(name)
        return score_bucket(state.rows, state.models, state.prior)

    def shift_intercepts(self, name: str, by: float) -> BucketFit:
        """Add ``by`` to every model's intercept and score again."""
        state = self._state(name)
        state.models = shifted_intercepts(state.models, by)
        return score_bucket(state.rows, state.models, state.prior)

    def set_models(self, name: str, models: EntityModels | None) -> None:
        """Restore a coordinate's models (after this actor was restarted and reloaded)."""
        self._state(name).models = models

    def write_models(
        self, name: str, directory: str, names: list[tuple[str, str]] | None
    ) -> list[str]:
        state = self._state(name)
        return write_bucket_models(
            state.spec, state.rows, state.models, directory, names, state.prior
        )

    def save_models(self, name: str, directory: str, part: int) -> list[str]:
        state = self._state(name)
        return save_bucket_models(state.rows, state.models, directory, part)

    def load_warm_start(
        self, name: str, path: str, names: list[tuple[str, str]] | None, dim: int
    ) -> int:
        """Models for this actor's entities from a model directory; how many were found."""
        state = self._state(name)
        state.models, found = warm_start_models(state.rows, path, names, dim)
        return found

    def load_prior(
        self,
        name: str,
        names: list[tuple[str, str]] | None,
        dim: int,
        where: tuple[int, int, int],
    ) -> int:
        """The spec's prior for this actor (``where``: its index, the actors, the buckets);
        how many models it carries unchanged."""
        state = self._state(name)
        state.prior = load_bucket_prior(state.spec, state.rows.train, names, dim, *where)
        return state.prior.carried.n

    def reconfigure(self, name: str, spec: RandomEffect) -> None:
        """New hyper-parameters for a loaded coordinate; its models are dropped."""
        state = self._state(name)
        state.spec, state.models = spec, None

    def sample_entities(self, name: str, k: int, seed: int) -> EntitySample:
        """Up to ``k`` of this actor's fitted entities, for the report."""
        state = self._state(name)
        return sample_entities(state.rows.train, state.models, k, seed)

    def drop(self, name: str) -> None:
        self.coordinates.pop(name, None)


#: the Ray actor class of :class:`BucketActor` (Ray names its actors ``BucketActor``)
RemoteBucketActor: Any = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(BucketActor)

#: what the pool asks of one actor: a method call, as a function of the actor's handle
_Call = Callable[[Any], ray.ObjectRef]


def _fit_call(name: str, offsets: object, command: FitCommand) -> _Call:
    return lambda actor: actor.fit.remote(name, offsets, command)


def _save_call(name: str, directory: str, part: int) -> _Call:
    return lambda actor: actor.save_models.remote(name, directory, part)


def _sample_call(name: str, k: int, seed: int) -> _Call:
    return lambda actor: actor.sample_entities.remote(name, k, seed)


def _set_models_call(name: str, models: EntityModels | None) -> _Call:
    return lambda actor: actor.set_models.remote(name, models)


@dataclass(frozen=True)
class _Inputs:
    """What a coordinate's rows are loaded from (again, when an actor is rebuilt)."""

    spec: RandomEffect
    seed: int
    train: Source
    validation: Source | None
    names: list[tuple[str, str]] | None


class BucketPool:
    """The bucket actors shared by every random-effect coordinate of a run (the
    :class:`~raymix.coordinates.random_effect.BucketHolders` of the coordinates).

    An actor that dies (its process killed, its node lost) is restarted by Ray; the pool then
    rebuilds its state: it re-routes that actor's part of every coordinate's files (routing
    is deterministic), reloads them and restores the models it last returned, and re-runs
    the interrupted call. The result is the one an undisturbed run gives.
    """

    def __init__(self, n_actors: int, threads: int, buckets: int):
        self.n_buckets = buckets
        self.actors = [  # on as many nodes as possible (placement never changes the models)
            RemoteBucketActor.options(num_cpus=0, **options).remote(threads)
            for options in spread_actor_options(n_actors, owner=self)
        ]
        self.coordinates: dict[str, _Inputs] = {}
        self.models: dict[str, list] = {}  # name -> per-actor latest models
        self.rebuilds = 0
        self._loading: dict[str, list[ray.ObjectRef]] = {}

    def __len__(self) -> int:
        return len(self.actors)

    def load(
        self,
        spec: RandomEffect,
        seed: int,
        train: Source,
        validation: Source | None,
        names: list[tuple[str, str]] | None,
    ) -> None:
        """Route a coordinate's rows and start loading them into the actors."""
        self.coordinates[spec.name] = _Inputs(spec, seed, train, validation, names)
        self._loading[spec.name] = self._route_and_load(spec.name, range(len(self.actors)))

    def loaded(self, name: str) -> list[LoadedBucket]:
        """Wait for the load started by :meth:`load`; every actor's rows."""
        return ray.get(self._loading.pop(name))

    def warm_start(self, name: str, actors: Sequence[int] | None = None) -> None:
        """Load the coordinate's ``warm_start`` models into (some of) the actors."""
        inputs = self.coordinates[name]
        for a in actors if actors is not None else range(len(self.actors)):
            ray.get(
                self.actors[a].load_warm_start.remote(
                    name, inputs.spec.warm_start, inputs.names, inputs.train.schema.dim
                )
            )

    def prior(self, name: str, actors: Sequence[int] | None = None) -> int:
        """Load the coordinate's prior into (some of) the actors; how many models they carry
        unchanged (entities without rows today)."""
        inputs = self.coordinates[name]
        n, dim = len(self.actors), inputs.train.schema.dim
        chosen = actors if actors is not None else range(n)
        refs = [
            self.actors[a].load_prior.remote(name, inputs.names, dim, (a, n, self.n_buckets))
            for a in chosen
        ]
        return sum(ray.get(refs))

    def share(self, values: list[np.ndarray]) -> list[ray.ObjectRef]:
        """Per-actor values in the object store, read by several calls without a copy."""
        return [ray.put(value) for value in values]

    def fit(self, name: str, offsets: Sequence[object], command: FitCommand) -> list[BucketFit]:
        calls = [_fit_call(name, piece, command) for piece in offsets]
        return self._keep(name, self._on_each(calls))

    def project(
        self,
        name: str,
        labels: Sequence[object],
        offsets: Sequence[object],
        l2: float | None,
        l2s: tuple[float, ...] | None,
    ) -> list[np.ndarray]:
        def call(labels: object, offsets: object) -> _Call:
            return lambda actor: actor.project.remote(name, labels, offsets, l2, l2s)

        return self._on_each([call(y, o) for y, o in zip(labels, offsets, strict=True)])

    def score(self, name: str) -> list[BucketFit]:
        return self._keep(name, self._on_each(self._same(lambda a: a.score.remote(name))))

    def shift_intercepts(self, name: str, by: float) -> list[BucketFit]:
        calls = self._same(lambda a: a.shift_intercepts.remote(name, by))
        return self._keep(name, self._on_each(calls))

    def _keep(self, name: str, fits: list[BucketFit]) -> list[BucketFit]:
        """Note the models of every reply, for a rebuild and a snapshot (on the driver's
        node, backed by its object store: not copied again by a ray.put)."""
        self.models[name] = [fit.models for fit in fits]
        return fits

    def reconfigure(self, spec: RandomEffect) -> None:
        """Swap a loaded coordinate's hyper-parameters in every actor (rows stay grouped)."""
        self.coordinates[spec.name] = replace(self.coordinates[spec.name], spec=spec)
        self.models.pop(spec.name, None)
        self._on_each(self._same(lambda a: a.reconfigure.remote(spec.name, spec)))

    def write_models(
        self, name: str, directory: str, names: list[tuple[str, str]] | None
    ) -> list[str]:
        calls = self._same(lambda a: a.write_models.remote(name, directory, names))
        return [path for paths in self._on_each(calls) for path in paths]

    def save_models(self, name: str, directory: str) -> list[str]:
        calls = [_save_call(name, directory, part) for part in range(len(self.actors))]
        return [path for paths in self._on_each(calls) for path in paths]

    def sample_entities(self, name: str, k: int, seed: int) -> EntitySample:
        """Up to ``k`` fitted entities over the actors (each draws its share)."""
        share = -(-k // len(self.actors))
        calls = [_sample_call(name, share, seed + part) for part in range(len(self.actors))]
        return concatenate_samples(self._on_each(calls))

    def snapshot(self, name: str) -> list:
        return list(self.models.get(name, []))

    def restore(self, name: str, saved: list) -> None:
        self._on_each([_set_models_call(name, models) for models in saved])
        self.models[name] = list(saved)

    def close(self, name: str) -> None:
        self._on_each(self._same(lambda a: a.drop.remote(name)))
        self.coordinates.pop(name, None)
        self.models.pop(name, None)

    def _route_and_load(self, name: str, actors: Sequence[int]) -> list[ray.ObjectRef]:
        """Route every file of the coordinate once and load the parts of ``actors`` into them
        (routing is deterministic: a rebuilt actor gets the very rows it had)."""
        inputs = self.coordinates[name]
        n = len(self.actors)
        train_parts = route(inputs.train, n, self.n_buckets)
        val_parts = None
        if inputs.validation is not None:
            val_parts = route(inputs.validation, n, self.n_buckets)
        return [
            self.actors[a].load.remote(
                inputs.spec,
                inputs.seed,
                train_parts[a],
                val_parts[a] if val_parts else [],
                inputs.train,
                inputs.validation,
            )
            for a in actors
        ]

    def _same(self, call: _Call) -> list[_Call]:
        return [call] * len(self.actors)

    def _on_each(self, calls: list[_Call]) -> list:
        """``calls[a](actor a)`` on every actor, replies in actor order; an actor that died
        is rebuilt and called again."""
        refs = [call(actor) for call, actor in zip(calls, self.actors, strict=True)]
        results = []
        for a, ref in enumerate(refs):
            for attempt in range(3):
                try:
                    results.append(ray.get(ref))
                    break
                except (
                    ray.exceptions.RayActorError,
                    ray.exceptions.ActorUnavailableError,
                    ActorStateLost,
                ):
                    # the actor died (or died and came back empty): rebuild it, call again
                    if attempt == 2:
                        raise
                    self._rebuild(a)
                    ref = calls[a](self.actors[a])
        return results

    def _wait_until_back(self, a: int, timeout: float = 120.0) -> None:
        """Wait for Ray to have restarted actor ``a`` (calls fail while it is restarting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ray.get(self.actors[a].pid.remote(), timeout=10)
                return
            except (
                ray.exceptions.ActorUnavailableError,
                ray.exceptions.GetTimeoutError,
                ray.exceptions.RayActorError,
            ):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _rebuild(self, a: int) -> None:
        self.rebuilds += 1
        self._wait_until_back(a)
        for name, inputs in self.coordinates.items():
            ray.get(self._route_and_load(name, [a]))
            if inputs.spec.prior is not None:
                self.prior(name, [a])
            saved = self.models.get(name, [None] * len(self.actors))[a]
            if saved is not None:
                ray.get(self.actors[a].set_models.remote(name, saved))
            elif inputs.spec.warm_start:
                self.warm_start(name, [a])
