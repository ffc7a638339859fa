"""Driver checkpoints: the state after every coordinate update, for ``raymix fit --resume``.

``<output>/checkpoint/`` holds ``scores.npz`` (every coordinate's per-row scores on both
splits, in the global uid order), ``models/<coordinate>/`` (each coordinate's current
model: Avro, or a random effect's Arrow tables, ~6x faster to write) and
``state.json`` (the steps done so far), written in that order and each atomically, so
``state.json`` only ever names a step whose scores and models are on disk: it is the
checkpoint's completion marker. Resuming rebuilds the coordinates with these models as warm
starts and the score vectors as they were, so the run ends exactly as an uninterrupted one.

In an object store, which cannot rename a directory, a coordinate's models go to a new
prefix per step (``models/<coordinate>.<pass>-<k>/``) that ``state.json`` names; the one it
replaces is deleted after ``state.json`` is written.
"""

from __future__ import annotations

import io
import json
import shutil
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
        self._dirs: dict[str, str] = {}  # coordinate -> its models' directory (object store)

    @property
    def models(self) -> Path | storage.Location:
        return self.root / "models"

    def save(self, state: DescentState, coordinates, step: Step) -> None:
        arrays: dict[str, Any] = {}  # savez names them; Any: its keyword allow_pickle is a bool
        for prefix, split in (("train", state.train), ("validation", state.validation)):
            for name, scores in split.scores.items():
                arrays[f"{prefix}/{name}"] = scores
            arrays[f"{prefix}/__uid__"] = split.index.uid
        with storage.staged(self.root / "scores.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        coordinate = next(c for c in coordinates if c.name == step.coordinate)
        index = _index_of(coordinates, step.coordinate)
        replaced = None
        if self.remote:  # no rename: a new prefix per step, named by state.json
            replaced = self._dirs.get(coordinate.name)
            self._dirs[coordinate.name] = f"{coordinate.name}.{step.pass_index}-{index}"
            target = self.models / self._dirs[coordinate.name]
            storage.delete_tree(target)
            coordinate.write_models(target, checkpoint=True)
        else:
            target = Path(self.models) / coordinate.name
            staging = Path(self.models) / f".{coordinate.name}.new"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            coordinate.write_models(staging, checkpoint=True)  # read back once, if ever
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        saved = {
            "completed": [step.pass_index, index],
            "best_pass": state.best_pass,
            "steps": [asdict(s) for s in state.steps],
        }
        if self.remote:
            saved["models"] = dict(self._dirs)
        storage.write_json(self.root / "state.json", saved)
        if replaced is not None and replaced != self._dirs[coordinate.name]:
            storage.delete_tree(self.models / replaced)

    def discard(self) -> None:
        """Remove the checkpoint once the run's outputs are complete."""
        storage.delete_tree(self.root)

    def exists(self) -> bool:
        return storage.is_file(self.root / "state.json")

    def load(self) -> dict:
        if not self.exists():
            raise RecipeError(f"nothing to resume: no {self.root / 'state.json'}")
        saved = json.loads(storage.read_text(self.root / "state.json"))
        self._dirs = dict(saved.get("models", {}))
        return saved

    def restore(self, state: DescentState) -> tuple[int, int]:
        """Put the saved scores and steps into ``state``; return where to continue."""
        saved = self.load()
        scores = self.root / "scores.npz"
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
        if self.remote:
            if not self._dirs and self.exists():
                self.load()
            if name not in self._dirs:
                return None
            path = self.models / self._dirs[name]
            return path if storage.list_dir(path) else None
        local = Path(self.models) / name
        return local if local.is_dir() and any(local.iterdir()) else None


def _index_of(coordinates, name: str) -> int:
    return next(k for k, c in enumerate(coordinates) if c.name == name)
