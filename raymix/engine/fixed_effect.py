"""The fixed effect on a Ray Train ``TensorflowTrainer`` whose workers stay up across passes.

Each worker reads its shard once (``get_dataset_shard``), keeps it resident as a
:class:`~raymix.solvers.glm.GLMLoss`, and then serves commands from the mailbox
(:mod:`raymix.engine.service`): a :class:`~raymix.coordinates.fixed_effect_fit.FitCommand`
with new offsets (the loss and gradient are all-reduced and every worker steps the same
L-BFGS in lockstep, :func:`~raymix.coordinates.fixed_effect_fit.fit_fixed_effect`), or stop.
Only offsets and scores (a float per row) move. Rank 0 logs the fit's evaluations in batches
of ``SAVE_EVERY`` (:mod:`raymix.solvers.replay`): a restarted worker group starts the fit again
from the same point, retraces the logged evaluations without computing them, and so ends
exactly where an undisturbed fit ends.

``workers=0`` runs the very same function in-process (Ray Train's local mode: no worker
group to start, and no TensorFlow import, see :func:`trainer_class`); ``workers=N`` starts N
workers.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from raymix.coordinates.base import HolderRows, WorkerRows
from raymix.coordinates.fixed_effect_fit import (
    DesignCommand,
    DesignReply,
    FitCommand,
    FitReply,
    Objective,
    design_columns,
    fit_fixed_effect,
    linear_scores,
    weighted_cross,
)
from raymix.data.rows import Rows
from raymix.data.source import Source
from raymix.engine.collective import Collective, make_collective
from raymix.engine.mailbox import LOAD, CommandId, MailboxClient, Member, Posted
from raymix.engine.service import WorkerService, group_token, serve
from raymix.errors import RaymixError
from raymix.recipe.spec import FixedEffect
from raymix.solvers.glm import ColumnStats, GLMLoss
from raymix.solvers.replay import Evaluation, EvaluationLog, Replay, replaying

SAVE_EVERY = 5  # function evaluations logged per message to the mailbox


def fixed_effect_worker(config: dict) -> None:
    """Ray Train training function: load the shard, then serve mailbox commands until stop."""
    import ray.train

    from raymix.engine.reading import rows_of_shard

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    mailbox: MailboxClient = config["mailbox"]
    spec: FixedEffect = config["spec"]
    member = Member(rank, world, 0)
    try:
        train = rows_of_shard(ray.train.get_dataset_shard("train"), config["train"])
        val = None
        if config["validation"] is not None:
            val = rows_of_shard(ray.train.get_dataset_shard("validation"), config["validation"])
        loss = GLMLoss(
            train.X,
            train.label,
            weights=train.weight,
            offsets=train.offset,
            task=spec.task,
            fit_intercept=spec.fit_intercept,
        )
        collective = make_collective("tensorflow", rank, world)
        stats = ColumnStats.from_array(
            collective.sum(loss.column_stats().to_array()), loss.n_params
        )
        member = Member(rank, world, group_token(collective.sum))
    except RaymixError as exc:
        mailbox.call("reply", LOAD, member, exc)
        return
    mailbox.call("reply", LOAD, member, worker_rows(train, val))
    worker = Shard(spec, rank, mailbox, loss, stats, train, val, collective)
    serve(mailbox, member, worker.handle)


def worker_rows(train: Rows, val: Rows | None) -> WorkerRows:
    """A worker's rows as it reports them (validation rows weigh 1)."""
    if val is None:
        val_rows = HolderRows(np.zeros(0, np.int64), np.zeros(0), np.ones(0), np.zeros(0))
    else:
        val_rows = HolderRows(val.uid, val.label, np.ones(val.uid.size), val.offset)
    return WorkerRows(
        HolderRows(train.uid, train.label, train.weight, train.offset), val_rows, os.getpid()
    )


