"""The deep (wide-and-deep) fixed effect: a DeText-style network trained by :mod:`raymix.deep`.

It chains in coordinate descent like any other coordinate: each ``fit`` trains ``steps``
more mini-batch steps with the offsets it is given (the sum of the other coordinates'
scores) added to the logit, and reports its own logits per row, aligned by uid. Workers,
their shards, the network and the optimizer state stay resident across passes.
``write_models`` exports a TensorFlow SavedModel (see :mod:`raymix.deep.export`); a
checkpoint adds the optimizer's state, so that a resumed run goes on as an uninterrupted one.

The workers (``raymix.engine.deep_service.DeepService``, a Ray worker group) are handed in
by ``raymix.run.build_coordinates``; the coordinate sees them through :class:`DeepWorkers`
and exchanges :class:`DeepFit`, :class:`Weights` and :class:`DeepReply` with them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from raymix import storage
from raymix.coordinates.base import HolderRows, Outcome, RowIndex, WorkerRows, gather, scatter
from raymix.data.source import Source
from raymix.deep.inputs import TextInput
from raymix.deep.model import Architecture
from raymix.deep.optim import OptimizerConfig
from raymix.deep.train import FitSummary, TrainConfig, TrainerState
from raymix.errors import DataError, RecipeError
from raymix.recipe.optimizers import SGD, Adam, AdamW
from raymix.recipe.spec import DeepEffect


def check_deep_inputs(spec: DeepEffect, train: Source, validation: Source | None) -> None:
    """Checks made before anything starts: the vocabulary and the text column."""
    from raymix.deep.inputs import check_text_column
    from raymix.deep.text import Vocabulary

    if not storage.is_file(spec.vocab):
        raise RecipeError(
            f"no such vocabulary file: {spec.vocab}", field=f"coordinates.{spec.name}.vocab"
        )
    Vocabulary.load(spec.vocab)
    if spec.backend == "horovod" and spec.workers > 0 and not horovod_installed():
        raise RecipeError(
            "backend 'horovod' needs Horovod with TensorFlow: run scripts/install_horovod.sh",
            field=f"coordinates.{spec.name}.backend",
        )
    for source in (train, validation):
        if source is not None:
            check_text_column(source, spec.text_column)


def horovod_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("horovod.tensorflow") is not None
    except ImportError:
        return False


def optimizer_config(spec: DeepEffect) -> OptimizerConfig:
    """The recipe's optimizer, learning rate, schedule and clipping as the trainer takes them."""
    o = spec.optimizer
    base = OptimizerConfig(
        "sgd", learning_rate=spec.learning_rate, schedule=spec.schedule, clip_norm=spec.clip_norm
    )
    if isinstance(o, AdamW):
        return dataclasses.replace(
            base,
            kind="adamw",
            weight_decay=o.weight_decay,
            beta_1=o.beta_1,
            beta_2=o.beta_2,
            epsilon=o.epsilon,
            bias_correction=o.bias_correction,
        )
    if isinstance(o, Adam):
        return dataclasses.replace(
            base, kind="adam", beta_1=o.beta_1, beta_2=o.beta_2, epsilon=o.epsilon,
            bias_correction=True,
        )  # fmt: skip
    if isinstance(o, SGD):
        return dataclasses.replace(base, momentum=o.momentum)
    raise TypeError(f"unknown optimizer {o!r}")


@dataclass(frozen=True)
class DeepPlan:
    """Everything the workers need besides their mailbox and shards (picklable).

    ``start`` is the trainer state the workers begin from: None (seeded initial weights, a
    fresh optimizer), a warm start's weights, or a checkpoint's weights, optimizer slots and
    fit number (a resumed run)."""

    name: str
    arch: Architecture
    train_config: TrainConfig
    text: TextInput
    train: Source
    validation: Source | None
    workers: int
    backend: str
    max_failures: int
    start: TrainerState | None


@dataclass(frozen=True)
class DeepFit:
    """Train (``refit``) with these per-rank shared offsets, then score.

    ``start`` is the shared trainer state the command begins from (None before the first
    fit): a worker whose trainer has not done ``start_fits`` fits (a restarted group) puts
    it back first."""

    refit: bool
    train_offsets: list[Any]
    start: Any = None
    start_fits: int = 0


@dataclass(frozen=True)
class Weights:
    """Every rank replies with its network's weights (a test's check that replicas agree)."""


@dataclass(frozen=True)
class DeepReply:
    """One rank's scores (its own order); rank 0 also sends its state after a refit."""

    train: np.ndarray
    val: np.ndarray
    state: TrainerState | None = None
    summary: FitSummary | None = None


class DeepWorkers(Protocol):
    """The worker group holding the deep coordinate's rows, network and optimizer."""

    def start(self, plan: DeepPlan) -> None:
        """Start reading the rows and the workers."""

    def loaded(self) -> list[WorkerRows]:
        """Wait for the workers and report their rows, one entry per rank."""

    def share(self, value: Any) -> Any:
        """``value`` placed where the workers read it."""

    def request(self, command: DeepFit | Weights) -> list:
        """Every rank's reply to ``command`` (re-run by a restarted group)."""

    def restarts(self) -> int:
        """How many times the group was started again after a failure."""

    def stop(self) -> None:
        """End the workers."""


