"""The random-effect coordinate: per-entity GLMs on the rows that bucket holders keep.

The holders (``raymix.engine.random_effect.BucketPool``, a pool of Ray actors shared by every
random effect of a run) are handed in by ``raymix.run.build_coordinates``; the coordinate
sees them only through :class:`BucketHolders`, and what a holder does with its rows is in
:mod:`raymix.coordinates.buckets`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from raymix import storage
from raymix.coordinates.base import HolderRows, Outcome, RowIndex, gather, scatter
from raymix.coordinates.buckets import BucketFit, FitCommand, LoadedBucket
from raymix.coordinates.entity_sample import EntitySample
from raymix.data.source import Source
from raymix.recipe.spec import RandomEffect
from raymix.solvers.variance_components import next_l2, solve_l2


class BucketHolders(Protocol):
    """The holders of every random effect's rows: each keeps the entities of some buckets.

    Methods take a coordinate's name and answer with one reply per holder, in holder order.
    A holder that is lost is rebuilt (its rows reloaded, its last models put back) and the
    call repeated, so a caller sees the replies of an undisturbed run.
    """

    rebuilds: int  # holders rebuilt so far

    def __len__(self) -> int: ...

    def load(
        self,
        spec: RandomEffect,
        seed: int,
        train: Source,
        validation: Source | None,
        names: list[tuple[str, str]] | None,
    ) -> None:
        """Start reading and grouping a coordinate's rows."""

    def loaded(self, name: str) -> list[LoadedBucket]:
        """Wait for the load and report every holder's rows."""

    def sample_entities(self, name: str, k: int, seed: int) -> EntitySample:
        """Up to ``k`` fitted entities over the holders (:mod:`.entity_sample`)."""

    def warm_start(self, name: str) -> None:
        """Load the spec's ``warm_start`` models into the holders."""

    def prior(self, name: str) -> int:
        """Load the spec's ``prior`` into the holders; how many models they carry unchanged."""

    def share(self, values: list[np.ndarray]) -> Sequence[object]:
        """Per-holder values placed where the holders read them, once for several calls."""

    def fit(self, name: str, offsets: Sequence[object], command: FitCommand) -> list[BucketFit]:
        """Refit with these (shared) per-row offsets and score."""

    def score(self, name: str) -> list[BucketFit]:
        """Score with the models held (no refit)."""

    def reconfigure(self, spec: RandomEffect) -> None:
        """New hyper-parameters for a loaded coordinate; its models are dropped."""

    def write_models(
        self, name: str, directory: str, names: list[tuple[str, str]] | None
    ) -> list[str]:
        """Write the models as Avro, one file per bucket."""

    def save_models(self, name: str, directory: str) -> list[str]:
        """Write the models as Arrow tables (a checkpoint), one file per holder."""

    def snapshot(self, name: str) -> list:
        """The models each holder last replied with."""

    def restore(self, name: str, saved: list) -> None:
        """Put back models taken by :meth:`snapshot`."""

    def close(self, name: str) -> None:
        """Drop the coordinate's rows and models."""


