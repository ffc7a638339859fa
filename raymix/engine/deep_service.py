"""Long-lived data-parallel workers for the deep coordinate, on Ray, with two backends.

* ``tensorflow`` (default): a Ray Train V2 ``TensorflowTrainer``; gradients are summed by
  TensorFlow's collective all-reduce (``MultiWorkerMirroredStrategy``, configured by Ray
  through ``TF_CONFIG``). ``workers=0`` runs the same function in-process (Ray Train's
  local mode, world size 1) whatever the backend.
* ``horovod``: ``horovod.ray.RayExecutor`` starts the workers as Ray actors and Horovod's
  Gloo rendezvous; gradients are summed by ``hvd.DistributedGradientTape``.

Either way each worker builds its collective (:mod:`raymix.engine.collective`), loads its
shard once (row ranges cut by :func:`raymix.engine.reading.split_rows`), reports its rows,
and then serves commands through the mailbox (:mod:`raymix.engine.service`) until told to
stop: :class:`~raymix.coordinates.deep.DeepFit` (new offsets, train, score) and
:class:`~raymix.coordinates.deep.Weights` (every rank's weights, for tests). Only offsets,
scores and, from rank 0, the trainer's state cross the wire.

A failed worker group is started again, up to ``max_failures`` times (Ray Train's
``FailureConfig``; for Horovod a new executor): it reloads its rows, re-runs the current
command, and first puts back the trainer state that command starts from (weights,
optimizer slots, fit number: ``DeepFit.start``), so the fit is the one an undisturbed
group would have made.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import numpy as np

from raymix.coordinates.base import HolderRows, WorkerRows
from raymix.coordinates.deep import DeepFit, DeepPlan, DeepReply, Weights
from raymix.deep.inputs import Shard
from raymix.deep.train import DeepTrainer
from raymix.engine.collective import Collective, make_collective
from raymix.engine.mailbox import LOAD, MailboxClient, Member, Posted
from raymix.engine.service import WorkerService, group_token, serve
from raymix.errors import FitError, RaymixError


def tensorflow_worker(config: dict) -> None:
    """Ray Train training function (backend ``tensorflow``, or in-process)."""
    import ray.train

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()

    def collective() -> Collective:
        limit_threads(world)
        return make_collective("tensorflow", rank, world)

    run_worker(config, rank, world, collective)


def horovod_worker(config: dict) -> None:
    """Run by every ``RayExecutor`` worker (backend ``horovod``)."""
    world = int(os.environ.get("HOROVOD_SIZE", "1"))

    def collective() -> Collective:
        limit_threads(world)
        return make_collective("horovod", 0, world)

    run_worker(config, int(os.environ.get("HOROVOD_RANK", "0")), world, collective)


def limit_threads(world: int) -> None:
    """Share the machine's cores between the workers on it (before TensorFlow starts)."""
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)

    from raymix.engine.cluster import physical_cores

    local = int(os.environ.get("HOROVOD_LOCAL_SIZE", world))
    threads = max(1, physical_cores() // max(local, 1))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already running in this process (in-process mode)
        pass


def run_worker(config: dict, rank: int, world: int, make: Callable[[], Collective]) -> None:
    """Load the shard, then answer mailbox commands until stop."""
    from raymix.engine.reading import load_shard

    mailbox: MailboxClient = config["mailbox"]
    plan: DeepPlan = config["plan"]
    member = Member(rank, world, 0)
    try:
        collective = make()
        member = Member(collective.rank, collective.world, 0)
        width = plan.arch.width
        train = load_shard(config["train_refs"][member.rank], plan.train, width)
        val = None
        if plan.validation is not None:
            val = load_shard(config["validation_refs"][member.rank], plan.validation, width)
        start = plan.start
        weights = start.weights if start is not None else None
        trainer = DeepTrainer(plan.arch, plan.train_config, collective, train, val, weights)
        if start is not None and start.optimizer is not None:
            trainer.restore(start)  # a resumed run: the optimizer's slots and the fit number
        member = Member(member.rank, member.world, group_token(collective.sum))
    except RaymixError as exc:
        mailbox.call("reply", LOAD, member, exc)
        return
    mailbox.call("reply", LOAD, member, worker_rows(train, val))
    serve(mailbox, member, lambda posted: handle(posted, member.rank, trainer))


def worker_rows(train: Shard, val: Shard | None) -> WorkerRows:
    if val is None:
        empty = np.zeros(0)
        val_rows = HolderRows(np.zeros(0, np.int64), empty, empty, empty)
    else:
        val_rows = HolderRows(val.uid, val.label, val.weight, val.offset)
    return WorkerRows(
        HolderRows(train.uid, train.label, train.weight, train.offset), val_rows, os.getpid()
    )


def handle(posted: Posted, rank: int, trainer: DeepTrainer) -> DeepReply | dict:
    import ray

    command = posted.command
    if isinstance(command, Weights):
        return trainer.weights()
    if not isinstance(command, DeepFit):
        raise TypeError(f"unknown command {command!r}")
    if command.start is not None and trainer.fits != command.start_fits:
        trainer.restore(ray.get(command.start))  # a restarted group: where the fit starts
    summary = None
    if command.refit:
        offsets = ray.get(command.train_offsets[rank])
        summary = trainer.fit(np.asarray(offsets, np.float64))
    return DeepReply(
        train=trainer.score(trainer.train),
        val=trainer.score(trainer.validation),
        state=trainer.state() if rank == 0 and command.refit else None,
        summary=summary,
    )


class DeepService(WorkerService):
    """Driver side of the deep coordinate's worker group (``raymix.coordinates.deep``'s
    ``DeepWorkers``): reads and splits the data, runs the workers, exchanges commands."""

    what = "deep"

    def start(self, plan: DeepPlan) -> None:
        self.open(plan.name, plan.workers > 0, lambda: self.run_group(plan))

    def run_group(self, plan: DeepPlan) -> None:
        """Read and split the rows, then run the worker group until it stops."""
        from raymix.engine.reading import read_deep_dataset, split_rows

        world = max(plan.workers, 1)
        config = {
            "mailbox": self.mailbox,
            "plan": plan,
            "train_refs": split_rows(read_deep_dataset(plan.train, plan.text), world),
            "validation_refs": None,
        }
        if plan.validation is not None:
            config["validation_refs"] = split_rows(
                read_deep_dataset(plan.validation, plan.text), world
            )
        if plan.backend == "horovod" and plan.workers > 0:
            self._run_horovod(plan, config)
        else:
            self._run_tensorflow(plan, config)

    def _run_tensorflow(self, plan: DeepPlan, config: dict) -> None:
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.tensorflow import TensorflowTrainer

        TensorflowTrainer(
            train_loop_per_worker=tensorflow_worker,
            train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=plan.workers, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(
                name=f"raymix-{plan.name}",
                storage_path=tempfile.gettempdir() + "/raymix-train",
                failure_config=FailureConfig(max_failures=plan.max_failures),
            ),
        ).fit()

    def _run_horovod(self, plan: DeepPlan, config: dict) -> None:
        """Horovod workers until they stop; a group that fails is started again (a new
        executor), up to ``max_failures`` times (-1: always), as Ray Train does."""
        import ray

        try:
            from horovod.ray import RayExecutor
        except ImportError:
            raise FitError(
                "backend 'horovod' needs Horovod: run scripts/install_horovod.sh",
                coordinate=plan.name,
            ) from None
        failures = 0
        while True:
            settings = RayExecutor.create_settings(timeout_s=120)
            executor = RayExecutor(settings, num_workers=plan.workers, cpus_per_worker=1)
            executor.start()
            try:
                pending = executor.run_remote(horovod_worker, args=[config])
                while pending:  # the first worker to fail, not the first in rank order
                    done, pending = ray.wait(pending, num_returns=1)
                    ray.get(done)
                return
            except Exception:
                failures += 1
                if 0 <= plan.max_failures < failures:
                    raise
            finally:
                executor.shutdown()
