"""The random effects' shuffle on Ray core: one task per input file reads it and splits its
rows by entity bucket (:func:`raymix.data.routing.route_file`); actor *i* receives part *i*
of every file and fetches them one at a time (:func:`fetched`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import ray

from raymix.data.routing import route_file
from raymix.data.source import Source
from raymix.engine.reading import READ_TASK_CPUS

#: an actor's share of a source: (file, ref of the file's part for that actor), per file
Parts = list[tuple[str, ray.ObjectRef]]


@ray.remote
def _route_task(source: Source, path: str, n_actors: int, n_buckets: int):
    parts = route_file(source, path, n_actors, n_buckets)
    return parts[0] if n_actors == 1 else tuple(parts)


def route(source: Source, n_actors: int, n_buckets: int) -> list[Parts]:
    """Start the shuffle; return, per actor, (file, part ref) of every file."""
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
