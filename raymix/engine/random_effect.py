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
import ray

from raymix.coordinates.grouping import Grouped, group_rows, lookup_entities, stable_bucket
from raymix.data.rows import Rows, concat_rows, rows_from_table
from raymix.data.source import Source, read_table
from raymix.errors import DataError, RaymixError
from raymix.recipe.spec import RandomEffect


def route_file(source: Source, path: str, n_actors: int, n_buckets: int) -> list[pa.Table]:
    """Read one file and split its rows into one table per actor (by entity bucket)."""
    table = read_table(source, path)
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
    owner = buckets % n_actors
    return [table.take(pa.array(np.flatnonzero(owner == a))) for a in range(n_actors)]


@ray.remote
def _route_task(source: Source, path: str, n_actors: int, n_buckets: int):
    parts = route_file(source, path, n_actors, n_buckets)
    return parts[0] if n_actors == 1 else tuple(parts)


def route(source: Source, n_actors: int, n_buckets: int) -> list[list[tuple[str, ray.ObjectRef]]]:
    """Start the shuffle; return, per actor, (file, part ref) of every file."""
    per_actor: list[list] = [[] for _ in range(n_actors)]
    for path in source.files:
        refs = _route_task.options(num_returns=n_actors).remote(source, path, n_actors, n_buckets)
        refs = [refs] if n_actors == 1 else list(refs)
        for actor, ref in enumerate(refs):
            per_actor[actor].append((path, ref))
    return per_actor


def _rows_of_parts(parts: list[tuple[str, pa.Table]], source: Source) -> tuple[Rows, np.ndarray]:
    rows, buckets = [], []
    kinds = set()
    for path, table in parts:
        try:
            part = rows_from_table(table, source.schema, source=path)
        except DataError as exc:
            row = None if exc.row is None else int(table.column("__raymix_row")[exc.row].as_py())
            raise DataError(exc._raw, path=path, row=row, column=exc.column) from None
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
    if merged.entity is None:
        merged.entity = np.zeros(0, np.int64)
    bucket = np.concatenate(buckets) if buckets else np.zeros(0, np.int64)
    return merged, bucket


