"""The fixed-effect coordinate: one global GLM, trained by :mod:`raymix.engine.fixed_effect`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raymix.coordinates.base import HolderRows, Outcome, RowIndex, scatter
from raymix.data.avro.models import coefficients_by_index, model_record, read_models, write_models
from raymix.data.source import Source
from raymix.errors import DataError
from raymix.recipe.spec import FixedEffect


class FixedEffectCoordinate:
    kind = "fixed_effect"

    def __init__(
        self,
        spec: FixedEffect,
        train: Source,
        validation: Source | None,
        names: list[tuple[str, str]] | None,
    ):
        from raymix.engine.fixed_effect import FixedEffectService

        self.spec, self.name, self.names = spec, spec.name, names
        self.dim = train.schema.dim
        self.service = FixedEffectService(spec, train, validation, spec.name)
        self.theta: np.ndarray | None = None
        self.variances: np.ndarray | None = None
        self._index: tuple = ()
        self._sizes = (0, 0)
        self.worker_pids: list[int] = []
        self._uids: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self.rows_per_worker: list[int] = []
        if spec.warm_start:
            self.theta = self._load_warm_start(spec.warm_start)

    def start(self) -> None:
        self.service.start()

    def holders(self) -> tuple[list[HolderRows], list[HolderRows]]:
        replies = self.service.loaded()
        train = [
            HolderRows(r.train_uid, r.train_label, r.train_weight, r.train_offset) for r in replies
        ]
        val = [
            HolderRows(r.val_uid, r.val_label, np.ones(r.val_uid.size), r.val_offset)
            for r in replies
        ]
        self.rows_per_worker = [h.uid.size for h in train]
        self.worker_pids = [r.pid for r in replies]
        self._uids = ([h.uid for h in train], [h.uid for h in val])
        return train, val

    def bind(self, train: RowIndex, validation: RowIndex) -> None:
        import ray

        who = f"coordinate '{self.name}'"
        train.check_covered([train.positions(u, who) for u in self._uids[0]], who)
        validation.check_covered([validation.positions(u, who) for u in self._uids[1]], who)
        self._index = (ray.put(train.uid), ray.put(validation.uid))
        self._sizes = (len(train), len(validation))

    def fit(
        self, train_offsets: np.ndarray, val_offsets: np.ndarray, refit: bool = True
    ) -> Outcome:
        import ray

        replies = self.service.request(
            {
                "kind": "fit",
                "fit": refit,
                "train_offsets": ray.put(train_offsets),
                "train_index": self._index[0],
                "val_index": self._index[1],
                "theta": self.theta,
                "spec": self.spec,
            }
        )
        if refit:
            self.theta = replies[0]["theta"]
            self.variances = replies[0].get("variances")
        train = scatter(
            [r["train"] for r in replies], [r["train_pos"] for r in replies], self._sizes[0]
        )
        val = np.zeros(self._sizes[1])
        if self._sizes[1]:
            val = scatter(
                [r["val"] for r in replies], [r["val_pos"] for r in replies], self._sizes[1]
            )
        skip = ("theta", "train", "val", "train_pos", "val_pos", "variances")
        info = {k: v for k, v in replies[0].items() if k not in skip}
        info["rows_per_worker"] = [r["train_pos"].size for r in replies]
        info["worker_restarts"] = self.service.restarts()
        return Outcome(train=train, validation=val, info=info)

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
        record = model_record(
            "global model",
            intercept if self.spec.fit_intercept else None,
            nonzero,
            coef[nonzero],
            self.names,
            self.spec.task,
            variances,
        )
        return [write_models(Path(directory) / "part-00000.avro", [record])]

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
        coef = np.zeros(self.dim)
        if index.size and index.max() >= self.dim:
            raise DataError(
                f"model feature index {index.max()} outside the bag (dim {self.dim})", path=path
            )
        coef[index] = value
        return np.concatenate([coef, [intercept]]) if self.spec.fit_intercept else coef
