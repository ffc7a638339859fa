"""Metrics merged from per-holder summaries equal the ones of all rows at once."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, mean_squared_error, roc_auc_score

from raymix import metrics as M
from raymix.solvers import metric_summaries as S


def split_into_holders(rng, n, holders):
    """A random partition of ``range(n)`` into ``holders`` parts (some maybe empty)."""
    owner = rng.integers(0, holders, n)
    return [np.flatnonzero(owner == h) for h in range(holders)]


def data(rng, n, ties):
    scores = rng.normal(size=n)
    if ties:
        scores = np.round(scores, 1)  # ~60 distinct values: ties within and across holders
    labels = (rng.random(n) < 1 / (1 + np.exp(-scores))).astype(np.float64)
    weights = rng.uniform(0.1, 3.0, n)
    return scores, labels, weights


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_from_holders_is_raymix_auc_bit_for_bit_and_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    scores, labels, _ = data(rng, 5_000, ties)
    parts = split_into_holders(rng, 5_000, 1 + seed)
    counts = S.ScoreCounts.merge(S.ScoreCounts.of(scores[p], labels[p]) for p in parts)
    assert counts.auc() == M.auc(scores, labels)  # bit for bit
    assert abs(counts.auc() - roc_auc_score(labels, scores)) <= 1e-12


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_weighted_auc_from_holders_is_sklearns(seed, ties):
    rng = np.random.default_rng(seed)
    scores, labels, weights = data(rng, 4_000, ties)
    parts = split_into_holders(rng, 4_000, 3 + seed)
    summaries = [S.ScoreCounts.of(scores[p], labels[p], weights[p]) for p in parts]
    expected = roc_auc_score(labels, scores, sample_weight=weights)
    assert abs(S.ScoreCounts.merge(summaries).auc() - expected) <= 1e-12


def test_merge_is_order_free_and_one_class_is_nan():
    rng = np.random.default_rng(7)
    scores, labels, _ = data(rng, 2_000, True)
    parts = [S.ScoreCounts.of(scores[p], labels[p]) for p in split_into_holders(rng, 2_000, 5)]
    forward = S.ScoreCounts.merge(parts).auc()
    nested = S.ScoreCounts.merge([S.ScoreCounts.merge(parts[3:]), S.ScoreCounts.merge(parts[:3])])
    assert nested.auc() == forward
    assert math.isnan(S.ScoreCounts.of(scores, np.ones(2_000)).auc())
    assert math.isnan(S.ScoreCounts.merge([]).auc())


def test_exact_sum_is_correctly_rounded_and_split_free():
    rng = np.random.default_rng(3)
    # magnitudes over 60 orders, cancellations, subnormals, zeros
    x = rng.normal(size=20_000) * 10.0 ** rng.integers(-30, 30, 20_000)
    x = np.concatenate([x, -x[:5_000], [5e-324, -0.0, 0.0, 1e300, -1e300]])
    whole = S.ExactSum.of(x)
    assert whole.value() == math.fsum(x.tolist())
    parts = [S.ExactSum.of(x[p]) for p in split_into_holders(rng, x.size, 7)]
    assert S.total(parts).fraction() == whole.fraction()
    assert S.ExactSum.of(np.array([1.0, np.inf])).value() == np.inf
    assert math.isnan(S.ExactSum.of(np.array([np.inf, -np.inf])).value())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("weighted", [False, True])
def test_logloss_and_rmse_from_holders(seed, weighted):
    rng = np.random.default_rng(seed)
    scores, labels, weights = data(rng, 6_000, seed % 2 == 0)
    w = weights if weighted else None
    parts = split_into_holders(rng, 6_000, 2 + seed)
    pick = (lambda p: None) if w is None else (lambda p: w[p])  # noqa: E731
    logloss = S.MeanSummary.merge(S.logloss_summary(scores[p], labels[p], pick(p)) for p in parts)
    squared = S.MeanSummary.merge(
        S.squared_error_summary(scores[p], labels[p], pick(p)) for p in parts
    )
    probability = 1 / (1 + np.exp(-scores))
    assert abs(logloss.mean() - M.logloss(scores, labels, w)) <= 1e-12
    assert abs(logloss.mean() - log_loss(labels, probability, sample_weight=w)) <= 1e-12
    rmse = math.sqrt(squared.mean())
    assert abs(rmse - M.rmse(scores, labels, w)) <= 1e-12
    assert abs(rmse - math.sqrt(mean_squared_error(labels, scores, sample_weight=w))) <= 1e-12


@pytest.mark.parametrize("metric", ["auc", "logloss", "rmse"])
def test_finish_gives_what_the_driver_computes_today(metric):
    rng = np.random.default_rng(11)
    n = 8_000
    scores, labels, weights = data(rng, n, True)
    entity = rng.integers(0, 300, n)
    holder_of_entity = rng.integers(0, 4, 300)  # an entity's rows all in one holder
    parts = [np.flatnonzero(holder_of_entity[entity] == h) for h in range(4)]
    summaries = [
        S.summarize(
            metric,
            scores[p],
            labels[p],
            weights[p],
            entity_aucs=M.per_entity_auc(scores[p], labels[p], entity[p]),
        )
        for p in parts
    ]
    got = S.finish(summaries)
    expected = {metric: M.evaluate(metric, scores, labels, weights)}
    if metric == "auc":
        expected["logloss"] = M.logloss(scores, labels, weights)
        every = M.per_entity_auc(scores, labels, entity)
        expected["per_entity_auc"] = M.exact_mean(every)
        expected["per_entity_auc_entities"] = every.size
        assert got["auc"] == expected["auc"]  # bit for bit
        assert got["per_entity_auc"] == expected["per_entity_auc"]  # bit for bit
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-12, key


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="'metric' must be one of"):
        S.summarize("accuracy", np.zeros(2), np.zeros(2))
