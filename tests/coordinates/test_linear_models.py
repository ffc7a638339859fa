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


def string_rows(lm: LinearModels, entity) -> np.ndarray:
    """Each id's row found by its decimal string in the sorted keys (the reference)."""
    keys = list(lm.keys)
    out = []
    for v in entity:
        key = v if isinstance(v, str) else str(int(v))
        out.append(keys.index(key) if key in keys else -1)
    return np.asarray(out, np.int64)


def test_integer_ids_are_looked_up_as_their_decimal_strings():
    keys = np.sort(np.asarray(["7", "07", "-3", "12", "12", "abc", "+5", "5 ", "99", ""]))
    lm = LinearModels(keys, np.zeros(keys.size), np.zeros(keys.size + 1, np.int64), np.zeros(0, np.int64), np.zeros(0))  # fmt: skip
    ids = [7, -3, 12, 5, 99, 100, 0, 2**70]
    got = lm.rows_of(np.asarray(ids, dtype=object))
    np.testing.assert_array_equal(got, string_rows(lm, ids))
    assert got[ids.index(12)] == list(keys).index("12")  # of two equal ids, the first
    assert (got[[ids.index(5), ids.index(100), ids.index(0)]] == -1).all()  # "+5", "5 " are not 5
    small = np.asarray([7, -3, 99, 4], np.int64)
    np.testing.assert_array_equal(lm.rows_of(small), string_rows(lm, small.tolist()))
    mixed = np.asarray([7, "07", True, "abc"], dtype=object)  # strings and bools: as strings
    np.testing.assert_array_equal(lm.rows_of(mixed), string_rows(lm, mixed.tolist()))
    numeric = models(300, 4)  # every id an integer: the fast conversion
    ids = np.asarray([5, 299, 300, 17, 5], dtype=object)
    np.testing.assert_array_equal(numeric.rows_of(ids), string_rows(numeric, ids.tolist()))


def test_dense_integer_ids_are_found_by_the_direct_table_as_by_their_strings():
    keys = np.sort(np.asarray([str(v) for v in range(-5, 40)] + ["12", "007", "x", "-0"]))
    lm = LinearModels(keys, np.zeros(keys.size), np.zeros(keys.size + 1, np.int64), np.zeros(0, np.int64), np.zeros(0))  # fmt: skip
    assert lm.int_table is not None  # 45 integer ids spanning 45
    lo, hi = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    ids = [12, -5, 39, 40, -6, 0, 7, lo, hi, lo + 3, hi - 2, 12]  # far ids wrap in (id - lo)
    for given in (np.asarray(ids, dtype=object), np.asarray(ids, np.int64)):
        got = lm.rows_of(given)
        np.testing.assert_array_equal(got, string_rows(lm, ids))
    assert lm.rows_of(np.asarray([12]))[0] == list(keys).index("12")  # of two equal ids, the first
    sparse = models(50, 3)  # ids 0..49, and one far away: searched, not tabled
    far = LinearModels(np.sort(np.r_[sparse.keys, ["100000"]]), np.zeros(51), np.zeros(52, np.int64), np.zeros(0, np.int64), np.zeros(0))  # fmt: skip
    assert far.int_table is None
    ids = [0, 49, 100000, 99999, 50]
    np.testing.assert_array_equal(far.rows_of(np.asarray(ids)), string_rows(far, ids))
