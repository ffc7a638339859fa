"""Random effects on a pool of Ray actors, each owning the entities of some hash buckets.

Routing is a Ray-core shuffle: one task per input file reads it and splits its rows by
``stable_bucket(entity) % n_actors``; actor *i* receives part *i* of every file. The actor
groups its rows by entity once and keeps them resident; each coordinate-descent pass then
ships it only the new offsets (one float per row) and takes back its scores.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import scipy.sparse as sp

from raymix.data.grouping import Grouped, group_rows, lookup_entities, stable_bucket
from raymix.data.rows import Rows, concat_rows, rows_from_table
from raymix.data.source import Source, read_table
from raymix.engine.cluster import spread_actor_options
from raymix.engine.reading import READ_TASK_CPUS
from raymix.errors import DataError
from raymix.recipe.spec import RandomEffect


def route_file(source: Source, path: str, n_actors: int, n_buckets: int) -> list[pa.Table]:
    """Read one file and split its rows into one table per actor (by entity bucket)."""
    table = _narrow_indices(read_table(source, path), source)
    n = table.num_rows
    table = table.append_column("__raymix_row", pa.array(np.arange(n, dtype=np.int64)))
    entity = source.schema.entity
    column = table.column(entity)
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("missing entity id", path=path, row=row, column=entity)
    values = column.to_numpy(zero_copy_only=False)
    buckets = stable_bucket(values, n_buckets)
    table = table.append_column("__raymix_bucket", pa.array(buckets))
    if n_actors == 1:  # every row is the one actor's: no copy
        return [table]
    owner = buckets % n_actors
    return [table.take(pa.array(np.flatnonzero(owner == a))) for a in range(n_actors)]


def _narrow_indices(table: pa.Table, source: Source) -> pa.Table:
    """The bag's indices as int32 when every index fits (a bag's dimension below 2^31): half
    the bytes of the routed parts in the object store and in the actors that read them.
    An index outside ``[0, dim)`` is left as it is, for the actor's check to name its row."""
    schema = source.schema
    name = f"{schema.bag}_indices"
    if not schema.bag or schema.dense_bag or schema.dim >= np.iinfo(np.int32).max:
        return table
    column = table.column(name)
    if column.type.value_type == pa.int32():
        return table
    flat = pc.list_flatten(column)
    if len(flat) and (pc.min(flat).as_py() < 0 or pc.max(flat).as_py() >= schema.dim):
        return table
    narrow = column.cast(pa.list_(pa.int32()))
    return table.set_column(table.schema.get_field_index(name), name, narrow)


@ray.remote
def _route_task(source: Source, path: str, n_actors: int, n_buckets: int):
    parts = route_file(source, path, n_actors, n_buckets)
    return parts[0] if n_actors == 1 else tuple(parts)


def route(source: Source, n_actors: int, n_buckets: int) -> list[list[tuple[str, ray.ObjectRef]]]:
    """Start the shuffle; return, per actor, (file, part ref) of every file."""
    per_actor: list[list] = [[] for _ in range(n_actors)]
    for path in source.files:
        # an explicit strategy: never captured by an enclosing placement group (a Tune trial's)
        refs = _route_task.options(
            num_returns=n_actors, num_cpus=READ_TASK_CPUS, scheduling_strategy="DEFAULT"
        ).remote(source, path, n_actors, n_buckets)
        refs = [refs] if n_actors == 1 else list(refs)
        for actor, ref in enumerate(refs):
            per_actor[actor].append((path, ref))
    return per_actor


