"""Long-lived data-parallel workers for the deep coordinate, on Ray, with two backends.

* ``tensorflow`` (default): a Ray Train V2 ``TensorflowTrainer``; gradients are summed by
  TensorFlow's collective all-reduce (``MultiWorkerMirroredStrategy``, configured by Ray
  through ``TF_CONFIG``). ``workers=0`` runs the same function in-process (Ray Train's
  local mode, world size 1) whatever the backend.
* ``horovod``: ``horovod.ray.RayExecutor`` starts the workers as Ray actors and Horovod's
  Gloo rendezvous; gradients are summed by ``hvd.DistributedGradientTape``.

Either way each worker builds its collective, loads its shard once (row ranges cut by
:func:`raymix.deep.inputs.split_rows`), reports its rows' uids, and then serves commands
from a :class:`~raymix.deep.mailbox.DeepMailbox` until told to stop (the LR fixed effect's
pattern): ``fit`` (new offsets, train, score), ``weights`` (every rank's weights, for
tests), ``stop``. Only offsets, scores and, from rank 0, the weights cross the wire.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from raymix.errors import FitError, RaymixError

POLL_SECONDS = 2.0


@dataclass
class WorkerRows:
    """What a worker reports after loading: its rows' uids, labels, weights and offsets."""

    train_uid: np.ndarray
    train_label: np.ndarray
    train_weight: np.ndarray
    train_offset: np.ndarray
    val_uid: np.ndarray
    val_label: np.ndarray
    val_weight: np.ndarray
    val_offset: np.ndarray


@dataclass(frozen=True)
class WorkerPlan:
    """Everything a worker needs besides its mailbox and shard references (picklable)."""

    name: str
    arch: object  # raymix.deep.model.Architecture
    train_config: object  # raymix.deep.train.TrainConfig
    train: object  # raymix.data.source.Source
    validation: object  # Source | None
    weights: dict | None  # warm start


def tensorflow_worker(config: dict) -> None:
    """Ray Train training function (backend ``tensorflow``, or in-process)."""
    import ray.train

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()

    def collective():
        from raymix.deep.collective import LocalCollective, TensorflowCollective

        _limit_threads(world)
        return LocalCollective() if world <= 1 else TensorflowCollective(rank, world)

    serve(config, rank, collective)


def horovod_worker(config: dict) -> None:
    """Run by every ``RayExecutor`` worker (backend ``horovod``)."""

    def collective():
        from raymix.deep.collective import HorovodCollective

        _limit_threads(int(os.environ.get("HOROVOD_SIZE", "1")))
        return HorovodCollective()

    serve(config, int(os.environ.get("HOROVOD_RANK", "0")), collective)


def _limit_threads(world: int) -> None:
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


def serve(config: dict, rank: int, make_collective) -> None:
    """Load the shard, then answer mailbox commands until ``stop``."""
    import ray

    from raymix.deep.inputs import load_shard
    from raymix.deep.train import DeepTrainer

    mailbox = config["mailbox"]
    plan: WorkerPlan = config["plan"]
    try:
        collective = make_collective()
        rank = collective.rank
        width = plan.arch.width
        train = load_shard(config["train_refs"][rank], plan.train, width)
        val = None
        if plan.validation is not None:
            val = load_shard(config["validation_refs"][rank], plan.validation, width)
        trainer = DeepTrainer(plan.arch, plan.train_config, collective, train, val, plan.weights)
    except RaymixError as exc:
        ray.get(mailbox.reply.remote(rank, exc))
        return
    empty = np.zeros(0)
    ray.get(
        mailbox.reply.remote(
            rank,
            WorkerRows(
                train.uid,
                train.label,
                train.weight,
                train.offset,
                val.uid if val is not None else np.zeros(0, np.int64),
                val.label if val is not None else empty,
                val.weight if val is not None else empty,
                val.offset if val is not None else empty,
            ),
        )
    )
    while True:
        command = ray.get(mailbox.next.remote(rank))
        kind = command["kind"]
        if kind == "stop":
            return
        try:
            reply = trainer.weights() if kind == "weights" else _fit(command, rank, trainer)
        except RaymixError as exc:
            reply = exc
        ray.get(mailbox.reply.remote(rank, reply))


def _fit(command: dict, rank: int, trainer) -> dict:
    import ray

    if command.get("weights") is not None:
        trainer.set_weights(command["weights"])
    info = {}
    if command["fit"]:
        offsets = ray.get(command["train_offsets"][rank])
        info = trainer.fit(np.asarray(offsets, np.float64), command.get("steps"))
    return {
        "weights": trainer.weights() if rank == 0 and command["fit"] else None,
        "train": trainer.score(trainer.train),
        "val": trainer.score(trainer.validation),
        **info,
    }


class DeepService:
    """Driver side: reads and splits the data, runs the workers, exchanges commands."""

    def __init__(self, plan: WorkerPlan, text, workers: int, backend: str):
        self.plan, self.text = plan, text
        self.workers, self.backend = workers, backend
        self.world = max(workers, 1)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.mailbox = None

    def start(self) -> None:
        from raymix.deep.mailbox import DeepMailbox

        self.mailbox = DeepMailbox.remote(self.world)
        self._thread = threading.Thread(
            target=self._run, name=f"raymix-deep-{self.plan.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            from raymix.deep.inputs import read_deep_dataset, split_rows

            config = {
                "mailbox": self.mailbox,
                "plan": self.plan,
                "train_refs": split_rows(read_deep_dataset(self.plan.train, self.text), self.world),
                "validation_refs": None,
            }
            if self.plan.validation is not None:
                config["validation_refs"] = split_rows(
                    read_deep_dataset(self.plan.validation, self.text), self.world
                )
            if self.backend == "horovod" and self.workers > 0:
                self._run_horovod(config)
            else:
                self._run_tensorflow(config)
        except BaseException as exc:  # surfaced by request()
            self._error = exc

    def _run_tensorflow(self, config: dict) -> None:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.tensorflow import TensorflowTrainer

        TensorflowTrainer(
            train_loop_per_worker=tensorflow_worker,
            train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=self.workers, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(
                name=f"raymix-{self.plan.name}",
                storage_path=tempfile.gettempdir() + "/raymix-train",
            ),
        ).fit()

    def _run_horovod(self, config: dict) -> None:
        import ray

        try:
            from horovod.ray import RayExecutor
        except ImportError:
            raise FitError(
                "backend 'horovod' needs Horovod: run scripts/install_horovod.sh",
                coordinate=self.plan.name,
            ) from None
        settings = RayExecutor.create_settings(timeout_s=120)
        executor = RayExecutor(settings, num_workers=self.workers, cpus_per_worker=1)
        executor.start()
        try:
            ray.get(executor.run_remote(horovod_worker, args=[config]))
        finally:
            executor.shutdown()

    def request(self, command: dict | None) -> list:
        """Post ``command`` (None: only wait) and return every rank's reply."""
        import ray

        if command is not None:
            ray.get(self.mailbox.post.remote(command))
        while True:
            replies = ray.get(self.mailbox.collect.remote(POLL_SECONDS))
            if replies is not None:
                break
            if isinstance(self._error, RaymixError):
                raise self._error
            if self._error is not None or not self._thread.is_alive():
                raise FitError(
                    f"deep training stopped: {self._error!r}", coordinate=self.plan.name
                ) from self._error
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    def stop(self) -> None:
        import ray

        if self._thread is None or self.mailbox is None:
            return
        if self._thread.is_alive():
            ray.get(self.mailbox.post.remote({"kind": "stop"}))
            self._thread.join(timeout=60)
        self._thread = None