class DeepCoordinate:
    kind = "deep"

    def __init__(
        self, spec: DeepEffect, train: Source, validation: Source | None, workers: DeepWorkers
    ):
        from raymix.deep.text import Framing, Vocabulary

        self.spec, self.name = spec, spec.name
        self.vocab = Vocabulary.load(spec.vocab)
        self.framing = Framing(spec.max_len, spec.min_len, tuple(spec.window_sizes))
        self.arch = Architecture(
            vocab_size=len(self.vocab),
            width=self.framing.width,
            embedding_size=spec.embedding_size,
            filters=spec.filters,
            window_sizes=tuple(spec.window_sizes),
            hidden=tuple(spec.hidden),
            wide_dim=train.schema.dim if spec.feature_bag else 0,
        )
        self.text = TextInput(spec.text_column, self.vocab, self.framing)
        #: the trainer's state after the last fit (or the warm start's)
        self.state: TrainerState | None = None
        if spec.warm_start:
            self.state = self._load_warm_start(spec.warm_start)
        self.plan = DeepPlan(
            name=spec.name,
            arch=self.arch,
            train_config=TrainConfig(
                steps=spec.steps,
                batch_size=spec.batch_size,
                seed=spec.seed,
                optimizer=optimizer_config(spec),
            ),
            text=self.text,
            train=train,
            validation=validation,
            workers=spec.workers,
            backend=spec.backend,
            max_failures=spec.max_failures,
            start=self.state,
        )
        self.service = workers
        self._start: Any = None  # self.state, shared with the workers (after a fit)
        self._train_pos: list[np.ndarray] = []
        self._val_pos: list[np.ndarray] = []
        self._sizes = (0, 0)
        self._uids: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self.worker_pids: list[int] = []

    @property
    def weights(self) -> dict[str, np.ndarray] | None:
        return None if self.state is None else self.state.weights

    def start(self) -> None:
        self.service.start(self.plan)

    def holders(self) -> tuple[list[HolderRows], list[HolderRows]]:
        replies = self.service.loaded()
        train, val = [r.train for r in replies], [r.validation for r in replies]
        self.worker_pids = [r.pid for r in replies]
        self._uids = ([h.uid for h in train], [h.uid for h in val])
        return train, val

    def bind(self, train: RowIndex, validation: RowIndex) -> None:
        rows_train, rows_val = self._uids
        who = f"coordinate '{self.name}'"
        self._train_pos = [train.positions(u, who) for u in rows_train]
        self._val_pos = [validation.positions(u, who) for u in rows_val]
        train.check_covered(self._train_pos, who)
        self._sizes = (len(train), len(validation))

    def fit(
        self, train_offsets: np.ndarray, val_offsets: np.ndarray, refit: bool = True
    ) -> Outcome:
        share = self.service.share
        refs = [share(piece) for piece in gather(train_offsets, self._train_pos)]
        start_fits = 0 if self.state is None else self.state.fits
        command = DeepFit(refit, refs, self._start, start_fits)
        replies: list[DeepReply] = self.service.request(command)
        info: dict = {}
        if refit:
            self.state = replies[0].state
            self._start = share(self.state)
            if replies[0].summary is not None:
                info = dataclasses.asdict(replies[0].summary)
            info["workers"] = len(replies)
            info["backend"] = self.spec.backend if self.spec.workers else "in-process"
            info["worker_restarts"] = self.service.restarts()
        train = scatter([r.train for r in replies], self._train_pos, self._sizes[0])
        val = scatter([r.val for r in replies], self._val_pos, self._sizes[1])
        return Outcome(train=train, validation=val, info=info)

    def write_models(self, directory: Path, checkpoint: bool = False) -> list[Path]:
        """Export the current network as a SavedModel in ``directory``; a ``checkpoint`` adds
        the optimizer's state and the fit number beside it."""
        from raymix.deep.export import export_saved_model, save_trainer_state

        if self.state is None:
            return []
        with storage.writing_tree(directory) as local:  # an object store: written, uploaded
            path = export_saved_model(
                local,
                self.arch,
                self.state.weights,
                self.vocab,
                self.framing,
                text_column=self.spec.text_column,
                feature_bag=self.spec.feature_bag,
            )
            if checkpoint:
                save_trainer_state(path, self.state)
        return [directory]

    def snapshot(self) -> TrainerState | None:
        return self.state

    def restore(self, saved: TrainerState | None) -> None:
        self.state = saved
        self._start = None if saved is None else self.service.share(saved)

    def close(self) -> None:
        self.service.stop()

    def _load_warm_start(self, path: str) -> TrainerState:
        from raymix.deep.export import load_trainer_state, load_weights

        arch, weights = load_weights(path)
        if arch != self.arch:
            raise DataError(
                f"the saved network {arch} does not match the recipe's {self.arch}", path=path
            )
        return load_trainer_state(path, weights)
