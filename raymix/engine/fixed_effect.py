"""The fixed effect on a Ray Train ``TensorflowTrainer`` whose workers stay up across passes.

Each worker reads its shard once (``get_dataset_shard``), keeps it resident as a
:class:`~raymix.solvers.glm.GLMLoss`, and then serves commands from a :class:`Mailbox`:
``fit`` with new offsets (the loss and gradient are all-reduced and every worker steps the
same L-BFGS in lockstep), or ``stop``. Only offsets and scores (a float per row) move.

``workers=0`` runs the very same function in-process (Ray Train's local mode: no worker
group to start, and no TensorFlow import, see :func:`_trainer_class`); ``workers=N`` starts N
workers.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass

import numpy as np

from raymix.data.source import Source
from raymix.errors import FitError, RaymixError
from raymix.recipe.spec import FixedEffect

POLL_SECONDS = 2.0


SAVE_EVERY = 5  # function evaluations between saves of the L-BFGS iterate


@dataclass
class WorkerRows:
    """What a worker reports after loading: its rows' uids, labels, weights and offsets."""

    train_uid: np.ndarray
    train_label: np.ndarray
    train_weight: np.ndarray
    train_offset: np.ndarray
    val_uid: np.ndarray
    val_label: np.ndarray
    val_offset: np.ndarray
    pid: int = 0


def fixed_effect_worker(config: dict) -> None:
    """Ray Train training function: load the shard, then serve mailbox commands until stop."""
    import os

    import ray
    import ray.train

    from raymix.engine.collective import make_allreduce
    from raymix.engine.reading import rows_of_shard
    from raymix.solvers.glm import ColumnStats, GLMLoss

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    mailbox = config["mailbox"]
    spec: FixedEffect = config["spec"]
    token = 0
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
        allreduce = make_allreduce(world)
        stats = ColumnStats.from_array(allreduce(loss.column_stats().to_array()), loss.n_params)
        # a number every rank of this worker group agrees on: tells restarted groups apart
        token = int(allreduce(np.array([float(np.random.default_rng().integers(1 << 40))]))[0])
    except RaymixError as exc:
        mailbox.call("reply", "load", token, rank, world, exc)
        return
    empty = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    v_uid, v_label, v_offset = (val.uid, val.label, val.offset) if val is not None else empty
    rows = WorkerRows(
        train.uid, train.label, train.weight, train.offset, v_uid, v_label, v_offset, os.getpid()
    )
    mailbox.call("reply", "load", token, rank, world, rows)
    worker = _Worker(spec, rank, mailbox, loss, stats, train, val, allreduce)
    done = "load"
    while True:
        command = mailbox.call("next", done)
        if command["kind"] == "stop":
            return
        try:
            reply = worker.fit(command)
        except RaymixError as exc:
            reply = exc
        mailbox.call("reply", command["id"], token, rank, world, reply)
        done = command["id"]


class _Worker:
    """One worker's resident shard and the fit it runs in lockstep with the others."""

    def __init__(self, spec: FixedEffect, rank, mailbox, loss, stats, train, val, allreduce):
        self.spec, self.rank, self.mailbox = spec, rank, mailbox
        self.loss, self.stats, self.train, self.val, self.allreduce = (
            loss,
            stats,
            train,
            val,
            allreduce,
        )
        self._positions: dict = {}

    def positions(self, index_ref, uid: np.ndarray) -> np.ndarray:
        """Where this worker's rows sit in the global order (the driver's sorted uids)."""
        import ray

        key = index_ref.hex()
        if key not in self._positions:
            self._positions[key] = np.searchsorted(ray.get(index_ref), uid)
        return self._positions[key]

    def fit(self, command: dict) -> dict:
        import ray

        from raymix.solvers.glm import LBFGSOptions, coefficient_variances, minimize_glm, threshold

        self.spec = command.get("spec", self.spec)  # the driver may swap hyper-parameters
        spec, loss, allreduce = self.spec, self.loss, self.allreduce
        train_pos = self.positions(command["train_index"], self.train.uid)
        loss.set_offsets(ray.get(command["train_offsets"])[train_pos])
        theta = command.get("theta")
        info: dict = {}
        if command["fit"]:
            saved = self.mailbox.call("saved_progress", command["id"])
            resumed = saved is not None
            if resumed:  # a restarted worker group: go on from the last saved iterate
                theta = saved
            value_grad = self._value_grad(command["id"])
            solver = spec.solver
            started = time.perf_counter()
            fit = minimize_glm(
                value_grad,
                loss.n_params,
                l2=spec.l2,
                l1=spec.l1,
                fit_intercept=spec.fit_intercept,
                regularize_intercept=spec.regularize_intercept,
                stats=self.stats,
                precondition=solver.precondition,
                x0=theta,
                options=LBFGSOptions(
                    max_iter=solver.max_iter,
                    history=solver.history,
                    tolerance=solver.tolerance,
                    gtol=solver.gtol,
                ),
            )
            theta = self._join(fit.coef, fit.intercept)
            polished = 0
            if (
                solver.polish
                and fit.converged
                and spec.l1 == 0
                and 0 < loss.n_params <= solver.polish_max_params
            ):
                theta, polished = self._polish(theta, value_grad)
            if spec.sparsity_threshold > 0:
                theta = self._join(*threshold(*self._split(theta), spec.sparsity_threshold))
            info = {
                "iterations": fit.n_iter,
                "converged": bool(fit.converged),
                "objective": float(fit.objective),
                "message": fit.message,
                "newton_steps": polished,
                "resumed_from_saved_iterate": resumed,
                "solver_seconds": time.perf_counter() - started,
            }
            if spec.variance:
                n = loss.n_params
                hessian = allreduce(loss.hessian(theta).ravel()).reshape(n, n)
                info["variances"] = coefficient_variances(
                    hessian,
                    spec.l2,
                    fit_intercept=spec.fit_intercept,
                    regularize_intercept=spec.regularize_intercept,
                    mode=spec.variance,
                )
        reply = {
            "theta": theta if self.rank == 0 else None,
            "train": _linear_scores(self.train.X, theta, spec.fit_intercept),
            "train_pos": train_pos,
            **info,
        }
        if self.val is not None:
            reply["val"] = _linear_scores(self.val.X, theta, spec.fit_intercept)
            reply["val_pos"] = self.positions(command["val_index"], self.val.uid)
        return reply

    def _value_grad(self, command_id):
        calls = [0]

        def value_grad(x):
            value, grad = self.loss.value_grad(x)
            reduced = self.allreduce(np.concatenate([[value], grad]))
            calls[0] += 1
            if self.rank == 0 and calls[0] % SAVE_EVERY == 0:
                self.mailbox.send("save_progress", command_id, np.array(x))
            return float(reduced[0]), reduced[1:]

        return value_grad

    def _polish(self, theta, value_grad):
        from raymix.solvers.polish import newton_polish

        spec, n = self.spec, self.loss.n_params
        penalized = np.ones(n)
        if spec.fit_intercept and not spec.regularize_intercept:
            penalized[-1] = 0.0
        return newton_polish(
            lambda x: value_grad(x)[1],
            lambda x: self.allreduce(self.loss.hessian(x).ravel()).reshape(n, n),
            theta,
            l2=spec.l2,
            penalized=penalized,
        )

    def _join(self, coef, intercept) -> np.ndarray:
        from raymix.solvers.layout import glm_theta

        return glm_theta(coef, intercept, self.spec.fit_intercept)

    def _split(self, theta):
        from raymix.solvers.layout import glm_coef_intercept

        return glm_coef_intercept(theta, self.spec.fit_intercept)


