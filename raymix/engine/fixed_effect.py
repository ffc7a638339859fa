"""The fixed effect on a Ray Train ``TensorflowTrainer`` whose workers stay up across passes.

Each worker reads its shard once (``get_dataset_shard``), keeps it resident as a
:class:`~raymix.solvers.glm.GLMLoss`, and then serves commands from a :class:`Mailbox`:
``fit`` with new offsets (the loss and gradient are all-reduced and every worker steps the
same L-BFGS in lockstep), or ``stop``. Only offsets and scores (a float per row) move.

``workers=0`` runs the very same function in-process (Ray Train's local mode: no worker
group to start); ``workers=N`` starts N workers.
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


@dataclass
class WorkerRows:
    """What a worker reports after loading: its rows' uids, labels and weights."""

    train_uid: np.ndarray
    train_label: np.ndarray
    train_weight: np.ndarray
    train_offset: np.ndarray
    val_uid: np.ndarray
    val_label: np.ndarray
    val_offset: np.ndarray


def fixed_effect_worker(config: dict) -> None:
    """Ray Train training function: load the shard, then serve mailbox commands."""
    import ray
    import ray.train

    from raymix.engine.collective import make_allreduce
    from raymix.engine.reading import rows_of_shard
    from raymix.solvers.glm import ColumnStats, GLMLoss

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    mailbox = config["mailbox"]
    spec: FixedEffect = config["spec"]
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
    except RaymixError as exc:
        ray.get(mailbox.reply.remote(rank, exc))
        return
    ray.get(
        mailbox.reply.remote(
            rank,
            WorkerRows(
                train.uid,
                train.label,
                train.weight,
                train.offset,
                val.uid if val is not None else np.zeros(0, np.int64),
                val.label if val is not None else np.zeros(0),
                val.offset if val is not None else np.zeros(0),
            ),
        )
    )
    while True:
        command = ray.get(mailbox.next.remote(rank))
        if command["kind"] == "stop":
            return
        try:
            reply = _serve_fit(command, rank, spec, loss, stats, train, val, allreduce)
        except RaymixError as exc:
            reply = exc
        ray.get(mailbox.reply.remote(rank, reply))


def _serve_fit(command, rank, spec: FixedEffect, loss, stats, train, val, allreduce) -> dict:
    import ray

    from raymix.solvers.glm import LBFGSOptions, coefficient_variances, minimize_glm, threshold
    from raymix.solvers.polish import newton_polish

    loss.set_offsets(ray.get(command["train_offsets"][rank]))
    theta = command.get("theta")
    info = {}
    if command["fit"]:

        def value_grad(x):
            value, grad = loss.value_grad(x)
            reduced = allreduce(np.concatenate([[value], grad]))
            return float(reduced[0]), reduced[1:]

        solver = spec.solver
        started = time.perf_counter()
        fit = minimize_glm(
            value_grad,
            loss.n_params,
            l2=spec.l2,
            l1=spec.l1,
            fit_intercept=spec.fit_intercept,
            regularize_intercept=spec.regularize_intercept,
            stats=stats,
            precondition=solver.precondition,
            x0=theta,
            options=LBFGSOptions(
                max_iter=solver.max_iter,
                history=solver.history,
                tolerance=solver.tolerance,
                gtol=solver.gtol,
            ),
        )
        coef, intercept = fit.coef, fit.intercept
        polished = 0
        if (
            solver.polish
            and fit.converged
            and spec.l1 == 0
            and 0 < loss.n_params <= solver.polish_max_params
        ):
            theta0 = np.concatenate([coef, [intercept]]) if spec.fit_intercept else np.asarray(coef)
            penalized = np.ones(loss.n_params)
            if spec.fit_intercept and not spec.regularize_intercept:
                penalized[-1] = 0.0
            n = loss.n_params
            theta0, polished = newton_polish(
                lambda x: value_grad(x)[1],
                lambda x: allreduce(loss.hessian(x).ravel()).reshape(n, n),
                theta0,
                l2=spec.l2,
                penalized=penalized,
            )
            coef, intercept = (
                (theta0[:-1], float(theta0[-1])) if spec.fit_intercept else (theta0, 0.0)
            )
        if spec.sparsity_threshold > 0:
            coef, intercept = threshold(coef, intercept, spec.sparsity_threshold)
        theta = np.concatenate([coef, [intercept]]) if spec.fit_intercept else np.asarray(coef)
        info = {
            "iterations": fit.n_iter,
            "converged": bool(fit.converged),
            "objective": float(fit.objective),
            "message": fit.message,
            "newton_steps": polished,
            "solver_seconds": time.perf_counter() - started,
        }
        if spec.variance:
            hessian = allreduce(loss.hessian(theta).ravel()).reshape(loss.n_params, loss.n_params)
            info["variances"] = coefficient_variances(
                hessian,
                spec.l2,
                fit_intercept=spec.fit_intercept,
                regularize_intercept=spec.regularize_intercept,
                mode=spec.variance,
            )
    train_scores = _linear_scores(train.X, theta, spec.fit_intercept)
    val_scores = (
        _linear_scores(val.X, theta, spec.fit_intercept) if val is not None else np.zeros(0)
    )
    return {"theta": theta if rank == 0 else None, "train": train_scores, "val": val_scores, **info}


def _linear_scores(X, theta: np.ndarray, fit_intercept: bool) -> np.ndarray:
    if fit_intercept:
        return np.asarray(X @ theta[:-1], dtype=np.float64) + theta[-1]
    return np.asarray(X @ theta, dtype=np.float64)


class FixedEffectService:
    """Driver side: runs the trainer in a background thread and exchanges commands with it."""

    def __init__(self, spec: FixedEffect, train: Source, validation: Source | None, name: str):
        self.spec, self.train, self.validation, self.name = spec, train, validation, name
        self.world = max(spec.workers, 1)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.mailbox = None

    def start(self) -> None:
        from raymix.engine.mailbox import Mailbox

        self.mailbox = Mailbox.options(num_cpus=0).remote(self.world)
        self._thread = threading.Thread(
            target=self._run, name=f"raymix-fe-{self.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            from ray.train import DataConfig, RunConfig, ScalingConfig
            from ray.train.tensorflow import TensorflowTrainer

            from raymix.engine.reading import read_dataset

            datasets = {"train": read_dataset(self.train)}
            if self.validation is not None:
                datasets["validation"] = read_dataset(self.validation)
            trainer = TensorflowTrainer(
                train_loop_per_worker=fixed_effect_worker,
                train_loop_config={
                    "mailbox": self.mailbox,
                    "spec": self.spec,
                    "train": self.train,
                    "validation": self.validation,
                },
                scaling_config=ScalingConfig(
                    num_workers=self.spec.workers, resources_per_worker={"CPU": 1}
                ),
                datasets=datasets,
                dataset_config=DataConfig(datasets_to_split="all"),
                run_config=RunConfig(
                    name=f"raymix-{self.name}",
                    storage_path=tempfile.gettempdir() + "/raymix-train",
                ),
            )
            trainer.fit()
        except BaseException as exc:  # surfaced by collect()
            self._error = exc

    def request(self, command: dict | None) -> list:
        """Post ``command`` (None: only wait) and return every rank's reply."""
        import ray

        if command is not None:
            ray.get(self.mailbox.post.remote(command))
        while True:
            replies = ray.get(self.mailbox.collect.remote(POLL_SECONDS))
            if replies is not None:
                break
            if self._error is not None or not self._thread.is_alive():
                raise FitError(
                    f"fixed-effect training stopped: {self._error!r}", coordinate=self.name
                )
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
