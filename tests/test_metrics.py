import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from raymix import metrics as M


def test_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    s = np.round(rng.normal(size=2000) + y, 1)  # many ties
    assert M.auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert np.isnan(M.auc(s, np.ones_like(y)))


def test_logloss_equals_sklearn_on_logits():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    z = rng.normal(scale=3, size=500)
    w = rng.uniform(0.5, 2, 500)
    p = 1 / (1 + np.exp(-z))
    assert M.logloss(z, y, w) == pytest.approx(log_loss(y, p, sample_weight=w), rel=1e-10)


def test_per_entity_auc_equals_a_loop_of_sklearn():
    rng = np.random.default_rng(2)
    groups = rng.integers(0, 60, 3000)
    y = rng.integers(0, 2, 3000)
    s = np.round(rng.normal(size=3000) + 0.5 * y, 1)
    groups[:5] = -1  # ignored rows
    got = M.per_entity_auc(s, y, groups)
    expected = []
    for g in np.unique(groups[groups >= 0]):
        m = groups == g
        if 0 < y[m].sum() < m.sum():
            expected.append(roc_auc_score(y[m], s[m]))
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_unknown_metric_lists_choices():
    with pytest.raises(ValueError, match="auc"):
        M.evaluate("accuracy", np.zeros(2), np.zeros(2))
