"""Driver checkpoints: the state after every coordinate update, for ``raymix fit --resume``.

A checkpoint is one generation per step, switched by one pointer. Step ``(pass, k)`` writes
``<output>/checkpoint/scores.<pass>-<k>.npz`` (every coordinate's per-row scores on both
splits, in the global uid order) and ``models/<coordinate>.<pass>-<k>/`` (the updated
coordinate's model: Avro, or a random effect's Arrow tables, ~6x faster to write), both under
names no earlier step used, and only then ``state.json`` (atomically): the steps done, the
scores file and every coordinate's models directory of this generation. An interrupt at any
moment leaves ``state.json`` naming a complete earlier generation (it once named scores
newer than itself, and a resume then differed from the uninterrupted run by ~1e-9). The
files the new ``state.json`` no longer names are deleted after it is written. Local disks
and object stores (which cannot rename a directory) use the same layout.

Resuming rebuilds the coordinates with these models as warm starts and the score vectors as
they were, so the run ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from raymix import storage
from raymix.descent import DescentState, Step
from raymix.errors import RecipeError

DIRECTORY = "checkpoint"


class Checkpoint:
    def __init__(self, output: Path | str):
        where = storage.normal(output)
        self.remote = storage.is_uri(where)
        self.root: Path | storage.Location = (
            storage.Location(where) / DIRECTORY if self.remote else Path(where) / DIRECTORY
        )
        self._dirs: dict[str, str] = {}  # coordinate -> its models' directory, this generation
        self._scores: str | None = None  # this generation's scores file

    @property
    def models(self) -> Path | storage.Location:
        return self.root / "models"

    def save(self, state: DescentState, coordinates, step: Step) -> None:
        arrays: dict[str, Any] = {}  # savez names them; Any: its keyword allow_pickle is a bool
        for prefix, split in (("train", state.train), ("validation", state.validation)):
            for name, scores in split.scores.items():
                arrays[f"{prefix}/{name}"] = scores
            arrays[f"{prefix}/__uid__"] = split.index.uid
        coordinate = next(c for c in coordinates if c.name == step.coordinate)
        index = _index_of(coordinates, step.coordinate)
        generation = f"{step.pass_index}-{index}"
        scores_file = f"scores.{generation}.npz"
        with storage.staged(self.root / scores_file) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        replaced = (self._scores, self._dirs.get(coordinate.name))
        self._dirs[coordinate.name] = f"{coordinate.name}.{generation}"
        target = self.models / self._dirs[coordinate.name]
        storage.delete_tree(target)  # a leftover of an interrupted run, named by nothing
        coordinate.write_models(target, checkpoint=True)  # read back once, if ever
        self._scores = scores_file
        saved = {
            "completed": [step.pass_index, index],
            "best_pass": state.best_pass,
            "steps": [asdict(s) for s in state.steps],
            "scores": scores_file,
            "models": dict(self._dirs),
        }
        storage.write_json(self.root / "state.json", saved)  # the switch to this generation
        old_scores, old_models = replaced
        if old_scores is not None and old_scores != scores_file:
            storage.delete_file(self.root / old_scores)
        if old_models is not None and old_models != self._dirs[coordinate.name]:
            storage.delete_tree(self.models / old_models)

    def discard(self) -> None:
        """Remove the checkpoint once the run's outputs are complete."""
        storage.delete_tree(self.root)

    def exists(self) -> bool:
        return storage.is_file(self.root / "state.json")

    def load(self) -> dict:
        if not self.exists():
            raise RecipeError(f"nothing to resume: no {self.root / 'state.json'}{self._aside()}")
        saved = json.loads(storage.read_text(self.root / "state.json"))
        self._dirs = dict(saved.get("models", {}))
        self._scores = saved.get("scores", "scores.npz")
        return saved

    def _aside(self) -> str:
        """Where an interrupted ``--overwrite`` run's checkpoint went (moved aside with its
        partial outputs when the previous run was put back), if anywhere."""
        if self.remote:
            return ""
        from raymix.lock import leftovers

        found = [p for p in leftovers(Path(self.root).parent) if (p / DIRECTORY).is_dir()]
        if not found:
            return ""
        return (
            f" (the checkpoint of an interrupted run is in '{found[-1]}': move that directory "
            "to the output to resume it)"
        )

    def restore(self, state: DescentState) -> tuple[int, int]:
        """Put the saved scores and steps into ``state``; return where to continue."""
        saved = self.load()
        scores = self.root / str(self._scores)
        source = io.BytesIO(storage.read_bytes(scores)) if self.remote else scores
        with np.load(source) as arrays:
            for prefix, split in (("train", state.train), ("validation", state.validation)):
                if not np.array_equal(arrays[f"{prefix}/__uid__"], split.index.uid):
                    raise RecipeError(
                        f"cannot resume: the {prefix} data changed since the checkpoint"
                    )
                for name in split.scores:
                    split.scores[name] = arrays[f"{prefix}/{name}"].copy()
        state.steps = [Step(**s) for s in saved["steps"]]
        state.best_pass = saved["best_pass"]
        return saved["completed"][0], saved["completed"][1] + 1

    def model_dir(self, name: str) -> Path | storage.Location | None:
        """The directory of coordinate ``name``'s checkpointed models (None: none saved)."""
        if not self._dirs and self.exists():
            self.load()
        if name not in self._dirs:
            return None
        path = self.models / self._dirs[name]
        return path if storage.list_dir(path) else None


def _index_of(coordinates, name: str) -> int:
    return next(k for k, c in enumerate(coordinates) if c.name == name)
