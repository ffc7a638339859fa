"""The random effects' shuffle: rows of every input file split by entity bucket for the
bucket actors, actor *i* receiving part *i* of every file and fetching them one at a time
(:func:`fetched`).

Two ways, chosen by ``RAYMIX_GROUPING`` (an experiment of issue 18, not a recipe field yet):

* ``routing`` (the default), on Ray core: one task per input file reads it and splits its
  rows (:func:`raymix.data.routing.route_file`);
* ``ray_data``: Ray Data reads the files (the same reader, each row tagged with its file and
  its actor) and hash-shuffles the rows on the actor column (``repartition(keys=...)``,
  streaming, spilling to disk when the object store is short); then one task per actor puts
  its rows back into per-file parts in file order, so an actor groups exactly the rows, in
  exactly the order, that ``routing`` gives it (the same models, bit for bit).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from raymix.data.routing import BUCKET, ROW, route_file
from raymix.data.source import Source
from raymix.engine.reading import READ_TASK_CPUS

#: an actor's share of a source: (file, ref of the file's part for that actor), per file
Parts = list[tuple[str, ray.ObjectRef]]


@ray.remote
def _route_task(source: Source, path: str, n_actors: int, n_buckets: int):
    parts = route_file(source, path, n_actors, n_buckets)
    return parts[0] if n_actors == 1 else tuple(parts)


GROUPINGS = ("routing", "ray_data")
FILE = "__raymix_file"  # a row's file (its index in the source), through Ray Data's shuffle
OWNER = "__raymix_actor"  # a row's actor, the shuffle's key


def grouping() -> str:
    """The shuffle chosen by ``RAYMIX_GROUPING`` (``routing`` when unset)."""
    chosen = os.environ.get("RAYMIX_GROUPING", "routing")
    if chosen not in GROUPINGS:
        raise ValueError(
            f"The 'RAYMIX_GROUPING' must be one of {list(GROUPINGS)}. Got '{chosen}' instead."
        )
    return chosen


def route(source: Source, n_actors: int, n_buckets: int) -> list[Parts]:
    """Start the shuffle; return, per actor, (file, part ref) of every file."""
    if grouping() == "ray_data" and len(source.files) > 0:
        return route_on_ray_data(source, n_actors, n_buckets)
    return route_files(source, n_actors, n_buckets)


def route_files(source: Source, n_actors: int, n_buckets: int) -> list[Parts]:
    """Ray core's routing: one task per file."""
    per_actor: list[Parts] = [[] for _ in range(n_actors)]
    for path in source.files:
        # an explicit strategy: never captured by an enclosing placement group (a Tune trial's)
        returned: Any = _route_task.options(
            num_returns=n_actors, num_cpus=READ_TASK_CPUS, scheduling_strategy="DEFAULT"
        ).remote(source, path, n_actors, n_buckets)
        refs = [returned] if n_actors == 1 else list(returned)
        for actor, ref in enumerate(refs):
            per_actor[actor].append((path, ref))
    return per_actor


def fetched(parts: Parts) -> Iterator[tuple[str, pa.Table]]:
    """``(file, table)`` of each part in turn, fetched when asked for. ``parts`` is emptied as
    they go, so each routed table leaves the object store once its reader lets go of it."""
    parts.reverse()
    while parts:
        path, ref = parts.pop()
        table = ray.get(ref)
        del ref
        yield path, table
        del table


def route_on_ray_data(source: Source, n_actors: int, n_buckets: int) -> list[Parts]:
    """Ray Data's hash shuffle of every file's rows on their actor; per actor, (file, part
    ref) of every file, as :func:`route` gives them."""
    files = list(source.files)

    def read(batch: dict) -> pa.Table:
        tables = []
        for index in batch["file"].tolist():
            table = route_file(source, files[index], 1, n_buckets)[0]
            owner = table.column(BUCKET).to_numpy() % n_actors
            table = table.append_column(FILE, pa.array(np.full(table.num_rows, index, np.int32)))
            tables.append(table.append_column(OWNER, pa.array(owner.astype(np.int32))))
        return pa.concat_tables(tables)

    dataset = (
        ray.data.from_items([{"file": i} for i in range(len(files))])
        .map_batches(read, batch_size=1, batch_format="numpy", num_cpus=READ_TASK_CPUS)
        .repartition(n_actors, keys=[OWNER])
        .materialize()
    )
    if dataset.count() == 0:  # no rows anywhere: nothing to shuffle
        return route_files(source, n_actors, n_buckets)
    blocks = dataset.to_arrow_refs()
    per_actor: list[Parts] = []
    for actor in range(n_actors):
        returned: Any = _assemble.options(
            num_returns=len(files), num_cpus=READ_TASK_CPUS, scheduling_strategy="DEFAULT"
        ).remote(actor, len(files), *blocks)
        refs = [returned] if len(files) == 1 else list(returned)
        per_actor.append(list(zip(files, refs, strict=True)))
    return per_actor


@ray.remote
def _assemble(actor: int, n_files: int, *blocks: pa.Table):
    """One actor's rows of the shuffled blocks (some hold rows), as one part per file in
    the file's order."""
    mine = [b.filter(pc.equal(b.column(OWNER), actor)) for b in blocks if b.num_rows]
    table = pa.concat_tables(mine).sort_by([(FILE, "ascending"), (ROW, "ascending")])
    where = table.column(FILE).to_numpy()
    bounds = np.searchsorted(where, np.arange(n_files + 1))
    parts = [
        table.slice(bounds[f], bounds[f + 1] - bounds[f]).drop_columns([FILE, OWNER])
        for f in range(n_files)
    ]
    return parts[0] if n_files == 1 else tuple(parts)
