"""The fixed-effect coordinate: one global GLM on rows sharded across a worker group.

The workers (``raymix.engine.fixed_effect.FixedEffectService``, a Ray Train worker group)
are handed in by ``raymix.run.build_coordinates``; the coordinate sees them only through
:class:`FixedEffectWorkers`, and what a worker does with its rows, and the messages it
exchanges, are :mod:`raymix.coordinates.fixed_effect_fit`.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from raymix import storage
from raymix.coordinates.base import HolderRows, Outcome, RowIndex, WorkerRows, scatter
from raymix.coordinates.fixed_effect_fit import DesignCommand, DesignReply, FitCommand, FitReply
from raymix.data.avro.models import (
    avro_files,
    check_finite_model,
    coefficients_by_index,
    model_record,
    read_models,
    write_models,
)
from raymix.data.avro.priors import prior_models_dir, read_prior_models
from raymix.data.source import Source
from raymix.errors import DataError
from raymix.recipe.spec import FixedEffect
from raymix.solvers.prior import Prior
from raymix.solvers.variance_components import ResidualVariance, intercept_kind

#: a checkpoint's fixed-effect variances, beside its model: what --resume gives back
CHECKPOINT_VARIANCES = "variances.npy"


class FixedEffectWorkers(Protocol):
    """The worker group holding a fixed effect's rows, one shard per worker."""

    def start(self, spec: FixedEffect, train: Source, validation: Source | None) -> None:
        """Start reading the rows and the workers."""

    def loaded(self) -> list[WorkerRows]:
        """Wait for the workers and report their rows, one entry per worker."""

    def share(self, value: Any) -> Any:
        """``value`` placed where the workers read it."""

    def request(self, command: FitCommand | DesignCommand) -> list:
        """Every worker's reply to ``command`` (re-run by a restarted group): a
        :class:`FitReply` to a fit, a :class:`DesignReply` to a design command."""

    def restarts(self) -> int:
        """How many times the group was started again after a failure."""

    def stop(self) -> None:
        """End the workers."""


