"""LinearModels.scores: a few rows are scored with their own models alone, and get exactly
the scores the whole model set gives (no Ray)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from raymix.coordinates.linear_models import LinearModels
from raymix.solvers.entity import score_entities


def models(entities: int, dim: int, seed: int = 0) -> LinearModels:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, dim + 1, entities)
    ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    index = np.concatenate([rng.permutation(dim)[:c] for c in counts])  # not sorted per model
    keys = np.sort(np.arange(entities).astype(str))
    return LinearModels(keys, rng.normal(size=entities), ptr, index, rng.normal(size=ptr[-1]))


def whole_set_scores(lm: LinearModels, X, entity) -> np.ndarray:
    """The scores of every row against all the models (what scores() did before)."""
    which = lm.rows_of(entity)
    order = np.argsort(which, kind="stable")
    grouped = which[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    ptr = np.r_[starts, len(grouped)].astype(np.int64)
    out = np.empty(len(grouped))
    out[order] = score_entities(lm._entity_models, X[order], ptr, model_index=grouped[starts])
    return out


def test_a_few_rows_are_scored_by_their_models_alone_exactly_as_by_all():
    lm = models(5000, 12)
    rng = np.random.default_rng(1)
    for n in (1, 7, 300):
        X = sp.random(n, 12, density=0.6, format="csr", random_state=n)
        entity = np.asarray(
            [int(v) if v < 5000 else f"stranger-{v}" for v in rng.integers(0, 5200, n)],
            dtype=object,
        )
        entity[0] = entity[-1]  # an entity twice
        wanted = np.unique(lm.rows_of(entity))
        assert wanted.size * 4 <= lm.n_models  # the subset path
        served = lm.scores(X, entity)
        np.testing.assert_array_equal(served, whole_set_scores(lm, X, entity))
        strangers = np.asarray([isinstance(e, str) for e in entity])
        assert (served[strangers] == 0.0).all()


def test_a_fixed_effect_scores_the_same_on_one_thread():
    rng = np.random.default_rng(2)
    lm = LinearModels(np.asarray([""]), np.asarray([0.3]), np.asarray([0, 3]), np.asarray([0, 2, 4]), rng.normal(size=3))  # fmt: skip
    X = rng.normal(size=(500, 5))
    np.testing.assert_array_equal(lm.scores(X, None, threads=1), lm.scores(X, None))