def _linear_scores(X, theta: np.ndarray, fit_intercept: bool) -> np.ndarray:
    from raymix.solvers.glm import linear_predictor

    if fit_intercept:
        return linear_predictor(X, theta[:-1], float(theta[-1]))
    return linear_predictor(X, theta)


def _all_rows_data_config():
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


def _trainer_class(workers: int):
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


class FixedEffectService:
    """Driver side: runs the trainer in a background thread and exchanges commands with it."""

    def __init__(self, spec: FixedEffect, train: Source, validation: Source | None, name: str):
        self.spec, self.train, self.validation, self.name = spec, train, validation, name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._next_id = 0
        self.mailbox = None

    def start(self) -> None:
        from raymix.engine.mailbox import open_mailbox

        self.mailbox = open_mailbox(remote=self.spec.workers > 0)
        self._thread = threading.Thread(
            target=self._run, name=f"raymix-fe-{self.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            from ray.train import FailureConfig, RunConfig, ScalingConfig

            from raymix.engine.reading import read_dataset

            AllRowsDataConfig = _all_rows_data_config()  # noqa: N806 - a class

            # with N workers, enough blocks for every worker to get rows, whatever the files
            blocks = 4 * self.spec.workers if self.spec.workers > 1 else 1
            datasets = {"train": read_dataset(self.train, blocks)}
            if self.validation is not None:
                datasets["validation"] = read_dataset(self.validation, blocks)
            spec = self.spec
            workers = spec.workers if spec.min_workers is None else (spec.min_workers, spec.workers)
            trainer = _trainer_class(spec.workers)(
                train_loop_per_worker=fixed_effect_worker,
                train_loop_config={
                    "mailbox": self.mailbox,
                    "spec": spec,
                    "train": self.train,
                    "validation": self.validation,
                },
                scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
                datasets=datasets,
                dataset_config=AllRowsDataConfig(datasets_to_split="all"),
                run_config=RunConfig(
                    name=f"raymix-{self.name}",
                    storage_path=tempfile.gettempdir() + "/raymix-train",
                    failure_config=FailureConfig(max_failures=spec.max_failures),
                ),
            )
            trainer.fit()
        except BaseException as exc:  # surfaced by request()
            self._error = exc

    def loaded(self) -> list:
        """Every worker's :class:`WorkerRows` (the first worker group to finish loading)."""
        return self._collect("load")

    def request(self, command: dict) -> list:
        """Post ``command`` and return every rank's reply (re-run by a restarted group)."""
        self._next_id += 1
        command = {**command, "id": self._next_id}
        self.mailbox.call("post", command)
        return self._collect(self._next_id)

    def restarts(self) -> int:
        return self.mailbox.call("restarts")

    def _collect(self, command_id) -> list:
        while True:
            replies = self.mailbox.call("collect", command_id, POLL_SECONDS)
            if replies is not None:
                break
            if self._error is not None or not self._thread.is_alive():
                if isinstance(self._error, RaymixError):
                    raise self._error
                raise FitError(
                    f"fixed-effect training stopped: {self._error!r}", coordinate=self.name
                )
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    def stop(self) -> None:
        if self._thread is None or self.mailbox is None:
            return
        if self._thread.is_alive():
            self.mailbox.call("post", {"kind": "stop", "id": "stop"})
            self._thread.join(timeout=60)
        self._thread = None
