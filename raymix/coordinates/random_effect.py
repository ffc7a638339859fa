"""The random-effect coordinate: per-entity GLMs on a pool of bucket actors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raymix.coordinates.base import HolderRows, Outcome, RowIndex, gather, scatter
from raymix.data.source import Source
from raymix.recipe.spec import RandomEffect


class RandomEffectCoordinate:
    kind = "random_effect"

    def __init__(
        self,
        spec: RandomEffect,
        train: Source,
        validation: Source | None,
        names: list[tuple[str, str]] | None,
        *,
        pool,
        seed: int,
    ):
        self.spec, self.name, self.names = spec, spec.name, names
        self.train_source, self.val_source = train, validation
        self.pool, self.seed = pool, seed
        self._loads: list = []
        self._train_pos: list[np.ndarray] = []
        self._val_pos: list[np.ndarray] = []
        self._uids: tuple[list, list] = ([], [])
        self._sizes = (0, 0)
        self._auto_l2: float | None = None  # the last estimate of l2="auto"

    def start(self) -> None:
        self._loads = self.pool.load(
            self.spec, self.seed, self.train_source, self.val_source, self.names
        )

    def holders(self) -> tuple[list[HolderRows], list[HolderRows]]:
        import ray

        loaded = ray.get(self._loads)
        train, val = [], []
        offset = 0  # global entity codes for per-entity metrics: actors' local codes shifted
        for (t_uid, t_label, t_weight, t_off), (v_uid, v_label, v_off, v_codes), n_val in loaded:
            train.append(HolderRows(t_uid, t_label, t_weight, t_off))
            val.append(HolderRows(v_uid, v_label, np.ones(v_uid.size), v_off, v_codes + offset))
            offset += n_val
        self._uids = ([h.uid for h in train], [h.uid for h in val])
        if self.spec.warm_start:
            self.pool.warm_start(self.name)
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
        import ray

        pieces = [ray.put(piece) for piece in gather(train_offsets, self._train_pos)]
        l2, em_iterations = None, 0
        if refit and self.spec.l2 == "auto":
            l2, em_iterations = self._estimate_l2(pieces)
        results = self.pool.call("fit", self.name, [(piece, refit, l2) for piece in pieces])
        train = scatter([r[0] for r in results], self._train_pos, self._sizes[0])
        val = scatter([r[1] for r in results], self._val_pos, self._sizes[1])
        info = {}
        if refit:
            infos = [r[2] for r in results]
            info = {
                "entities": sum(i["entities"] for i in infos),
                "not_converged": sum(i["not_converged"] for i in infos),
                "solver_seconds": max(i["solver_seconds"] for i in infos),
                "actor_rebuilds": self.pool.rebuilds,
            }
            if l2 is not None:
                info.update(l2=l2, em_iterations=em_iterations)
        return Outcome(train=train, validation=val, info=info)

    def _estimate_l2(self, pieces) -> tuple[float, int]:
        """``l2="auto"``: the random-effect variance by EM (see variance_components), from
        the last estimate (1.0 at first); returns (l2, EM steps)."""
        from raymix.solvers.variance_components import next_l2, solve_l2

        def em_step(l2: float) -> float:
            results = self.pool.call("fit", self.name, [(p, True, l2, True) for p in pieces])
            return next_l2([r[2]["prior_moments"] for r in results], l2)

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
        directory.mkdir(parents=True, exist_ok=True)
        if checkpoint:
            args = [(str(directory), part) for part in range(len(self.pool))]
            written = self.pool.call("save_models", self.name, args)
        else:
            args = [(str(directory), self.names)] * len(self.pool)
            written = self.pool.call("write_models", self.name, args)
        return sorted(Path(p) for paths in written for p in paths)

    def snapshot(self):
        return list(self.pool.models.get(self.name, []))

    def restore(self, saved) -> None:
        if saved:
            self.pool.call("set_models", self.name, [(ref,) for ref in saved])
            self.pool.models[self.name] = list(saved)

    def close(self) -> None:
        self.pool.call("drop", self.name, [()] * len(self.pool))
        self.pool.forget(self.name)
