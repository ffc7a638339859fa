"""An optimizer's evaluations, logged so that a restarted fit retraces them exactly.

scipy's L-BFGS-B keeps its curvature pairs to itself, so a fit cannot be resumed from its
iterate alone: restarted there, it walks another path and stops at another point within its
tolerance (the chaos benchmark caught one such run). But L-BFGS-B is deterministic: given the
same values and gradients it asks for the same points. So a restarted fit starts again from
the same ``x0`` and is answered from the log of the attempt that died; it walks the same
path bit for bit and computes only the evaluations the log does not hold.

Each entry carries a digest of its point. A point that differs from the logged one (a group
that shrank sums in another order, say) ends the replay: every later evaluation is computed,
and logged in place of the stale entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LOG_BYTES = 256 * 2**20  # at most this much of one fit's evaluations is logged


@dataclass(frozen=True)
class Evaluation:
    """One logged evaluation: the point's digest, the value and the gradient there."""

    digest: bytes
    value: float
    grad: np.ndarray


def digest(x: np.ndarray) -> bytes:
    """A digest of a point's exact bits."""
    return hashlib.blake2b(np.ascontiguousarray(x, np.float64).tobytes(), digest_size=16).digest()


def loggable(n_params: int) -> int:
    """How many evaluations of an ``n_params`` problem fit in :data:`LOG_BYTES`."""
    return LOG_BYTES // (8 * (n_params + 1) + 64)


class Replay:
    """Answers a restarted fit's evaluations from the log while its points match."""

    def __init__(self, logged: list[Evaluation]) -> None:
        self.logged = logged
        self.replayed = 0  # evaluations answered from the log so far
        self.live = True  # until a point differs from the logged one

    def answer(self, x: np.ndarray) -> Evaluation | None:
        """The logged evaluation at ``x``, or None: then compute it (and every later one)."""
        if self.live and self.replayed < len(self.logged):
            entry = self.logged[self.replayed]
            if entry.digest == digest(x):
                self.replayed += 1
                return entry
        self.live = False
        return None


class EvaluationLog:
    """The evaluations of one fit, sent in batches of ``every`` through ``send(start,
    entries)``: ``entries`` are evaluations number ``start``, ``start + 1``, ..."""

    def __init__(
        self, send: Callable[[int, list[Evaluation]], None], n_params: int, every: int
    ) -> None:
        self.send, self.every, self.limit = send, every, loggable(n_params)
        self.start = 0
        self.pending: list[Evaluation] = []

    def add(self, index: int, x: np.ndarray, value: float, grad: np.ndarray) -> None:
        """Log evaluation number ``index`` (numbers follow each other from the first added)."""
        if index >= self.limit:
            return
        if not self.pending:
            self.start = index
        self.pending.append(Evaluation(digest(x), value, np.array(grad)))
        if len(self.pending) >= self.every:
            self.send(self.start, self.pending)
            self.pending = []


ValueGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


def replaying(value_grad: ValueGrad, replay: Replay, log: EvaluationLog | None) -> ValueGrad:
    """``value_grad`` answered from ``replay`` while its points match; what it computes goes
    to ``log`` (when given: one rank of a group logs for all)."""
    calls = [0]

    def answered(x: np.ndarray) -> tuple[float, np.ndarray]:
        calls[0] += 1
        if (entry := replay.answer(x)) is not None:
            return entry.value, entry.grad
        value, grad = value_grad(x)
        if log is not None:
            log.add(calls[0] - 1, x, value, grad)
        return value, grad

    return answered
