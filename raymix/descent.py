"""Blockwise coordinate descent over the recipe's ordered coordinates.

Per row, the model's logit is ``base offset + sum_c score_c``. Each coordinate ``c`` is
trained with ``offset = base + sum_{c' != c} score_c'`` (the other coordinates' current
scores; Photon ML's residual offset and GDMix's ``OffsetUpdater`` semantics) and returns its
new ``score_c``. In the first pass untrained coordinates score 0, so the offset of the k-th
coordinate is the cumulative score of the ones before it, exactly as GDMix passes it. After
every coordinate the validation metric of the cumulative score is recorded.

The loop only sees :class:`~raymix.coordinates.base.Coordinate`; it knows nothing of Ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from raymix import metrics as M
from raymix.coordinates.base import Coordinate, InterceptShift, RowIndex, scatter
from raymix.errors import DataError


@dataclass
class Split:
    """One split's rows in the global order and the per-coordinate scores on them."""

    index: RowIndex
    label: np.ndarray
    weight: np.ndarray
    base: np.ndarray  # offsets given in the data (0 when none)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    entity_codes: dict[str, np.ndarray] = field(default_factory=dict)

    def total(self) -> np.ndarray:
        total = self.base.copy()
        for score in self.scores.values():
            total += score
        return total


@dataclass
class Step:
    """What happened when one coordinate was updated in one pass."""

    pass_index: int
    coordinate: str
    metrics: dict
    info: dict
    seconds: float


@dataclass
class DescentState:
    train: Split
    validation: Split
    steps: list[Step] = field(default_factory=list)
    best_pass: int = 0
    load_seconds: float = 0.0

    def reset(self) -> None:
        """Back to before the first pass (every score 0, no steps), keeping the rows."""
        for split in (self.train, self.validation):
            for name, score in split.scores.items():
                split.scores[name] = np.zeros_like(score)
        self.steps, self.best_pass = [], 0


def load(coordinates: list[Coordinate], one_at_a_time: bool = False) -> DescentState:
    """Read every coordinate's rows, then align them on the rows of the first coordinate
    that reads data (an external coordinate only brings scores, not labels).

    The coordinates read at once (the least wall time for small data), or with
    ``one_at_a_time`` each after the previous one holds its rows: then the memory peak is one
    coordinate's reading (its blocks in the object store, its conversion copies) on top of
    the rows already held, instead of every coordinate's at the same time.
    """
    started = time.perf_counter()
    reports = []
    for coordinate in coordinates:
        coordinate.start()
        if one_at_a_time:
            reports.append(coordinate.holders())
    if not one_at_a_time:
        reports = [coordinate.holders() for coordinate in coordinates]
    anchor = next((k for k, c in enumerate(coordinates) if c.kind != "external"), 0)
    splits = []
    for which, what in ((0, "training"), (1, "validation")):
        holders = reports[anchor][which]
        first = f"coordinate '{coordinates[anchor].name}'"
        index = RowIndex([h.uid for h in holders], what, who=first)
        positions = [index.positions(h.uid, first) for h in holders]
        split = Split(
            index=index,
            label=scatter([h.label for h in holders], positions, len(index)),
            weight=scatter([h.weight for h in holders], positions, len(index)),
            base=scatter(
                [h.offset if h.offset is not None else np.zeros(h.uid.size) for h in holders],
                positions,
                len(index),
            ),
        )
        if len(index) and not split.weight.any():
            raise DataError(f"every {what} row has weight 0: there is nothing to fit or measure")
        splits.append(split)
    for coordinate, (_, val) in zip(coordinates, reports, strict=True):
        coordinate.bind(splits[0].index, splits[1].index)
        for split in splits:
            split.scores[coordinate.name] = np.zeros(len(split.index))
        if val and val[0].entity_code is not None:
            pos = [splits[1].index.positions(h.uid, coordinate.name) for h in val]
            codes = np.full(len(splits[1].index), -1, np.int64)
            for h, p in zip(val, pos, strict=True):
                if h.entity_code is not None:
                    codes[p] = h.entity_code
            splits[1].entity_codes[coordinate.name] = codes
    return DescentState(
        train=splits[0], validation=splits[1], load_seconds=time.perf_counter() - started
    )