def _rows_of_parts(
    parts: list[tuple[str, ray.ObjectRef]], source: Source
) -> tuple[Rows, np.ndarray]:
    """This actor's routed rows as one :class:`Rows` and their buckets. The parts are fetched
    one at a time and ``parts`` is emptied as they are converted, so each routed table leaves
    the object store as soon as its rows are numpy arrays."""
    rows, buckets = [], []
    kinds = set()
    parts.reverse()
    while parts:
        path, ref = parts.pop()
        table = ray.get(ref)
        del ref
        try:
            part = rows_from_table(table, source.schema, source=path)
        except DataError as exc:
            row = None if exc.row is None else int(table.column("__raymix_row")[exc.row].as_py())
            raise DataError(exc.reason, path=path, row=row, column=exc.column) from None
        if len(part):
            kinds.add(part.entity.dtype.kind)
            if len(kinds) > 1:
                raise DataError(
                    "entity ids of mixed types across files (integers and strings)",
                    path=path,
                    column=source.schema.entity,
                )
        rows.append(part)
        buckets.append(table.column("__raymix_bucket").to_numpy())
    merged = concat_rows(rows, source.schema.dim)
    if not sp.issparse(merged.X):  # a dense bag: the per-entity solver reads CSR
        merged.X = sp.csr_matrix(merged.X)
    if merged.entity is None:
        merged.entity = np.zeros(0, np.int64)
    bucket = np.concatenate(buckets) if buckets else np.zeros(0, np.int64)
    return merged, bucket


class ActorStateLost(RuntimeError):
    """A (restarted) actor was asked about a coordinate it holds no rows of."""


class _CoordinateState:
    """One random-effect coordinate's rows and models inside an actor."""

    def __init__(self, spec: RandomEffect, seed: int):
        self.spec, self.seed = spec, seed
        self.train: Grouped | None = None
        self.val: Grouped | None = None
        self.val_model_group = np.zeros(0, np.int64)
        self.models = None  # EntityModels of the entities with has_model, in entity order
        self.bucket_of_entity = np.zeros(0, np.int64)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)
