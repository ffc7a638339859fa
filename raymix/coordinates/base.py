"""The protocol every coordinate kind implements, and the uid alignment they share.

Rows live with whoever trains on them (fixed-effect workers, random-effect actors); each of
those *holders* reports its rows' uids once. The descent loop keeps one global order of rows
(sorted uids) per split and, for every coordinate, vectors of per-row scores in that order.
A coordinate receives offsets in the global order and gives back its own scores in the same
order; inside, it scatters and gathers per holder with the positions found at bind time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from raymix.errors import DataError


@dataclass
class HolderRows:
    """The rows one holder owns: uid, label and weight per row (its own order)."""

    uid: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    offset: np.ndarray | None = None  # offsets given in the data (None: zeros)
    entity_code: np.ndarray | None = None  # random effects: a global entity code per row


@dataclass
class WorkerRows:
    """What a worker of a group reports once its shard is resident: its rows of either split,
    and its process id (for tests that kill it)."""

    train: HolderRows
    validation: HolderRows
    pid: int = 0


@dataclass
class Outcome:
    """A coordinate's own scores after a fit (global order) and what happened."""

    train: np.ndarray
    validation: np.ndarray
    info: dict = field(default_factory=dict)


class Coordinate(Protocol):
    name: str
    kind: str

    def start(self) -> None:
        """Begin reading data (asynchronously where possible)."""

    def holders(self) -> tuple[list[HolderRows], list[HolderRows]]:
        """Wait for the data and report (train, validation) rows of every holder."""

    def bind(self, train: RowIndex, validation: RowIndex) -> None:
        """Learn where each holder's rows sit in the global order."""

    def fit(
        self, train_offsets: np.ndarray, val_offsets: np.ndarray, refit: bool = True
    ) -> Outcome:
        """Fit with these offsets (or only score if ``refit`` is False) and return own scores."""

    def write_models(self, directory: Path, checkpoint: bool = False) -> list[Path]:
        """Write the current model(s) under ``directory``: Avro (a deep effect: a
        SavedModel), or with ``checkpoint`` the fastest files this coordinate reads back as a
        warm start (a random effect: Arrow tables, see ``raymix.data.model_table``)."""

    def snapshot(self):
        """The current model(s), to be put back by :meth:`restore` (keep the best pass)."""

    def restore(self, saved) -> None:
        """Put back models taken by :meth:`snapshot`."""

    def close(self) -> None:
        """Release workers and actors."""


class InterceptShift(Protocol):
    """A coordinate whose intercepts can move to or from a fixed effect's free intercept
    without changing a training prediction (:func:`raymix.descent.recenter`)."""

    name: str

    def intercept_mean(self) -> float | None:
        """How far its penalized intercepts' mean is from 0 when moving it leaves every
        training prediction unchanged; None when it cannot be moved."""

    def shift_intercepts(self, by: float, train_offsets: np.ndarray, val_offsets: np.ndarray) -> Outcome:  # fmt: skip
        """Add ``by`` to its intercepts and return its new scores (the offsets: the other
        coordinates' scores, for a coordinate that scores through its fit)."""


class RowIndex:
    """The global order of a split's rows: their uids, sorted."""

    def __init__(self, uids: list[np.ndarray], what: str, who: str | None = None):
        allu = np.concatenate(uids) if uids else np.zeros(0, np.int64)
        self.uid = np.sort(allu, kind="stable")
        if self.uid.size > 1:
            repeats = np.flatnonzero(self.uid[1:] == self.uid[:-1])
            if repeats.size:
                # the readers catch a uid repeated within a file; this one is in two files
                of = f" of {who}" if who else ""
                raise DataError(
                    f"duplicate uid {int(self.uid[repeats[0]])} in the {what} data{of} "
                    "(in two files, or two shards of one): every row needs its own uid",
                    column="uid",
                )
        self.what = what
        # unique and sorted: uids first..first+n-1 (a row counter, GDMix's uid) are contiguous
        self._contiguous = (
            self.uid.size > 0
            and np.issubdtype(self.uid.dtype, np.integer)
            and int(self.uid[-1]) - int(self.uid[0]) == self.uid.size - 1
        )

    def __len__(self) -> int:
        return self.uid.size

    def positions(self, uid: np.ndarray, who: str) -> np.ndarray:
        """Positions of ``uid`` in the global order; every uid must be known."""
        uid = np.asarray(uid)
        n = self.uid.size
        if self._contiguous and np.issubdtype(uid.dtype, np.integer):
            pos = uid.astype(np.int64) - int(self.uid[0])  # a uid's position is its offset
            missing = np.flatnonzero((pos < 0) | (pos >= n))
        else:
            # the uids searched in sorted order: a random order (rows grouped by entity)
            # misses the cache at every step of the search, 5x slower at 9M rows
            order = np.argsort(uid, kind="stable")
            pos = np.empty(uid.size, np.int64)
            pos[order] = np.searchsorted(self.uid, uid[order])
            found = self.uid[np.minimum(pos, n - 1)] == uid if n else np.zeros(uid.size, bool)
            missing = np.flatnonzero(~found)
        if len(missing):
            raise DataError(
                f"{who} has uid {int(uid[missing[0]])} that the first coordinate's {self.what} data lacks: "
                "every coordinate must hold the same rows",
                column="uid",
            )
        return pos

    def check_covered(self, positions: list[np.ndarray], who: str) -> None:
        total = sum(p.size for p in positions)
        if total != self.uid.size:
            raise DataError(
                f"{who} holds {total} {self.what} rows but the first coordinate holds {self.uid.size}: "
                "every coordinate must hold the same rows",
                column="uid",
            )


def gather(values: np.ndarray, positions: list[np.ndarray]) -> list[np.ndarray]:
    """Split a global-order vector (or matrix, by rows) into per-holder pieces."""
    return [values[p] for p in positions]


def scatter(
    pieces: list[np.ndarray], positions: list[np.ndarray], size: int, columns: int | None = None
) -> np.ndarray:
    """Assemble per-holder pieces into a global-order vector (with ``columns``: a matrix of
    that many columns, by rows)."""
    out = np.zeros(size if columns is None else (size, columns), dtype=np.float64)
    for piece, p in zip(pieces, positions, strict=True):
        out[p] = piece
    return out
