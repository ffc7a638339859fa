"""Driver checkpoints: the state after every coordinate update, for ``raymix fit --resume``.

``<output>/checkpoint/`` holds ``scores.npz`` (every coordinate's per-row scores on both
splits, in the global uid order), ``models/<coordinate>/`` (each coordinate's current
model: Avro, or a random effect's Arrow tables, ~6x faster to write) and
``state.json`` (the steps done so far), written in that order and each atomically, so
``state.json`` only ever names a step whose scores and models are on disk. Resuming
rebuilds the coordinates with these models as warm starts and the score vectors as they
were, so the run ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from raymix.descent import DescentState, Step
from raymix.errors import RecipeError
from raymix.files import atomic_path, write_json

DIRECTORY = "checkpoint"


class Checkpoint:
    def __init__(self, output: Path):
        self.root = Path(output) / DIRECTORY

    @property
    def models(self) -> Path:
        return self.root / "models"

    def save(self, state: DescentState, coordinates, step: Step) -> None:
        arrays = {}
        for prefix, split in (("train", state.train), ("validation", state.validation)):
            for name, scores in split.scores.items():
                arrays[f"{prefix}/{name}"] = scores
            arrays[f"{prefix}/__uid__"] = split.index.uid
        with atomic_path(self.root / "scores.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        coordinate = next(c for c in coordinates if c.name == step.coordinate)
        target = self.models / coordinate.name
        staging = self.models / f".{coordinate.name}.new"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        coordinate.write_models(staging, checkpoint=True)  # read back once, if ever
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        write_json(
            self.root / "state.json",
            {
                "completed": [step.pass_index, _index_of(coordinates, step.coordinate)],
                "best_pass": state.best_pass,
                "steps": [asdict(s) for s in state.steps],
            },
        )

    def discard(self) -> None:
        """Remove the checkpoint once the run's outputs are complete."""
        shutil.rmtree(self.root, ignore_errors=True)

    def exists(self) -> bool:
        return (self.root / "state.json").is_file()

    def load(self) -> dict:
        if not self.exists():
            raise RecipeError(f"nothing to resume: no {self.root / 'state.json'}")
        return json.loads((self.root / "state.json").read_text())

    def restore(self, state: DescentState) -> tuple[int, int]:
        """Put the saved scores and steps into ``state``; return where to continue."""
        saved = self.load()
        with np.load(self.root / "scores.npz") as arrays:
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

    def model_dir(self, name: str) -> Path | None:
        path = self.models / name
        return path if path.is_dir() and any(path.iterdir()) else None


def _index_of(coordinates, name: str) -> int:
    return next(k for k, c in enumerate(coordinates) if c.name == name)