@ray.remote(num_cpus=0)
class BucketActor:
    """Holds the rows of its buckets grouped by entity, fits and scores their models."""

    def __init__(self, spec: RandomEffect, seed: int, threads: int):
        self.spec, self.seed, self.threads = spec, seed, threads
        self.train: Grouped | None = None
        self.val: Grouped | None = None
        self.models = None  # EntityModels of entities with has_model, in entity order
        self.bucket_of_entity = np.zeros(0, np.int64)

    def pid(self) -> int:
        return os.getpid()

    def load(self, train_parts, val_parts, train_source: Source, val_source: Source | None):
        """Group the routed rows; return (train uid/label/weight, val uid/label, codes)."""
        train_rows, train_bucket = _rows_of_parts(_resolve(train_parts), train_source)
        spec = self.spec
        self.train = group_rows(train_rows, spec.min_samples, spec.max_samples, self.seed)
        order_bucket = {}
        if len(train_rows):
            # bucket of every entity (for the per-bucket model files)
            entities, first = np.unique(train_rows.entity, return_index=True)
            order_bucket = dict(zip(entities.tolist(), train_bucket[first].tolist(), strict=True))
        self.bucket_of_entity = np.asarray(
            [order_bucket[e] for e in self.train.entities.tolist()], np.int64
        )
        val_out = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
        if val_source is not None:
            val_rows, _ = _rows_of_parts(_resolve(val_parts), val_source)
            self.val = group_rows(val_rows)
            code = lookup_entities(self.val.entities, self.train.entities)
            self.val_model_group = code
            val_codes = np.repeat(np.arange(self.val.entities.size), np.diff(self.val.entity_ptr))
            val_out = (self.val.rows.uid, self.val.rows.label, self.val.rows.offset, val_codes)
        rows = self.train.rows
        return (rows.uid, rows.label, rows.weight, rows.offset), val_out, int(self.val.entities.size if self.val else 0)

    def set_models(self, models) -> None:
        self.models = models

    def fit(self, train_offsets, val_offsets, refit: bool, warm_start):
        from raymix.solvers.entity import EntityProblem, fit_entities, score_entities

        train_offsets = _resolve_one(train_offsets)
        grouped, spec = self.train, self.spec
        rows = grouped.rows
        offsets = train_offsets
        info = {}
        model_of_entity = np.where(grouped.has_model, np.cumsum(grouped.has_model) - 1, -1)
        if refit:
            active = grouped.active
            act_codes = np.repeat(np.arange(grouped.entities.size), np.diff(grouped.entity_ptr))[active]
            counts = np.bincount(act_codes, minlength=grouped.entities.size)[grouped.has_model]
            ptr = np.zeros(counts.size + 1, np.int64)
            np.cumsum(counts, out=ptr[1:])
            problem = EntityProblem(
                ptr, rows.X[active], rows.label[active], grouped.fit_weight[active], offsets[active]
            )
            if warm_start is None and self.models is not None:
                warm_start = self.models
            started = time.perf_counter()
            self.models = fit_entities(
                problem,
                task=spec.task,
                l2=spec.l2,
                l1=spec.l1,
                fit_intercept=spec.fit_intercept,
                regularize_intercept=spec.regularize_intercept,
                max_iter=spec.solver.max_iter,
                tol=spec.solver.tolerance,
                warm_start=warm_start,
                variance=spec.variance,
                threshold=spec.sparsity_threshold,
                n_threads=self.threads,
            )
            info = {
                "entities": int(self.models.n_entities),
                "not_converged": int(self.models.n_not_converged),
                "solver_seconds": time.perf_counter() - started,
            }
        if self.models is None:
            train_scores = np.zeros(len(rows))
        else:
            train_scores = score_entities(
                self.models, rows.X, grouped.entity_ptr, model_index=model_of_entity
            )
        val_scores = np.zeros(0)
        if self.val is not None and self.models is not None:
            group_model = np.where(
                self.val_model_group >= 0, model_of_entity[np.maximum(self.val_model_group, 0)], -1
            )
            val_scores = score_entities(
                self.models, self.val.rows.X, self.val.entity_ptr, model_index=group_model
            )
        elif self.val is not None:
            val_scores = np.zeros(len(self.val.rows))
        return train_scores, val_scores, info

    def write_models(self, directory: str, names, task: str) -> list[str]:
        """One Avro file per bucket: ``part-<bucket:05d>.avro``; entities in id order."""
        from raymix.data.avro import model_record, write_models

        if self.models is None:
            return []
        modelled = np.flatnonzero(self.train.has_model)
        written = []
        buckets = self.bucket_of_entity[modelled]
        for bucket in np.unique(buckets):
            records = []
            for m in np.flatnonzero(buckets == bucket):
                entity = self.train.entities[modelled[m]]
                intercept, index, value = self.models.coefficients(int(m))
                variances = None
                if self.models.variances is not None:
                    vp = self.models.variance_ptr
                    variances = self.models.variances[vp[m] : vp[m + 1]]
                    if not self.spec.fit_intercept:
                        variances = variances[1:]
                records.append(
                    model_record(
                        _entity_id(entity),
                        intercept if self.spec.fit_intercept else None,
                        index,
                        value,
                        names,
                        task,
                        variances,
                    )
                )
            path = os.path.join(directory, f"part-{int(bucket):05d}.avro")
            write_models(path, records)
            written.append(path)
        return written

    def load_warm_start(self, path: str, names, dim: int):
        """Models for this actor's entities from an Avro model directory (others ignored)."""
        from raymix.data.avro import coefficients_by_index, read_models
        from raymix.solvers.entity import EntityModels

        wanted = {_entity_id(e): k for k, e in enumerate(self.train.entities.tolist())}
        found = {}
        for record in read_models(path):
            k = wanted.get(record["modelId"])
            if k is not None and self.train.has_model[k]:
                found[k] = coefficients_by_index(record, names)
        modelled = np.flatnonzero(self.train.has_model)
        intercepts, ptr, index, value = [], [0], [], []
        for k in modelled:
            b, i, v = found.get(int(k), (0.0, np.zeros(0, np.int64), np.zeros(0)))
            keep = i < dim
            intercepts.append(b)
            index.append(i[keep])
            value.append(v[keep])
            ptr.append(ptr[-1] + int(keep.sum()))
        n = modelled.size
        self.models = EntityModels(
            np.asarray(intercepts, np.float64),
            np.asarray(ptr, np.int64),
            np.concatenate(index) if index else np.zeros(0, np.int64),
            np.concatenate(value) if value else np.zeros(0),
            np.ones(n, bool),
            np.zeros(n, np.int32),
        )
        return len(found)


def _entity_id(value) -> str:
    return value if isinstance(value, str) else str(int(value))


def _resolve(parts) -> list[tuple[str, pa.Table]]:
    paths = [p for p, _ in parts]
    tables = ray.get([r for _, r in parts])
    return list(zip(paths, tables, strict=True))


def _resolve_one(value):
    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


__all__ = ["BucketActor", "route", "route_file", "RaymixError"]