class RandomEffectCoordinate:
    kind = "random_effect"

    def __init__(
        self,
        spec: RandomEffect,
        train: Source,
        validation: Source | None,
        names: list[tuple[str, str]] | None,
        *,
        pool: BucketHolders,
        seed: int,
    ):
        self.spec, self.name, self.names = spec, spec.name, names
        self.train_source, self.val_source = train, validation
        self.pool, self.seed = pool, seed
        self._train_pos: list[np.ndarray] = []
        self._val_pos: list[np.ndarray] = []
        self._uids: tuple[list, list] = ([], [])
        self._sizes = (0, 0)
        self._auto_l2: float | None = None  # the last estimate of l2="auto"
        self.carried = 0  # yesterday's models kept unchanged (entities without rows today)

    def start(self) -> None:
        self.pool.load(self.spec, self.seed, self.train_source, self.val_source, self.names)

    def holders(self) -> tuple[list[HolderRows], list[HolderRows]]:
        train, val = [], []
        offset = 0  # global entity codes for per-entity metrics: holders' local codes shifted
        for bucket in self.pool.loaded(self.name):
            train.append(bucket.train)
            codes = bucket.validation.entity_code
            shifted = None if codes is None else codes + offset
            val.append(dataclasses.replace(bucket.validation, entity_code=shifted))
            offset += bucket.n_val_entities
        self._uids = ([h.uid for h in train], [h.uid for h in val])
        if self.spec.warm_start:
            self.pool.warm_start(self.name)
        if self.spec.prior is not None:
            self.carried = self.pool.prior(self.name)
        return train, val

    def bind(self, train: RowIndex, validation: RowIndex) -> None:
        who = f"coordinate '{self.name}'"
        self._train_pos = [train.positions(u, who) for u in self._uids[0]]
        self._val_pos = [validation.positions(u, who) for u in self._uids[1]]
        train.check_covered(self._train_pos, who)
        self._sizes = (len(train), len(validation))

    def fit(
        self, train_offsets: np.ndarray, val_offsets: np.ndarray, refit: bool = True
    ) -> Outcome:
        if not refit:
            return self._outcome(self.pool.score(self.name), {})
        offsets = self.pool.share(gather(train_offsets, self._train_pos))
        l2, em_iterations = None, 0
        if self.spec.l2 == "auto":
            l2, em_iterations = self._estimate_l2(offsets)
        fits = self.pool.fit(self.name, offsets, FitCommand(l2=l2))
        info: dict = {
            "entities": sum(f.entities for f in fits),
            "not_converged": sum(f.not_converged for f in fits),
            "solver_seconds": max(f.solver_seconds for f in fits),
            "actor_rebuilds": self.pool.rebuilds,
        }
        if l2 is not None:
            info.update(l2=l2, em_iterations=em_iterations)
        if self.spec.prior is not None:
            info["entities_carried"] = self.carried
        return self._outcome(fits, info)

    def _outcome(self, fits: list[BucketFit], info: dict) -> Outcome:
        train = scatter([f.train_scores for f in fits], self._train_pos, self._sizes[0])
        val = scatter([f.val_scores for f in fits], self._val_pos, self._sizes[1])
        return Outcome(train=train, validation=val, info=info)

    def _estimate_l2(self, offsets: Sequence[object]) -> tuple[float, int]:
        """``l2="auto"``: the random-effect variance by EM (see variance_components), from
        the last estimate (1.0 at first); returns (l2, EM steps)."""

        def em_step(l2: float) -> float:
            fits = self.pool.fit(self.name, offsets, FitCommand(l2=l2, moments=True))
            return next_l2([f.prior_moments for f in fits], l2)

        self._auto_l2, steps = solve_l2(em_step, self._auto_l2 or 1.0)
        return self._auto_l2, steps

    def reconfigure(self, spec: RandomEffect) -> None:
        """New hyper-parameters (l2, l1, solver, ...) for the resident groups; models dropped.

        Only fields that leave the grouping as it is may change (not the entity, feature bag,
        ``min_samples``/``max_samples`` or data).
        """
        self.spec, self._auto_l2 = spec, None
        self.pool.reconfigure(spec)

    def write_models(self, directory: Path, checkpoint: bool = False) -> list[Path]:
        """The bucket actors write their models themselves (through :mod:`raymix.storage`:
        a local directory or an object-store prefix, shared by no filesystem)."""
        where = storage.normal(directory)
        storage.make_dirs(where)
        if checkpoint:
            written = self.pool.save_models(self.name, where)
        else:
            written = self.pool.write_models(self.name, where, self.names)
        return [storage.as_path(p) for p in sorted(written)]

    def sample_entities(self, k: int = 2000) -> EntitySample:
        """Up to ``k`` of the entities fitted (seeded by the run), for the report."""
        return self.pool.sample_entities(self.name, k, self.seed)

    def snapshot(self):
        return self.pool.snapshot(self.name)

    def restore(self, saved) -> None:
        if saved:
            self.pool.restore(self.name, saved)

    def close(self) -> None:
        self.pool.close(self.name)
