"""Evaluation metrics on logits: AUC, log-loss, RMSE and Photon ML's per-entity AUC.

All take ``scores`` as logits (GDMix and Photon ML write logits, not probabilities) and
``labels`` in {0, 1} (AUC, log-loss) or real values (RMSE). AUC is unweighted, like Spark's
``BinaryClassificationMetrics`` that GDMix uses; ties get half credit.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from raymix.solvers.loss import LOGISTIC, loss

METRICS = ("auc", "logloss", "rmse")
HIGHER_IS_BETTER = {"auc": True, "logloss": False, "rmse": False}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels) > 0.5
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean (weighted) logistic loss of logits (:func:`raymix.solvers.loss.loss`)."""
    z = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return float(np.average(loss(LOGISTIC, y, z), weights=weights))


def rmse(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    diff = np.asarray(scores, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
    return float(np.sqrt(np.average(diff * diff, weights=weights)))


def evaluate(name: str, scores: np.ndarray, labels: np.ndarray, weights=None) -> float:
    if name == "auc":
        return auc(scores, labels)
    if name == "logloss":
        return logloss(scores, labels, weights)
    if name == "rmse":
        return rmse(scores, labels, weights)
    raise ValueError(f"The 'metric' must be one of {list(METRICS)}. Got '{name}' instead.")


def exact_mean(values: np.ndarray) -> float:
    """The mean with an exactly rounded sum: the same whatever the order of ``values`` (the
    per-entity AUCs come in the entity order of the actors, which depends on their count)."""
    return math.fsum(values.tolist()) / values.size


def per_entity_auc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """AUC of every group that has both classes (Photon ML's ``AUC:<id>``), one value per such group.

    ``groups`` holds an integer code per row (negative codes are ignored). Vectorised: one
    lexicographic sort, average ranks of ties within each group.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels) > 0.5
    groups = np.asarray(groups)
    keep = groups >= 0
    scores, labels, groups = scores[keep], labels[keep], groups[keep]
    if scores.size == 0:
        return np.zeros(0)
    order = np.lexsort((scores, groups))
    s, y, g = scores[order], labels[order], groups[order]
    n = s.size
    group_start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    group_id = np.cumsum(np.r_[True, g[1:] != g[:-1]]) - 1
    # ties: runs of equal (group, score)
    tie_start = np.flatnonzero(np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])])
    tie_len = np.diff(np.r_[tie_start, n])
    position = np.arange(n) - group_start[group_id]  # 0-based rank within group
    tie_rank = position[tie_start] + (tie_len + 1) / 2.0  # average 1-based rank of the tie run
    rank = np.repeat(tie_rank, tie_len)
    n_groups = group_start.size
    n_pos = np.bincount(group_id, weights=y, minlength=n_groups)
    n_all = np.bincount(group_id, minlength=n_groups)
    n_neg = n_all - n_pos
    rank_sum = np.bincount(group_id, weights=rank * y, minlength=n_groups)
    both = (n_pos > 0) & (n_neg > 0)
    return (rank_sum[both] - n_pos[both] * (n_pos[both] + 1) / 2.0) / (n_pos[both] * n_neg[both])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return expit(z)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    n = values.size
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    lengths = np.diff(np.r_[starts, n])
    average = starts + (lengths + 1) / 2.0
    ranks = np.empty(n)
    ranks[order] = np.repeat(average, lengths)
    return ranks