class BucketActor:
    """Holds the rows of its buckets, grouped by entity, for every random-effect coordinate;
    fits and scores their models. One pool of actors serves all random effects."""

    def __init__(self, threads: int):
        from raymix.solvers.warmup import warm_up_entity_solver

        self.threads = threads
        self.coordinates: dict[str, _CoordinateState] = {}
        warm_up_entity_solver()  # while the driver routes this actor's rows

    def pid(self) -> int:
        return os.getpid()

    def load(self, spec: RandomEffect, seed: int, train_parts, val_parts, train_source, val_source):
        """Group the routed rows; return (train uid/label/weight/offset, val uid/label/offset/codes)."""
        state = self.coordinates[spec.name] = _CoordinateState(spec, seed)
        train_rows, train_bucket = _rows_of_parts(train_parts, train_source)
        _, first = np.unique(train_rows.entity, return_index=True)  # the grouped entity order
        state.bucket_of_entity = train_bucket[first]
        del train_bucket
        state.train = group_rows(train_rows, spec.min_samples, spec.max_samples, seed)
        val_out = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
        n_val_entities = 0
        if val_source is not None:
            val_rows, _ = _rows_of_parts(val_parts, val_source)
            state.val = group_rows(val_rows)
            state.val_model_group = lookup_entities(state.val.entities, state.train.entities)
            n_val_entities = int(state.val.entities.size)
            codes = np.repeat(np.arange(n_val_entities), np.diff(state.val.entity_ptr))
            val_out = (state.val.rows.uid, state.val.rows.label, state.val.rows.offset, codes)
        rows = state.train.rows
        return (rows.uid, rows.label, rows.weight, rows.offset), val_out, n_val_entities

    def _state(self, name: str) -> _CoordinateState:
        if name not in self.coordinates:
            raise ActorStateLost(name)
        return self.coordinates[name]

    def fit(self, name: str, train_offsets, refit: bool, l2=None, moments: bool = False):
        """Fit (if ``refit``) and score; ``l2`` overrides the spec's (``"auto"`` resolved by
        the driver); ``moments`` also returns the prior moments of ``l2="auto"``'s EM."""
        from raymix.solvers.entity import EntityProblem, fit_entities, score_entities

        state = self._state(name)
        grouped, spec = state.train, state.spec
        rows = grouped.rows
        info = {}
        model_of_entity = np.where(grouped.has_model, np.cumsum(grouped.has_model) - 1, -1)
        if refit:
            active = grouped.active
            codes = np.repeat(np.arange(grouped.entities.size), np.diff(grouped.entity_ptr))[active]
            counts = np.bincount(codes, minlength=grouped.entities.size)[grouped.has_model]
            ptr = np.zeros(counts.size + 1, np.int64)
            np.cumsum(counts, out=ptr[1:])
            arrays = (rows.X, rows.label, grouped.fit_weight, train_offsets)
            if not active.all():  # rows left out (max_samples): copies without them
                arrays = tuple(a[active] for a in arrays)
            problem = EntityProblem(ptr, *arrays)
            started = time.perf_counter()
            state.models = fit_entities(
                problem,
                task=spec.task,
                l2=spec.l2 if l2 is None else l2,
                l1=spec.l1,
                fit_intercept=spec.fit_intercept,
                regularize_intercept=spec.regularize_intercept,
                max_iter=spec.solver.max_iter,
                tol=spec.solver.tolerance,
                warm_start=state.models,
                variance="full" if moments else spec.variance,
                threshold=0.0 if moments else spec.sparsity_threshold,
                n_threads=self.threads,
            )
            info = {
                "entities": int(state.models.n_entities),
                "not_converged": int(state.models.n_not_converged),
                "solver_seconds": time.perf_counter() - started,
            }
            if moments:
                from raymix.solvers.variance_components import prior_moments

                info["prior_moments"] = prior_moments(state.models, spec.regularize_intercept)
        train_scores = np.zeros(len(rows))
        if state.models is not None:
            train_scores = score_entities(
                state.models, rows.X, grouped.entity_ptr, model_index=model_of_entity
            )
        val_scores = np.zeros(0 if state.val is None else len(state.val.rows))
        if state.val is not None and state.models is not None:
            known = state.val_model_group
            group_model = np.where(known >= 0, model_of_entity[np.maximum(known, 0)], -1)
            val_scores = score_entities(
                state.models, state.val.rows.X, state.val.entity_ptr, model_index=group_model
            )
        return (train_scores, val_scores, info), state.models

    def set_models(self, name: str, models) -> None:
        """Restore a coordinate's models (after this actor was restarted and reloaded)."""
        self._state(name).models = models

    def write_models(self, name: str, directory: str, names) -> list[str]:
        """One Avro file per bucket: ``part-<bucket:05d>.avro``; entities in id order."""
        from raymix.data.avro.model_writer import ModelEncoder
        from raymix.data.avro.models import MODEL_CLASS

        state = self._state(name)
        if state.models is None:
            return []
        spec, models = state.spec, state.models
        modelled = np.flatnonzero(state.train.has_model)
        encoder = ModelEncoder(  # ids and feature names encoded once for every bucket
            state.train.entities[modelled],
            intercepts=models.intercepts if spec.fit_intercept else None,
            coef_ptr=models.coef_ptr,
            coef_index=models.coef_index,
            coef_value=models.coef_value,
            names=names,
            model_class=MODEL_CLASS[spec.task],
            variances=models.variances,
        )
        buckets = state.bucket_of_entity[modelled]
        order = np.argsort(buckets, kind="stable")
        bounds = np.flatnonzero(np.diff(buckets[order])) + 1
        written = []
        for members in np.split(order, bounds) if order.size else []:
            path = os.path.join(directory, f"part-{int(buckets[members[0]]):05d}.avro")
            written.append(str(encoder.write(path, members)))
        return written

    def save_models(self, name: str, directory: str, part: int) -> list[str]:
        """This actor's models as one Arrow table (a checkpoint's format: see model_table)."""
        from raymix.data.model_table import SUFFIX, write_model_table

        state = self._state(name)
        if state.models is None:
            return []
        modelled = np.flatnonzero(state.train.has_model)
        path = os.path.join(directory, f"part-{part:05d}{SUFFIX}")
        return [str(write_model_table(path, state.train.entities[modelled], state.models))]

    def load_warm_start(self, name: str, path: str, names, dim: int) -> int:
        """Models for this actor's entities from a model directory (others ignored): Avro
        models, or the Arrow tables of a checkpoint. Returns how many were found."""
        from raymix.data.avro.model_reader import read_avro_model_table
        from raymix.data.model_table import has_model_tables, read_model_tables, select_models

        state = self._state(name)
        if has_model_tables(path):
            table = read_model_tables(path)
        else:
            table = read_avro_model_table(path, names)
        modelled = state.train.entities[state.train.has_model]
        state.models, found = select_models(table, modelled, dim)
        return found

    def reconfigure(self, name: str, spec: RandomEffect) -> None:
        """New hyper-parameters for a loaded coordinate; its models are dropped."""
        state = self._state(name)
        state.spec, state.models = spec, None

    def drop(self, name: str) -> None:
        self.coordinates.pop(name, None)


