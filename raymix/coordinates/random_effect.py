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
from raymix.solvers.feature_variances import (
    FeatureMoments,
    FeatureStep,
    next_feature_l2s,
    solve_l2s,
)
from raymix.solvers.variance_components import (
    LinearMoments,
    LinearStep,
    ResidualVariance,
    intercept_kind,
    next_l2,
    next_linear_l2,
    shift_variance,
    solve_l2,
)

#: the secant's tolerance on log l2 for a linear task (an EM step is a cheap refit)
LINEAR_EM_TOLERANCE = 1e-7
LINEAR_EM_STEPS = 100


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

    def project(
        self,
        name: str,
        labels: Sequence[object],
        offsets: Sequence[object],
        l2: float | None,
        l2s: tuple[float, ...] | None,
    ) -> list[np.ndarray]:
        """The scores of linear fits of each column of the (shared) ``labels`` with those
        ``offsets`` at this penalty; the held models stay as they are."""

    def score(self, name: str) -> list[BucketFit]:
        """Score with the models held (no refit)."""

    def shift_intercepts(self, name: str, by: float) -> list[BucketFit]:
        """Add ``by`` to every held model's intercept and score."""

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
        residual: ResidualVariance | None = None,
    ):
        """``residual``: the residual variance shared by a linear model's ``l2="auto"``
        random effects (one of its own when None)."""
        self.spec, self.name, self.names = spec, spec.name, names
        self.train_source, self.val_source = train, validation
        self.pool, self.seed = pool, seed
        self._train_pos: list[np.ndarray] = []
        self._val_pos: list[np.ndarray] = []
        self._uids: tuple[list, list] = ([], [])
        self._sizes = (0, 0)
        self._auto_l2: float | None = None  # the last estimate of l2="auto"
        self.residual = ResidualVariance() if residual is None else residual
        self.components: LinearStep | None = None  # a linear l2="auto": the last estimates
        self._auto_l2s: np.ndarray | None = None  # l2_per_feature: the last per-slot l2s
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
        l2, em_iterations, step, l2s = None, 0, None, None
        per_feature: FeatureStep | None = None
        if self.spec.l2_per_feature:
            per_feature, em_iterations, step = self._estimate_per_feature(offsets)
            l2s, l2 = tuple(per_feature.l2s), float(per_feature.l2s[0])
        elif self.spec.l2 == "auto" and self.spec.task == "linear":
            l2, em_iterations, step = self._estimate_linear(offsets)
        elif self.spec.l2 == "auto":
            l2, em_iterations = self._estimate_l2(offsets)
        command = FitCommand(l2=l2, l2s=l2s)
        if step is not None and np.isfinite(step.sigma_e2):
            command = FitCommand(l2=l2, variance_scale=step.sigma_e2, l2s=l2s)
        fits = self.pool.fit(self.name, offsets, command)
        info: dict = {
            "entities": sum(f.entities for f in fits),
            "not_converged": sum(f.not_converged for f in fits),
            "solver_seconds": max(f.solver_seconds for f in fits),
            "actor_rebuilds": self.pool.rebuilds,
        }
        if l2 is not None:
            info.update(l2=l2, em_iterations=em_iterations)
        if l2s is not None:
            info["l2_per_slot"] = list(l2s)
        if step is not None:
            info.update(
                sigma2=step.sigma2, sigma_e2=step.sigma_e2, variance_method=self.residual.method
            )
            info["linear_step"] = dataclasses.asdict(step)  # what --resume gives back
        if per_feature is not None:
            info["sigma2_by_feature"] = self._by_feature(per_feature)
        if self.spec.prior is not None:
            info["entities_carried"] = self.carried
        return self._outcome(fits, info)

    def project(
        self,
        labels: np.ndarray,
        offsets: np.ndarray,
        l2: float | None,
        l2s: tuple[float, ...] | None,
    ) -> np.ndarray:
        """Its entities' penalized least-squares fits of each column of ``labels`` (global
        order, ``(rows, k)``) with that column of ``offsets``, at ``l2`` (or ``l2s`` per
        slot): their scores, ``(rows, k)``; its models stay as they are."""
        share = self.pool.share
        pieces = self.pool.project(
            self.name,
            share(gather(labels, self._train_pos)),
            share(gather(offsets, self._train_pos)),
            l2,
            l2s,
        )
        return scatter(pieces, self._train_pos, self._sizes[0], labels.shape[1])

    def resume(self, info: dict) -> None:
        """Take back what a fit of it recorded in its step's ``info`` (a run resumed from a
        checkpoint): the estimate ``l2="auto"`` starts from, and a linear model's residual
        variance record, so the next fit is the uninterrupted run's."""
        if info.get("l2_per_slot") is not None:
            self._auto_l2s = np.asarray(info["l2_per_slot"], np.float64)
        elif self.spec.l2 == "auto" and "l2" in info:
            self._auto_l2 = float(info["l2"])
        if info.get("linear_step") is not None:
            self.components = LinearStep(**info["linear_step"])
            spec = self.spec
            intercept = intercept_kind(spec.fit_intercept, spec.regularize_intercept)
            self.residual.record(self.name, self.components, intercept)

    def intercept_mean(self) -> float | None:
        """The mean of its penalized intercepts, when a shift of them all leaves every
        training prediction unchanged (every entity has a model) and changes only the
        penalty, the same ridge for each (no prior, no l1): the joint optimum has it 0."""
        spec = self.spec
        if not (spec.fit_intercept and spec.regularize_intercept) or spec.prior is not None:
            return None
        if spec.l1 or spec.min_samples > 1:
            return None
        models = [m for m in self.pool.snapshot(self.name) if m is not None and m.n_entities]
        count = sum(m.n_entities for m in models)
        return float(sum(m.intercepts.sum() for m in models) / count) if count else None

    def shift_intercepts(self, by: float, train_offsets: np.ndarray, val_offsets: np.ndarray) -> Outcome:  # fmt: skip
        """Add ``by`` to every entity's intercept, where the models are, and score again."""
        return self._outcome(self.pool.shift_intercepts(self.name, by), {})

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

    def _estimate_linear(self, offsets: Sequence[object]) -> tuple[float, int, LinearStep]:
        """``l2="auto"`` of a linear task: ``sigma_e^2`` and ``sigma^2`` by maximum likelihood,
        or REML by :attr:`residual`'s method
        (:func:`~raymix.solvers.variance_components.next_linear_l2`), the other random
        effects' penalties from :attr:`residual`; returns (l2, EM steps, the estimates)."""
        last: list[LinearStep] = []

        coupling, fixed = self.residual.fixed_intercept(), self.residual.reml()

        def em_step(l2: float) -> float:
            command = FitCommand(l2=l2, moments=True, coupling=coupling)
            fits = self.pool.fit(self.name, offsets, command)
            moments = sum((f.linear_moments for f in fits if f.linear_moments), LinearMoments())
            others, partners = self.residual.others(self.name), self.residual.partners(self.name)
            last.append(next_linear_l2(moments, l2, others, partners, fixed=fixed))
            return last[-1].l2

        start = self._auto_l2 or 1.0
        self._auto_l2, steps = solve_l2(
            em_step, start, tol=LINEAR_EM_TOLERANCE, max_iter=LINEAR_EM_STEPS
        )
        self.components = last[-1]
        spec = self.spec
        intercept = intercept_kind(spec.fit_intercept, spec.regularize_intercept)
        self.residual.record(self.name, last[-1], intercept)
        return self._auto_l2, steps, last[-1]

    def _estimate_per_feature(self, offsets: Sequence[object]) -> tuple[FeatureStep, int, LinearStep]:  # fmt: skip
        """``l2_per_feature``: ``sigma_e^2`` and one ``sigma^2`` per slot (intercept, then
        each feature) by the EM of :mod:`~raymix.solvers.feature_variances`, accelerated;
        the intercepts' shift correction against the other factors as for one ``sigma^2``.
        Returns the last step, the EM steps, and its summary as a :class:`LinearStep`
        (``sigma2``: the intercept's) for the other random effects' residual."""
        last: list[FeatureStep] = []
        intercepts: list[int] = []  # the entities with a penalized intercept, at each step

        def em_step(l2s: np.ndarray) -> np.ndarray:
            command = FitCommand(moments=True, l2s=tuple(float(v) for v in l2s))
            fits = self.pool.fit(self.name, offsets, command)
            parts = [f.feature_moments for f in fits if f.feature_moments is not None]
            moments = sum(parts[1:], parts[0])
            others, partners = self.residual.others(self.name), self.residual.partners(self.name)
            if self.spec.regularize_intercept and moments.counts[0]:
                shift = shift_variance(moments.counts[0] * l2s[0], partners)
                moments = _with_intercept_shift(moments, moments.counts[0] * shift)
            last.append(next_feature_l2s(moments, l2s, others))
            intercepts.append(int(moments.counts[0]) if self.spec.regularize_intercept else 0)
            return last[-1].l2s

        start = self._auto_l2s if self._auto_l2s is not None else np.ones(1 + self._dim())
        self._auto_l2s, steps = solve_l2s(
            em_step, start, tol=LINEAR_EM_TOLERANCE, max_iter=LINEAR_EM_STEPS
        )
        final = last[-1]
        precision = intercepts[-1] * float(final.l2s[0])  # the intercepts' D = m l2
        step = LinearStep(float(final.l2s[0]), final.sigma_e2, float(final.sigma2[0]), final.penalty, precision)  # fmt: skip
        spec = self.spec
        intercept = intercept_kind(spec.fit_intercept, spec.regularize_intercept)
        self.residual.record(self.name, step, intercept)
        return final, steps, step

    def _dim(self) -> int:
        return self.train_source.schema.dim

    def _by_feature(self, step: FeatureStep) -> dict[str, float]:
        """The per-slot variances by name (``"(Intercept)"``, then ``name`` or
        ``name:term`` from the feature list, else ``feature <j>``); slots no entity has
        are left out."""
        names = ["(Intercept)"]
        for j in range(step.sigma2.size - 1):
            if self.names is not None and j < len(self.names):
                name, term = self.names[j]
                names.append(f"{name}:{term}" if term else name)
            else:
                names.append(f"feature {j}")
        return {n: float(v) for n, v in zip(names, step.sigma2, strict=True) if np.isfinite(v)}

    def reconfigure(self, spec: RandomEffect) -> None:
        """New hyper-parameters (l2, l1, solver, ...) for the resident groups; models dropped.

        Only fields that leave the grouping as it is may change (not the entity, feature bag,
        ``min_samples``/``max_samples`` or data).
        """
        self.spec, self._auto_l2, self.components, self._auto_l2s = spec, None, None, None
        self.residual.forget(self.name)
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


def _with_intercept_shift(moments: FeatureMoments, extra: float) -> FeatureMoments:
    """``moments`` with ``extra`` added to the intercept slot's variance sum."""
    variances = moments.variances.copy()
    variances[0] += extra
    return dataclasses.replace(moments, variances=variances)