def descend(
    coordinates: list[Coordinate],
    state: DescentState,
    *,
    passes: int,
    metric: str = "auc",
    locked: frozenset[str] = frozenset(),
    patience: int | None = None,
    min_delta: float = 0.0,
    start: tuple[int, int] = (0, 0),
    after_step: Callable[[DescentState, Step], None] | None = None,
) -> DescentState:
    """Run the passes, resuming at ``start`` = (pass, coordinate index) if given.

    With ``patience``, stop once the last coordinate's metric has not improved for that many
    passes, and keep the best pass: its models and scores are restored at the end (within
    one process: a run resumed after its best pass keeps its last pass).
    ``state.best_pass`` is the pass with the best metric.
    """
    higher = M.HIGHER_IS_BETTER[metric]
    best, best_pass, stale = None, 0, 0
    first_pass, first_coordinate = start
    if first_coordinate >= len(coordinates):
        first_pass, first_coordinate = first_pass + 1, 0
    for p in range(first_pass):  # passes completed before a resume
        best, best_pass, stale = _track(
            _last_metric(state, p, metric), p, best, best_pass, stale, higher, min_delta
        )
    # judged again: a checkpoint is saved after each step, before its pass is judged
    state.best_pass = best_pass
    if patience is not None and stale >= patience:
        return state
    kept, last = None, first_pass - 1
    for p in range(first_pass, passes):
        first = first_coordinate if p == first_pass else 0
        for k in range(first, len(coordinates)):
            coordinate = coordinates[k]
            if coordinate.name in locked and p > 0:
                continue
            refit = coordinate.name not in locked
            step = _update(coordinate, state, p, metric, refit, coordinates, locked)
            state.steps.append(step)
            if after_step is not None:
                after_step(state, step)
        best, best_pass, stale = _track(
            _last_metric(state, p, metric), p, best, best_pass, stale, higher, min_delta
        )
        state.best_pass, last = best_pass, p
        if patience is not None and best_pass == p:
            kept = _snapshot(coordinates, state)
        if patience is not None and stale >= patience:
            break
    if kept is not None and best_pass != last:
        _restore(coordinates, state, kept)
    return state


def _snapshot(coordinates, state: DescentState):
    scores = {
        split: {k: v.copy() for k, v in s.scores.items()}
        for split, s in (("train", state.train), ("validation", state.validation))
    }
    return scores, [c.snapshot() for c in coordinates]


def _restore(coordinates, state: DescentState, kept) -> None:
    scores, models = kept
    state.train.scores, state.validation.scores = scores["train"], scores["validation"]
    for coordinate, saved in zip(coordinates, models, strict=True):
        coordinate.restore(saved)


def _track(value, p, best, best_pass, stale, higher, min_delta):
    improved = best is None or (value > best + min_delta if higher else value < best - min_delta)
    if improved or np.isnan(value):
        return value, p, 0
    return best, best_pass, stale + 1


def _update(
    coordinate: Coordinate,
    state: DescentState,
    p: int,
    metric: str,
    refit: bool,
    coordinates: list[Coordinate],
    locked: frozenset[str],
) -> Step:
    """Fit ``coordinate`` (then move a random effect's intercepts' mean: :func:`recenter`)
    and measure the cumulative model."""
    started = time.perf_counter()
    train, val = state.train, state.validation
    train_offsets = train.total() - train.scores[coordinate.name]
    val_offsets = val.total() - val.scores[coordinate.name]
    outcome = coordinate.fit(train_offsets, val_offsets, refit=refit)
    train.scores[coordinate.name] = outcome.train
    val.scores[coordinate.name] = outcome.validation
    if refit and coordinate.kind == "random_effect":
        shift = recenter(coordinate, coordinates, state, locked)  # type: ignore[arg-type]
        if shift:
            outcome.info["intercept_shift"] = shift
    results = evaluate(state, metric, coordinate.name)
    return Step(p, coordinate.name, results, outcome.info, time.perf_counter() - started)


def recenter(
    random: InterceptShift, coordinates: list, state: DescentState, locked: frozenset[str]
) -> float:
    """Move the mean of a random effect's penalized intercepts into the first fixed effect
    with a free intercept; returns the amount moved (0.0: nothing moved).

    Every row of the random effect has a model, so adding ``c`` to the fixed intercept and
    ``-c`` to every random intercept leaves each training prediction as it is, and only the
    penalty ``(l2/2) sum_e b_e^2`` changes: it is least at ``c = mean(b_e)``, which the joint
    optimum therefore has at 0. Coordinate descent alone moves that mean between the fixed
    and the random intercepts a little each pass (a linear mixed model with large random
    intercepts needs hundreds of passes); this exact line search along it moves it at once.
    """
    mean = random.intercept_mean()
    fixed = next(
        (
            c
            for c in coordinates
            if c.kind == "fixed_effect" and c.name not in locked and c.takes_intercept_shift()
        ),
        None,
    )
    if fixed is None or not mean:
        return 0.0
    train, val = state.train, state.validation
    for coordinate, by in ((random, -mean), (fixed, mean)):
        outcome = coordinate.shift_intercepts(
            by,
            train.total() - train.scores[coordinate.name],
            val.total() - val.scores[coordinate.name],
        )
        train.scores[coordinate.name] = outcome.train
        val.scores[coordinate.name] = outcome.validation
    return mean


def evaluate(state: DescentState, metric: str, coordinate: str | None = None) -> dict:
    """Validation metrics of the cumulative score (and per-entity AUC for a random effect)."""
    val = state.validation
    out: dict = {}
    if len(val.index) == 0:
        return out
    total = val.total()
    out[metric] = M.evaluate(metric, total, val.label, val.weight)
    if metric == "auc":
        out["logloss"] = M.logloss(total, val.label, val.weight)
    codes = val.entity_codes.get(coordinate) if coordinate else None
    if codes is not None and metric == "auc":
        per_entity = M.per_entity_auc(total, val.label, codes)
        if per_entity.size:
            out["per_entity_auc"] = M.exact_mean(per_entity)
            out["per_entity_auc_entities"] = int(per_entity.size)
    return out


def _last_metric(state: DescentState, p: int, metric: str) -> float:
    steps = [s for s in state.steps if s.pass_index == p and metric in s.metrics]
    return steps[-1].metrics[metric] if steps else float("nan")
