"""Scores from a model trained outside raymix, used as a fixed coordinate (GDMix's third mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from raymix import storage
from raymix.coordinates.base import HolderRows, Outcome, RowIndex
from raymix.data.avro.scores import checked_scores, read_scores_avro
from raymix.errors import DataError
from raymix.recipe.spec import ExternalEffect


def read_scores(path: str, score_column: str, uid: str = "uid") -> tuple[np.ndarray, np.ndarray]:
    """(uid, score) from Avro score files or Parquet files (a file or a directory)."""
    if storage.is_uri(path):
        files = storage.walk(path) if storage.is_dir(path) else [storage.normal(path)]
        parquet = [f for f in files if f.endswith(".parquet")]
    else:
        p = Path(path)
        found = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
        parquet = [str(f) for f in found if f.suffix == ".parquet"]
    if not parquet:
        return read_scores_avro(path, uid=uid, score=score_column)
    uids, scores = [], []
    for file in parquet:
        fs, inner = storage.filesystem(file)
        with storage.errors(file, "cannot read"):
            table = pq.read_table(inner, filesystem=fs)
        for name in (uid, score_column):
            if name not in table.column_names:
                raise DataError("missing column", path=str(file), column=name)
        one = checked_scores(
            table.column(uid).to_pylist(),
            table.column(score_column).to_numpy(zero_copy_only=False),
            (uid, score_column),
            str(file),
        )
        uids.append(one[0])
        scores.append(one[1])
    return checked_scores(np.concatenate(uids), np.concatenate(scores), (uid, score_column), path)


class ExternalCoordinate:
    kind = "external"

    def __init__(self, spec: ExternalEffect):
        self.spec, self.name = spec, spec.name
        self._scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._aligned = (np.zeros(0), np.zeros(0))

    def start(self) -> None:
        self._scores["train"] = read_scores(self.spec.train_scores, self.spec.score_column)
        if self.spec.validation_scores:
            self._scores["validation"] = read_scores(
                self.spec.validation_scores, self.spec.score_column
            )

    def holders(self) -> tuple[list[HolderRows], list[HolderRows]]:
        def rows(which):
            uid, _ = self._scores.get(which, (np.zeros(0, np.int64), np.zeros(0)))
            return [HolderRows(uid, np.full(uid.size, np.nan), np.ones(uid.size))]

        return rows("train"), rows("validation")

    def bind(self, train: RowIndex, validation: RowIndex) -> None:
        aligned = []
        for which, index in (("train", train), ("validation", validation)):
            out = np.zeros(len(index))
            if which in self._scores:
                uid, score = self._scores[which]
                path = self.spec.train_scores if which == "train" else self.spec.validation_scores
                try:
                    pos = index.positions(uid, f"coordinate '{self.name}'")
                    if which == "train":
                        index.check_covered([pos], f"coordinate '{self.name}'")
                except DataError as exc:  # the rows differ: name the score files
                    raise exc.with_location(path) from None
                out[pos] = score
            elif len(index) and which == "validation":
                raise DataError(
                    f"coordinate '{self.name}' has no validation_scores but the recipe has validation data"
                )
            aligned.append(out)
        self._aligned = (aligned[0], aligned[1])

    def fit(self, train_offsets, val_offsets, refit: bool = True) -> Outcome:
        return Outcome(train=self._aligned[0], validation=self._aligned[1], info={"external": True})

    def write_models(self, directory: Path, checkpoint: bool = False) -> list[Path]:
        return []

    def snapshot(self):
        return None

    def restore(self, saved) -> None:
        pass

    def close(self) -> None:
        pass
