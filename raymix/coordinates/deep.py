"""The deep (wide-and-deep) fixed effect: a DeText-style network trained by :mod:`raymix.deep`.

It chains in coordinate descent like any other coordinate: each ``fit`` trains ``steps``
more mini-batch steps with the offsets it is given (the sum of the other coordinates'
scores) added to the logit, and reports its own logits per row, aligned by uid. Workers,
their shards, the network and the optimizer state stay resident across passes.
``write_models`` exports a TensorFlow SavedModel (see :mod:`raymix.deep.export`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raymix.coordinates.base import HolderRows, Outcome, RowIndex, gather, scatter
from raymix.data.source import Source
from raymix.errors import DataError, RecipeError
from raymix.recipe.spec import SGD, Adam, AdamW, DeepEffect


def check_deep_inputs(spec: DeepEffect, train: Source, validation: Source | None) -> None:
    """Checks made before anything starts: the vocabulary and the text column."""
    from raymix.deep.inputs import check_text_column
    from raymix.deep.text import Vocabulary

    if not Path(spec.vocab).is_file():
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


def optimizer_config(spec: DeepEffect):
    from raymix.deep.optim import OptimizerConfig

    o = spec.optimizer
    common = {
        "learning_rate": spec.learning_rate,
        "schedule": spec.schedule,
        "clip_norm": spec.clip_norm,
    }
    if isinstance(o, AdamW):
        return OptimizerConfig(
            "adamw",
            weight_decay=o.weight_decay,
            beta_1=o.beta_1,
            beta_2=o.beta_2,
            epsilon=o.epsilon,
            bias_correction=o.bias_correction,
            **common,
        )
    if isinstance(o, Adam):
        return OptimizerConfig(
            "adam",
            beta_1=o.beta_1,
            beta_2=o.beta_2,
            epsilon=o.epsilon,
            bias_correction=True,
            **common,
        )
    if isinstance(o, SGD):
        return OptimizerConfig("sgd", momentum=o.momentum, **common)
    raise TypeError(f"unknown optimizer {o!r}")


class DeepCoordinate:
    kind = "deep"

    def __init__(self, spec: DeepEffect, train: Source, validation: Source | None):
        from raymix.deep.inputs import TextInput
        from raymix.deep.model import Architecture
        from raymix.deep.service import DeepService, WorkerPlan
        from raymix.deep.text import Framing, Vocabulary
        from raymix.deep.train import TrainConfig

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
        self.weights: dict[str, np.ndarray] | None = None
        if spec.warm_start:
            self.weights = self._load_warm_start(spec.warm_start)
        plan = WorkerPlan(
            name=spec.name,
            arch=self.arch,
            train_config=TrainConfig(
                steps=spec.steps,
                batch_size=spec.batch_size,
                seed=spec.seed,
                optimizer=optimizer_config(spec),
            ),
            train=train,
            validation=validation,
            weights=self.weights,
        )
        text = TextInput(spec.text_column, self.vocab, self.framing)
        self.service = DeepService(plan, text, spec.workers, spec.backend)
        self._train_pos: list[np.ndarray] = []
        self._val_pos: list[np.ndarray] = []
        self._sizes = (0, 0)
        self._uids: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])

    def start(self) -> None:
        self.service.start()

    def holders(self) -> tuple[list[HolderRows], list[HolderRows]]:
        replies = self.service.request(None)
        train = [
            HolderRows(r.train_uid, r.train_label, r.train_weight, r.train_offset) for r in replies
        ]
        val = [HolderRows(r.val_uid, r.val_label, r.val_weight, r.val_offset) for r in replies]
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
        import ray

        refs = [ray.put(piece) for piece in gather(train_offsets, self._train_pos)]
        replies = self.service.request({"kind": "fit", "fit": refit, "train_offsets": refs})
        if refit:
            self.weights = replies[0]["weights"]
        train = scatter([r["train"] for r in replies], self._train_pos, self._sizes[0])
        val = scatter([r["val"] for r in replies], self._val_pos, self._sizes[1])
        info = {k: v for k, v in replies[0].items() if k not in ("weights", "train", "val")}
        if refit:
            info["workers"] = len(replies)
            info["backend"] = self.spec.backend if self.spec.workers else "in-process"
        return Outcome(train=train, validation=val, info=info)

    def write_models(self, directory: Path, checkpoint: bool = False) -> list[Path]:
        """Export the current network as a SavedModel in ``directory``."""
        from raymix.deep.export import export_saved_model

        if self.weights is None:
            return []
        path = export_saved_model(
            directory,
            self.arch,
            self.weights,
            self.vocab,
            self.framing,
            text_column=self.spec.text_column,
            feature_bag=self.spec.feature_bag,
        )
        return [path]

    def close(self) -> None:
        self.service.stop()

    def _load_warm_start(self, path: str) -> dict[str, np.ndarray]:
        from raymix.deep.export import load_weights

        arch, weights = load_weights(path)
        if arch != self.arch:
            raise DataError(
                f"the saved network {arch} does not match the recipe's {self.arch}", path=path
            )
        return weights