class FixedEffectCoordinate:
    kind = "fixed_effect"

    def __init__(
        self,
        spec: FixedEffect,
        train: Source,
        validation: Source | None,
        names: list[tuple[str, str]] | None,
        workers: FixedEffectWorkers,
        residual: ResidualVariance | None = None,
    ):
        """``residual``: a linear model's residual variance, estimated by its ``l2="auto"``
        random effects; the written variances of a linear task are scaled by it."""
        self.spec, self.name, self.names = spec, spec.name, names
        self.residual = residual
        self.dim = train.schema.dim
        self.train, self.validation = train, validation
        self.service = workers
        self.theta: np.ndarray | None = None
        self.variances: np.ndarray | None = None
        self._index: tuple[Any, Any] = (None, None)
        self._sizes = (0, 0)
        self.worker_pids: list[int] = []
        self._uids: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self.rows_per_worker: list[int] = []
        if spec.warm_start:
            self.theta = self._load_warm_start(spec.warm_start)
            self.variances = checkpointed_variances(spec.warm_start, self.params)
        self.prior = read_fixed_effect_prior(spec, names, self.dim)
        if residual is not None:  # what REML integrates out
            intercept = intercept_kind(spec.fit_intercept, spec.regularize_intercept)
            residual.fixed(self.name, self.dim, spec.l2, intercept)

    def start(self) -> None:
        self.service.start(self.spec, self.train, self.validation)

    def holders(self) -> tuple[list[HolderRows], list[HolderRows]]:
        replies = self.service.loaded()
        train, val = [r.train for r in replies], [r.validation for r in replies]
        self.rows_per_worker = [h.uid.size for h in train]
        self.worker_pids = [r.pid for r in replies]
        self._uids = ([h.uid for h in train], [h.uid for h in val])
        return train, val

    def bind(self, train: RowIndex, validation: RowIndex) -> None:
        who = f"coordinate '{self.name}'"
        train.check_covered([train.positions(u, who) for u in self._uids[0]], who)
        validation.check_covered([validation.positions(u, who) for u in self._uids[1]], who)
        self._index = (self.service.share(train.uid), self.service.share(validation.uid))
        self._sizes = (len(train), len(validation))

    def fit(
        self, train_offsets: np.ndarray, val_offsets: np.ndarray, refit: bool = True
    ) -> Outcome:
        command = FitCommand(
            refit=refit,
            spec=self.spec,
            theta=self.theta,
            train_offsets=self.service.share(train_offsets),
            train_index=self._index[0],
            val_index=self._index[1],
            prior=self.prior,
        )
        replies: list[FitReply] = self.service.request(command)
        first = replies[0]
        if refit:
            self.theta, self.variances = first.theta, first.variances
        train = scatter([r.train for r in replies], [r.train_pos for r in replies], self._sizes[0])
        val = np.zeros(self._sizes[1])
        if self._sizes[1]:
            val = scatter(
                [_present(r.val) for r in replies],
                [_present(r.val_pos) for r in replies],
                self._sizes[1],
            )
        info: dict = {} if first.summary is None else dataclasses.asdict(first.summary)
        info["rows_per_worker"] = [r.train_pos.size for r in replies]
        info["worker_restarts"] = self.service.restarts()
        return Outcome(train=train, validation=val, info=info)

    @property
    def train_rows(self) -> int:
        """Training rows (after :meth:`bind`)."""
        return self._sizes[0]

    @property
    def params(self) -> int:
        """The coefficients of its theta (the features, and the intercept if it fits one)."""
        return self.dim + int(self.spec.fit_intercept)

    def design(self, start: int, stop: int) -> np.ndarray:
        """Columns ``start:stop`` of its training rows' design (theta order, the intercept a
        column of ones), dense, in the global order: ``(rows, stop - start)``."""
        replies: list[DesignReply] = self.service.request(
            DesignCommand(self._index[0], columns=(start, stop))
        )
        out = np.zeros((self._sizes[0], stop - start))
        for reply in replies:
            out[reply.train_pos] = reply.value
        return out

    def cross(self, v: np.ndarray) -> np.ndarray:
        """``X' W v`` over its training rows (``v``: global order, one column per product),
        summed over the workers where the rows are: ``(params, v.shape[1])``."""
        command = DesignCommand(self._index[0], against=self.service.share(v))
        replies: list[DesignReply] = self.service.request(command)
        return np.sum([reply.value for reply in replies], axis=0)

    def takes_intercept_shift(self) -> bool:
        """Whether its intercept is free (fitted, not penalized, no prior) and fitted: the
        random effects' penalized intercepts' mean can move into it."""
        spec = self.spec
        free = spec.fit_intercept and not spec.regularize_intercept and self.prior is None
        return free and self.theta is not None

    def shift_intercepts(self, by: float, train_offsets: np.ndarray, val_offsets: np.ndarray) -> Outcome:  # fmt: skip
        """Add ``by`` to its intercept and score again (its workers, ``refit=False``)."""
        theta = np.array(self.theta, np.float64)
        theta[-1] += by
        self.theta = theta
        return self.fit(train_offsets, val_offsets, refit=False)

    def reconfigure(self, spec: FixedEffect) -> None:
        """New hyper-parameters (l2, l1, solver, ...) for the resident rows; the model is reset.

        Only fields that leave the rows and the loss as they are may change (not the feature
        bag, task, intercept or data): the next fit sends ``spec`` to the workers.
        """
        self.spec = spec
        self.theta, self.variances = None, None

    def write_models(self, directory: Path, checkpoint: bool = False) -> list[Path]:
        if self.theta is None:
            return []
        coef, intercept = self._split(self.theta)
        nonzero = np.flatnonzero(coef)
        variances = None
        if self.variances is not None:
            v = np.asarray(self.variances)
            ordered = np.concatenate([[v[-1]], v[:-1]]) if self.spec.fit_intercept else v
            keep = np.concatenate([[0], nonzero + 1]) if self.spec.fit_intercept else nonzero
            variances = ordered[keep]
            scale = None if self.residual is None else self.residual.sigma_e2
            if self.spec.task == "linear" and scale is not None and np.isfinite(scale):
                variances = variances * scale
        record = model_record(
            "global model",
            intercept if self.spec.fit_intercept else None,
            nonzero,
            coef[nonzero],
            self.names,
            self.spec.task,
            variances,
        )
        written = [write_models(Path(directory) / "part-00000.avro", [record])]
        if checkpoint and self.variances is not None:  # as held: theta order, unscaled
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(self.variances, np.float64))
            where = storage.join(storage.normal(directory), CHECKPOINT_VARIANCES)
            written.append(storage.as_path(storage.write_bytes(where, buffer.getvalue())))
        return written

    def snapshot(self):
        return None if self.theta is None else (self.theta.copy(), self.variances)

    def restore(self, saved) -> None:
        self.theta, self.variances = saved if saved is not None else (None, None)

    def close(self) -> None:
        self.service.stop()

    def _split(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        from raymix.solvers.layout import glm_coef_intercept

        return glm_coef_intercept(theta, self.spec.fit_intercept)

    def _load_warm_start(self, path: str) -> np.ndarray:
        records = list(read_models(path))
        if len(records) != 1:
            raise DataError(f"a fixed-effect model has one record, found {len(records)}", path=path)
        intercept, index, value = coefficients_by_index(records[0], self.names)
        files = avro_files(path)  # a fixed effect's one record is in one file: name it
        check_finite_model(str(records[0]["modelId"]), intercept, value, files[0] if len(files) == 1 else path)  # fmt: skip
        coef = np.zeros(self.dim)
        if index.size and index.max() >= self.dim:
            raise DataError(
                f"model feature index {index.max()} outside the bag (dim {self.dim})", path=path
            )
        coef[index] = value
        return np.concatenate([coef, [intercept]]) if self.spec.fit_intercept else coef


def checkpointed_variances(directory: str, params: int) -> np.ndarray | None:
    """The variances a checkpoint of the fixed effect holds beside its model (theta order,
    relative to ``sigma_e^2``), None for any other model directory."""
    where = storage.join(storage.normal(directory), CHECKPOINT_VARIANCES)
    if not storage.is_file(where):
        return None
    variances = np.load(io.BytesIO(storage.read_bytes(where)), allow_pickle=False)
    if variances.shape != (params,) or not np.all(np.isfinite(variances)):
        raise DataError(f"expected {params} finite variances, found shape {variances.shape}", path=str(where))  # fmt: skip
    return variances


def read_fixed_effect_prior(
    spec: FixedEffect, names: list[tuple[str, str]] | None, dim: int
) -> Prior | None:
    """The spec's prior (its one model, features matched by name), or None without one."""
    if spec.prior is None:
        return None
    where = prior_models_dir(spec.prior.models, spec.name, "fixed_effect")
    models = read_prior_models(where, names, spec.task, dim)
    if models.models.n_entities != 1:
        raise DataError(
            f"a fixed effect's prior has one model; found {models.models.n_entities}",
            path=str(where),
        )
    return models.fixed_effect_prior(spec.prior.weight, spec.prior.forgetting)


def _present(value: np.ndarray | None) -> np.ndarray:
    if value is None:
        raise ValueError("a worker holding validation rows sent no validation scores")
    return value