class BucketPool:
    """The bucket actors shared by every random-effect coordinate of a run.

    An actor that dies (its process killed, its node lost) is restarted by Ray; the pool then
    rebuilds its state: it re-routes that actor's part of every coordinate's files (routing
    is deterministic), reloads them and restores the models it last returned, and re-runs
    the interrupted call. The result is the one an undisturbed run gives.
    """

    def __init__(self, n_actors: int, threads: int, buckets: int):
        self.n_buckets = buckets
        self.actors = [  # on as many nodes as possible (placement never changes the models)
            BucketActor.options(num_cpus=0, **options).remote(threads)
            for options in spread_actor_options(n_actors, owner=self)
        ]
        self.coordinates: dict[str, tuple] = {}  # name -> (spec, seed, train source, val source)
        self.models: dict[str, list] = {}  # name -> per-actor latest models
        self.rebuilds = 0

    def __len__(self) -> int:
        return len(self.actors)

    def load(
        self, spec: RandomEffect, seed: int, train: Source, validation: Source | None, names
    ) -> list:
        """Route and load a coordinate's rows; return one load ref per actor."""
        self.coordinates[spec.name] = (spec, seed, train, validation, names)
        return self._route_and_load(spec.name, range(len(self.actors)))

    def warm_start(self, name: str, actors=None) -> None:
        """Load the coordinate's ``warm_start`` models into (some of) the actors."""
        spec, _, train, _, names = self.coordinates[name]
        for a in actors if actors is not None else range(len(self.actors)):
            ray.get(
                self.actors[a].load_warm_start.remote(
                    name, spec.warm_start, names, train.schema.dim
                )
            )

    def reconfigure(self, spec: RandomEffect) -> None:
        """Swap a loaded coordinate's hyper-parameters in every actor (rows stay grouped)."""
        _, *rest = self.coordinates[spec.name]
        self.coordinates[spec.name] = (spec, *rest)
        self.models.pop(spec.name, None)
        self.call("reconfigure", spec.name, [(spec,)] * len(self.actors))

    def forget(self, name: str) -> None:
        self.coordinates.pop(name, None)
        self.models.pop(name, None)

    def _route_and_load(self, name: str, actors) -> list:
        """Route every file of the coordinate once and load the parts of ``actors`` into them
        (routing is deterministic: a rebuilt actor gets the very rows it had)."""
        spec, seed, train, validation, _ = self.coordinates[name]
        n = len(self.actors)
        train_parts = route(train, n, self.n_buckets)
        val_parts = route(validation, n, self.n_buckets) if validation is not None else None
        return [
            self.actors[a].load.remote(
                spec, seed, train_parts[a], val_parts[a] if val_parts else [], train, validation
            )
            for a in actors
        ]

    def call(self, method: str, name: str, args_per_actor: list[tuple]) -> list:
        """``actor.method(name, *args)`` on every actor; rebuild and retry an actor that died."""
        refs = [self._call(a, method, name, args) for a, args in enumerate(args_per_actor)]
        results = []
        for a, ref in enumerate(refs):
            for attempt in range(3):
                try:
                    result = ray.get(ref)
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
                    ref = self._call(a, method, name, args_per_actor[a])
            if method == "fit":  # (result, models): the models are kept for a rebuild (on the
                # driver's node, backed by its object store: not copied again by a ray.put)
                result, models = result
                self.models.setdefault(name, [None] * len(self.actors))[a] = models
            results.append(result)
        return results

    def _call(self, a: int, method: str, name: str, args: tuple):
        return getattr(self.actors[a], method).remote(name, *args)

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
        for name, (spec, *_) in self.coordinates.items():
            ray.get(self._route_and_load(name, [a]))
            saved = self.models.get(name, [None] * len(self.actors))[a]
            if saved is not None:
                ray.get(self.actors[a].set_models.remote(name, saved))
            elif spec.warm_start:
                self.warm_start(name, [a])