class Shard:
    """One worker's resident rows and loss; it runs each fit in lockstep with the others."""

    def __init__(
        self,
        spec: FixedEffect,
        rank: int,
        mailbox: MailboxClient,
        loss: GLMLoss,
        stats: ColumnStats,
        train: Rows,
        val: Rows | None,
        collective: Collective,
    ) -> None:
        self.spec, self.rank, self.mailbox = spec, rank, mailbox
        self.loss, self.stats, self.collective = loss, stats, collective
        self.train, self.val = train, val
        self._positions: dict[str, np.ndarray] = {}

    def positions(self, index_ref: Any, uid: np.ndarray) -> np.ndarray:
        """Where this worker's rows sit in the global order (the driver's sorted uids)."""
        import ray

        key = index_ref.hex()
        if key not in self._positions:
            self._positions[key] = np.searchsorted(ray.get(index_ref), uid)
        return self._positions[key]

    def handle(self, posted: Posted) -> FitReply | DesignReply:
        import ray

        if isinstance(posted.command, DesignCommand):
            return self.design(posted.command)
        command: FitCommand = posted.command
        self.spec = spec = command.spec  # the driver may swap hyper-parameters
        train_pos = self.positions(command.train_index, self.train.uid)
        self.loss.set_offsets(ray.get(command.train_offsets)[train_pos])
        theta, summary, variances = command.theta, None, None
        if command.refit:
            # a restarted worker group: the dead group's evaluations, to retrace
            logged = self.mailbox.call("saved_progress", posted.id)
            fit = fit_fixed_effect(spec, self.objective(posted.id, logged), theta, command.prior)
            theta, summary, variances = fit.theta, fit.summary, fit.variances
        if theta is None:
            raise ValueError("a fixed effect scores only after a fit")
        val, val_pos = None, None
        if self.val is not None:
            val = linear_scores(self.val.X, theta, spec.fit_intercept)
            val_pos = self.positions(command.val_index, self.val.uid)
        return FitReply(
            theta=theta if self.rank == 0 else None,
            train=linear_scores(self.train.X, theta, spec.fit_intercept),
            train_pos=train_pos,
            val=val,
            val_pos=val_pos,
            summary=summary,
            variances=variances,
        )

    def design(self, command: DesignCommand) -> DesignReply:
        """Columns of its rows' design, or its share of ``X' W v`` (a linear model's
        marginal variances)."""
        import ray

        pos = self.positions(command.train_index, self.train.uid)
        X, intercept = self.train.X, self.spec.fit_intercept
        if command.columns is not None:
            return DesignReply(design_columns(X, *command.columns, intercept), pos)
        against = ray.get(command.against)[pos]
        return DesignReply(weighted_cross(X, self.train.weight, against, intercept), pos)

    def objective(self, command_id: CommandId, logged: list[Evaluation]) -> Objective:
        """The group's data term, answered from ``logged`` while the fit retraces it; rank 0
        logs the others. Every rank holds the same log and meets the same points, so all
        replay alike and meet in the same collectives."""
        loss, collective, n = self.loss, self.collective, self.loss.n_params
        replay, log = Replay(logged), None
        if self.rank == 0:
            log = EvaluationLog(
                lambda start, batch: self.mailbox.send("save_progress", command_id, start, batch),
                n,
                SAVE_EVERY,
            )

        def value_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = loss.value_grad(x)
            reduced = collective.sum(np.concatenate([[value], grad]))
            return float(reduced[0]), reduced[1:]

        def hessian(x: np.ndarray) -> np.ndarray:
            return collective.sum(loss.hessian(x).ravel()).reshape(n, n)

        answered = replaying(value_grad, replay, log)
        return Objective(answered, hessian, n, self.stats, lambda: replay.replayed)


def all_rows_data_config():
    from ray.train import DataConfig

    class AllRowsDataConfig(DataConfig):
        """Split every dataset across the workers without losing rows.

        Ray Train's default split is ``streaming_split(equal=True)``, which drops rows to make
        the shards equal (one row of movieLens' 79,959 with 2 workers). raymix needs every
        row: shards may differ by a block.
        """

        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            output = [{} for _ in range(world_size)]
            for name, dataset in datasets.items():
                dataset = dataset.copy(dataset)
                dataset.context.execution_options = self._resolve_execution_options(name)
                for rank, split in enumerate(dataset.streaming_split(world_size, equal=False)):
                    output[rank][name] = split
            return output

    return AllRowsDataConfig


def trainer_class(workers: int):
    """Ray Train's ``TensorflowTrainer`` for a worker group; for the in-process mode
    (``workers=0``) its base class, ``DataParallelTrainer``, which runs the same loop.

    The two differ only by the TensorFlow backend, which sets ``TF_CONFIG`` on each worker of
    a group for the all-reduce; in-process there is one worker, the all-reduce is the identity
    (:mod:`raymix.engine.collective`), and importing ``ray.train.tensorflow`` (which imports
    TensorFlow, ~4 s here) would buy nothing.
    """
    if workers == 0:
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        return DataParallelTrainer
    from ray.train.tensorflow import TensorflowTrainer

    return TensorflowTrainer


class FixedEffectService(WorkerService):
    """Driver side of a fixed effect's worker group (``raymix.coordinates.fixed_effect``'s
    ``FixedEffectWorkers``)."""

    what = "fixed-effect"

    def start(self, spec: FixedEffect, train: Source, validation: Source | None) -> None:
        self.open(spec.name, spec.workers > 0, lambda: self.run_group(spec, train, validation))

    def saved_progress(self) -> list[Evaluation]:
        """The evaluations rank 0 has logged in the current fit."""
        return self._mailbox().call("saved_progress", self.last_id)

    def run_group(self, spec: FixedEffect, train: Source, validation: Source | None) -> None:
        """Read the rows and run the worker group until it stops (in the service's thread)."""
        from ray.train import FailureConfig, RunConfig, ScalingConfig

        from raymix.engine.reading import read_dataset

        # with N workers, enough blocks for every worker to get rows, whatever the files
        blocks = 4 * spec.workers if spec.workers > 1 else 1
        datasets = {"train": read_dataset(train, blocks)}
        if validation is not None:
            datasets["validation"] = read_dataset(validation, blocks)
        # (min, max): Ray Train v2's elastic group, which its annotations do not name yet
        workers: Any = spec.workers
        if spec.min_workers is not None:
            workers = (spec.min_workers, spec.workers)
        trainer = trainer_class(spec.workers)(
            train_loop_per_worker=fixed_effect_worker,
            train_loop_config={
                "mailbox": self.mailbox,
                "spec": spec,
                "train": train,
                "validation": validation,
            },
            scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
            datasets=datasets,
            dataset_config=all_rows_data_config()(datasets_to_split="all"),
            run_config=RunConfig(
                name=f"raymix-{spec.name}",
                storage_path=tempfile.gettempdir() + "/raymix-train",
                failure_config=FailureConfig(max_failures=spec.max_failures),
            ),
        )
        trainer.fit()
