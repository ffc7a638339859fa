"""Global metrics from per-holder summaries that merge exactly (issue 18).

When the rows' scores live in many holders (fixed-effect workers, bucket actors), the
validation metrics are computed where the scores are: each holder reduces its rows to a
small summary, summaries merge (in any order, any grouping: the merge is associative and
commutative, and exact), and only the merged summary is turned into a number.

- **AUC** (:class:`ScoreCounts`): the positive and negative counts per distinct score.
  Merging adds the counts of equal scores. With ``P`` positives, ``N`` negatives and, in
  ascending score order, ``neg_below(s)`` the negatives under score ``s``, the Mann-Whitney
  statistic is ``U = sum_s pos(s) * (neg_below(s) + neg(s) / 2)`` (ties get half credit) and
  ``AUC = U / (P N)``. Unweighted counts are integers: ``2U`` and ``2PN`` are computed exactly
  (int64, then Python integers) and their quotient is correctly rounded, so the result is the
  same for every split into holders and equal bit for bit to :func:`raymix.metrics.auc`
  whenever that one's rank sum is exact (below 2**52, about 67M rows); beyond, this one stays
  exact. With weights (``weighted=True``) the counts are sums of weights (scikit-learn's
  ``roc_auc_score(sample_weight=...)``), merged in floating point (agreement ~1e-15).
  A summary holds one entry per distinct score of the holder: 24 bytes a distinct score.
- **log-loss, RMSE** (:class:`MeanSummary`): the weighted sum of the per-row terms and the
  sum of the weights, each an :class:`ExactSum` (the exact value of a float64 sum as a
  Python integer times a power of two), so merging is exact and the mean is the correctly
  rounded quotient of the two exact sums, whatever the split. It differs from numpy's
  pairwise-summed ``np.average`` (today's :mod:`raymix.metrics`) by its rounding only:
  relative ~1e-16.
- **the mean per-entity AUC** (:class:`ExactSum` of the per-entity AUCs and their count):
  equal bit for bit to :func:`raymix.metrics.exact_mean` (``math.fsum`` is correctly
  rounded, and so is the rounding of the exact sum).

Scores are logits, labels in {0, 1} (a label > 0.5 is positive) for AUC and log-loss, real
for RMSE, as in :mod:`raymix.metrics`. No Ray here: a holder calls ``summarize``, a caller
merges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from raymix.solvers.loss import LOGISTIC, loss

_HALF = 26  # a float64 mantissa (53 bits) split into two halves that int64 sums hold exactly
_MASK = (1 << _HALF) - 1


@dataclass(frozen=True)
class ExactSum:
    """The exact sum of float64 values: ``numerator * 2**exponent`` (Python integers), plus
    ``special``, the float sum of any non-finite values (inf, NaN; 0.0 when none)."""

    numerator: int = 0
    exponent: int = 0
    special: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> ExactSum:
        """Sum ``values`` exactly: each is ``m * 2**e`` with an integer ``m`` of 53 bits;
        the ``m`` are summed per ``e`` in two 26/27-bit halves (exact in int64 up to 2**36
        values per exponent), then combined as Python integers."""
        x = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(x)
        with np.errstate(invalid="ignore"):  # inf + -inf is NaN, as in any sum
            special = float(x[~finite].sum()) if not finite.all() else 0.0
        x = x[finite & (x != 0)]
        if x.size == 0:
            return cls(0, 0, special)
        m, e = np.frexp(x)
        mantissa = (m * 2.0**53).astype(np.int64)  # exact: |m| in [0.5, 1)
        exponent = e.astype(np.int64) - 53
        order = np.argsort(exponent, kind="stable")
        exponent, mantissa = exponent[order], mantissa[order]
        starts = np.flatnonzero(np.r_[True, exponent[1:] != exponent[:-1]])
        high = np.add.reduceat(mantissa >> _HALF, starts)
        low = np.add.reduceat(mantissa & _MASK, starts)
        base = int(exponent[0])
        numerator = 0
        for h, lo, ex in zip(high.tolist(), low.tolist(), exponent[starts].tolist(), strict=True):
            numerator += ((h << _HALF) + lo) << (ex - base)
        return cls(numerator, base, special)

    def __add__(self, other: ExactSum) -> ExactSum:
        base = min(self.exponent, other.exponent)
        numerator = (self.numerator << (self.exponent - base)) + (
            other.numerator << (other.exponent - base)
        )
        return ExactSum(numerator, base, self.special + other.special)

    def fraction(self) -> Fraction:
        if self.exponent >= 0:
            return Fraction(self.numerator << self.exponent)
        return Fraction(self.numerator, 1 << -self.exponent)

    def value(self) -> float:
        """The sum correctly rounded to float64 (as ``math.fsum``)."""
        if self.special != 0.0 or math.isnan(self.special):
            return self.special + float(self.fraction())
        return float(self.fraction())


def total(parts: Iterable[ExactSum]) -> ExactSum:
    out = ExactSum()
    for part in parts:
        out = out + part
    return out


def exact_quotient(a: ExactSum, b: ExactSum) -> float:
    """``a / b`` of the exact sums, correctly rounded (NaN for 0 / 0, like numpy)."""
    if a.special != 0.0 or b.special != 0.0 or math.isnan(a.special + b.special):
        return a.value() / b.value() if b.value() != 0.0 else float("nan")
    if b.numerator == 0:
        return float("nan")
    return float(a.fraction() / b.fraction())


@dataclass(frozen=True)
class ScoreCounts:
    """Positives and negatives per distinct score (ascending): the exact AUC summary."""

    scores: np.ndarray  # float64, ascending, distinct
    positives: np.ndarray  # int64 counts, or float64 weight sums
    negatives: np.ndarray

    @classmethod
    def of(
        cls, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
    ) -> ScoreCounts:
        """One holder's summary; ``weights`` None counts rows (raymix's AUC is unweighted)."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        positive = np.asarray(labels).ravel() > 0.5
        distinct, at = np.unique(s, return_inverse=True)
        if weights is None:
            pos = np.bincount(at, weights=positive, minlength=distinct.size).astype(np.int64)
            rows = np.bincount(at, minlength=distinct.size).astype(np.int64)
            return cls(distinct, pos, rows - pos)
        w = np.asarray(weights, dtype=np.float64).ravel()
        pos = np.bincount(at, weights=np.where(positive, w, 0.0), minlength=distinct.size)
        neg = np.bincount(at, weights=np.where(positive, 0.0, w), minlength=distinct.size)
        return cls(distinct, pos, neg)

    @classmethod
    def merge(cls, parts: Iterable[ScoreCounts]) -> ScoreCounts:
        parts = list(parts)
        if not parts:
            return cls(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
        s = np.concatenate([p.scores for p in parts])
        pos = np.concatenate([p.positives for p in parts])
        neg = np.concatenate([p.negatives for p in parts])
        distinct, at = np.unique(s, return_inverse=True)
        if pos.dtype.kind == "i":
            return cls(distinct, _sum_int(at, pos, distinct.size), _sum_int(at, neg, distinct.size))
        return cls(
            distinct,
            np.bincount(at, weights=pos, minlength=distinct.size),
            np.bincount(at, weights=neg, minlength=distinct.size),
        )

    def auc(self) -> float:
        """``U / (P N)``; NaN when only one class is present."""
        pos, neg = self.positives, self.negatives
        if pos.dtype.kind == "i":
            n_pos, n_neg = int(pos.sum()), int(neg.sum())
            if n_pos == 0 or n_neg == 0:
                return float("nan")
            below = np.cumsum(neg) - neg
            twice_u = int((pos * (2 * below + neg)).sum())  # <= n**2 / 2: int64 to 4e9 rows
            return twice_u / (2 * n_pos * n_neg)  # Python ints: correctly rounded
        p, n = float(pos.sum()), float(neg.sum())
        if p == 0.0 or n == 0.0:
            return float("nan")
        below = np.cumsum(neg) - neg
        return float((pos * (below + neg / 2.0)).sum() / (p * n))


def _sum_int(at: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, np.int64)
    np.add.at(out, at, values)
    return out


@dataclass(frozen=True)
class MeanSummary:
    """A weighted mean's exact parts: the sum of ``weight * term`` and of the weights."""

    weighted_terms: ExactSum
    weights: ExactSum

    @classmethod
    def of(cls, terms: np.ndarray, weights: np.ndarray | None = None) -> MeanSummary:
        t = np.asarray(terms, dtype=np.float64)
        if weights is None:
            return cls(ExactSum.of(t), ExactSum.of(np.ones(t.size)))
        w = np.asarray(weights, dtype=np.float64)
        return cls(ExactSum.of(t * w), ExactSum.of(w))  # the products np.average forms

    @classmethod
    def merge(cls, parts: Iterable[MeanSummary]) -> MeanSummary:
        parts = list(parts)
        return cls(total(p.weighted_terms for p in parts), total(p.weights for p in parts))

    def mean(self) -> float:
        return exact_quotient(self.weighted_terms, self.weights)


def logloss_summary(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> MeanSummary:
    """A holder's part of the mean logistic loss of logits (:func:`raymix.metrics.logloss`)."""
    z = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return MeanSummary.of(loss(LOGISTIC, y, z), weights)


def squared_error_summary(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> MeanSummary:
    """A holder's part of the mean squared error; RMSE is ``sqrt`` of the merged mean."""
    diff = np.asarray(scores, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
    return MeanSummary.of(diff * diff, weights)


@dataclass(frozen=True)
class HolderMetrics:
    """What one holder sends for the validation metrics of the scores it holds: the parts
    :func:`raymix.descent.evaluate` needs for ``metric`` (AUC adds the log-loss), and, for a
    holder that keeps whole entities, the exact sum and count of their per-entity AUCs."""

    metric: str
    counts: ScoreCounts | None = None
    mean: MeanSummary | None = None
    logloss: MeanSummary | None = None
    entity_auc_sum: ExactSum | None = None
    entities: int = 0


def summarize(
    metric: str,
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    entity_aucs: np.ndarray | None = None,
) -> HolderMetrics:
    """One holder's summary for ``metric`` ("auc", "logloss" or "rmse"); ``entity_aucs``
    are the AUCs of the entities it holds whole (:func:`raymix.metrics.per_entity_auc`)."""
    entity_sum = None if entity_aucs is None else ExactSum.of(entity_aucs)
    entities = 0 if entity_aucs is None else int(np.size(entity_aucs))
    if metric == "auc":
        return HolderMetrics(
            metric,
            counts=ScoreCounts.of(scores, labels),
            logloss=logloss_summary(scores, labels, weights),
            entity_auc_sum=entity_sum,
            entities=entities,
        )
    if metric in ("logloss", "rmse"):
        terms = logloss_summary if metric == "logloss" else squared_error_summary
        return HolderMetrics(
            metric,
            mean=terms(scores, labels, weights),
            entity_auc_sum=entity_sum,
            entities=entities,
        )
    raise ValueError(
        f"The 'metric' must be one of ['auc', 'logloss', 'rmse']. Got '{metric}' instead."
    )


def finish(parts: Iterable[HolderMetrics]) -> dict:
    """The merged summaries' metrics, keyed as :func:`raymix.descent.evaluate` keys them."""
    parts = list(parts)
    if not parts:
        return {}
    metric = parts[0].metric
    if any(p.metric != metric for p in parts):
        raise ValueError("holders summarized different metrics")
    out: dict = {}
    if metric == "auc":
        out["auc"] = ScoreCounts.merge(p.counts for p in parts if p.counts is not None).auc()
        out["logloss"] = MeanSummary.merge(p.logloss for p in parts if p.logloss).mean()
    else:
        value = MeanSummary.merge(p.mean for p in parts if p.mean is not None).mean()
        out[metric] = math.sqrt(value) if metric == "rmse" else value
    entities = sum(p.entities for p in parts)
    if metric == "auc" and entities:
        summed = total(p.entity_auc_sum for p in parts if p.entity_auc_sum is not None)
        out["per_entity_auc"] = summed.value() / entities
        out["per_entity_auc_entities"] = entities
    return out
