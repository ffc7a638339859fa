"""A recipe's rows read and grouped once, refitted under many hyper-parameter settings.

``PreparedRecipe(recipe)`` builds the coordinates and loads their data (the expensive part:
reading, routing entities to bucket actors, grouping rows by entity). ``configure(recipe)``
then switches to another setting: when only hyper-parameters differ (``l2``, ``l1``,
``regularize_intercept``, the solvers, ``passes``, ...) every coordinate is reconfigured in
place and the scores reset to zero, so the next passes equal a fresh fit of that recipe; when a
field that shapes the data differs (feature bag, entity, data paths, ``min_samples``/
``max_samples``, seed, ...) everything is closed and loaded again.

This knows nothing of Ray Tune; :mod:`raymix.tune.trainable` drives it from trial actors.
"""

from __future__ import annotations

import dataclasses
import time

from raymix.descent import DescentState, descend, load
from raymix.engine.cluster import physical_cores
from raymix.recipe.spec import Recipe
from raymix.tune.space import needs_new_data


class PreparedRecipe:
    """Coordinates with resident data and a descent state, one pass at a time.

    ``actors`` (random-effect actors of this recipe; default the recipe's) and ``threads``
    (solver threads per actor) let concurrent trials share the machine.
    """

    def __init__(self, recipe: Recipe, *, actors: int | None = None, threads: int | None = None):
        self.actors, self.threads = actors, threads
        self.recipe = recipe
        self.coordinates: list = []
        self.state: DescentState | None = None
        self.prepare_seconds = 0.0  # time spent reading and grouping data, all loads
        self.loads = 0
        self._load(recipe)

    def _load(self, recipe: Recipe) -> None:
        from raymix.run import build_coordinates, plan

        started = time.perf_counter()
        self.close()
        the_plan = plan(recipe)
        if self.actors:
            threads = self.threads or max(1, physical_cores() // self.actors)
            buckets = recipe.resources.buckets or 4 * self.actors
            the_plan = dataclasses.replace(
                the_plan, actors=self.actors, threads=threads, buckets=max(buckets, self.actors)
            )
        self.coordinates = build_coordinates(the_plan)
        self.state = load(self.coordinates, the_plan.one_at_a_time)
        self.recipe = recipe
        self.loads += 1
        self.prepare_seconds += time.perf_counter() - started

    def configure(self, recipe: Recipe) -> str | None:
        """Switch to ``recipe``: reuse the rows if possible; return why they were reloaded."""
        reason = needs_new_data(self.recipe, recipe)
        if reason is None and all(
            hasattr(c, "reconfigure") or c.kind == "external" for c in self.coordinates
        ):
            for coordinate, spec in zip(self.coordinates, recipe.coordinates, strict=True):
                if hasattr(coordinate, "reconfigure"):
                    coordinate.reconfigure(spec)
            self._loaded().reset()
            self.recipe = recipe
            return None
        self._load(recipe)
        return reason or "a coordinate that cannot be reconfigured"

    def run_pass(self, p: int) -> tuple[dict, bool]:
        """Run pass ``p`` (0-based); return its last coordinate's metrics and whether the
        descent is finished (last pass, or early stopping)."""
        recipe, state = self.recipe, self._loaded()
        stopping = recipe.early_stopping
        descend(
            self.coordinates,
            state,
            passes=p + 1,
            metric=recipe.metric,
            locked=frozenset(c.name for c in recipe.coordinates if c.locked),
            patience=stopping.patience if stopping else None,
            min_delta=stopping.min_delta if stopping else 0.0,
            start=(p, 0),
        )
        # with early stopping a fit keeps its best pass: that pass's metrics are the result
        kept = state.best_pass if stopping is not None else p
        steps = [s for s in state.steps if s.pass_index == kept]
        metrics = dict(steps[-1].metrics) if steps else {}
        metrics["per_coordinate"] = {s.coordinate: s.metrics.get(recipe.metric) for s in steps}
        stale = stopping is not None and p - state.best_pass >= stopping.patience
        return metrics, p + 1 >= recipe.passes or stale

    def _loaded(self) -> DescentState:
        if self.state is None:
            raise RuntimeError("PreparedRecipe: no recipe is loaded (closed)")
        return self.state

    def close(self) -> None:
        for coordinate in self.coordinates:
            coordinate.close()
        self.coordinates, self.state = [], None
