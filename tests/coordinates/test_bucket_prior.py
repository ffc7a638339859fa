"""A random effect's prior in a bucket, without Ray: entity priors, carried models, and the
Bayesian identity (linear: day 1, then day 2 with day 1's posterior as its prior, equals one
fit on days 1 + 2)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from raymix import RandomEffect
from raymix.coordinates.bucket_prior import (
    bucket_prior,
    load_bucket_prior,
    scoring_models,
    take_models,
    typed_ids,
)
from raymix.coordinates.buckets import (
    fit_bucket,
    group_train,
    score_bucket,
    with_validation,
    write_bucket_models,
)
from raymix.data.avro.models import read_models
from raymix.data.grouping import stable_bucket
from raymix.data.rows import Rows
from raymix.errors import DataError
from raymix.recipe.spec import Prior
from raymix.solvers.entity import EntityModels

DIM = 3
NAMES = [("a", ""), ("b", ""), ("c", "")]
BUCKETS = 4


def rows(users, seed, dim=DIM, first_uid=0, task="linear"):
    rng = np.random.default_rng(seed)
    users = np.asarray(users, np.int64)
    n = users.size
    X = rng.normal(size=(n, dim))
    coef = np.random.default_rng(99).normal(size=(64, dim))
    z = 0.3 + np.einsum("ij,ij->i", X, coef[users]) + 0.2 * (users % 5)
    y = z + rng.normal(scale=0.5, size=n) if task == "linear" else (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)  # fmt: skip
    return Rows(
        uid=np.arange(first_uid, first_uid + n, dtype=np.int64),
        label=y,
        weight=np.ones(n),
        offset=np.zeros(n),
        X=sp.csr_matrix(X) if dim else sp.csr_matrix((n, 0)),
        entity=users,
    )


def bucket(spec, r, val=None):
    b = group_train(spec, 0, r, stable_bucket(r.entity, BUCKETS))
    return b if val is None else with_validation(b, val)


def fit(spec, b, prior=None):
    return fit_bucket(spec, b, np.zeros(len(b.train.rows)), prior=prior).models


def spec_of(**kw):
    base = dict(name="re", entity="user_id", task="linear", l2=2.0, regularize_intercept=True,
                sparsity_threshold=0.0, solver={"tolerance": 1e-12, "max_iter": 200})  # fmt: skip
    base.update(kw)
    return RandomEffect(**base)


def concat(a: Rows, b: Rows) -> Rows:
    return Rows(np.r_[a.uid, b.uid], np.r_[a.label, b.label], np.r_[a.weight, b.weight],
                np.r_[a.offset, b.offset], sp.vstack([a.X, b.X]).tocsr(),
                np.r_[a.entity, b.entity])  # fmt: skip


DAY1 = np.repeat(np.arange(12), 6)
DAY2 = np.repeat(np.arange(0, 12, 3), 4)  # a third of the users come back


def day1_then_day2(tmp_path, spec, dim=DIM):
    d1, d2 = rows(DAY1, 1, dim), rows(DAY2, 2, dim, first_uid=10_000)
    both = bucket(spec.model_copy(update={"prior": None}), concat(d1, d2))
    full = fit(spec, both)
    b1 = bucket(spec, d1)
    models1 = fit(spec, b1)
    write_bucket_models(spec, b1, models1, str(tmp_path), NAMES[:dim])
    update = spec.model_copy(update={"prior": Prior(models=str(tmp_path))})
    b2 = bucket(update, d2)
    prior = load_bucket_prior(update, b2.train, NAMES[:dim], dim, 0, 1, BUCKETS)
    return both, full, b2, fit(update, b2, prior), prior


def coefficients(models: EntityModels, k: int) -> np.ndarray:
    b, index, value = models.coefficients(k)
    dense = np.zeros(DIM)
    dense[index] = value
    return np.r_[b, dense]


def test_a_full_covariance_prior_gives_the_fit_on_both_days(tmp_path):
    spec = spec_of(feature_bag="g", variance="covariance")
    both, full, b2, updated, prior = day1_then_day2(tmp_path, spec)
    assert (tmp_path / "part-00000.covariance.arrow").exists() or any(tmp_path.glob("*.covariance.arrow"))  # fmt: skip
    ids2 = b2.train.entities[b2.train.has_model]
    for k, entity in enumerate(ids2):
        j = int(np.flatnonzero(both.train.entities == entity)[0])
        np.testing.assert_allclose(coefficients(updated, k), coefficients(full, j), atol=1e-6)
    # the users without rows on day 2 are carried: day 1's models, not refit
    assert sorted(prior.carried.ids.tolist()) == sorted(set(range(12)) - set(DAY2.tolist()))


def test_an_intercept_only_prior_gives_the_fit_on_both_days(tmp_path):
    spec = spec_of(variance="full")
    both, full, b2, updated, _ = day1_then_day2(tmp_path, spec, dim=0)
    for k, entity in enumerate(b2.train.entities):
        j = int(np.flatnonzero(both.train.entities == entity)[0])
        assert abs(updated.intercepts[k] - full.intercepts[j]) < 1e-6


def test_diagonal_variances_land_near_the_fit_on_both_days(tmp_path):
    spec = spec_of(feature_bag="g", variance="full")
    both, full, b2, updated, _ = day1_then_day2(tmp_path, spec)
    gaps = []
    for k, entity in enumerate(b2.train.entities):
        j = int(np.flatnonzero(both.train.entities == entity)[0])
        gaps.append(np.abs(coefficients(updated, k) - coefficients(full, j)).max())
    assert 1e-6 < max(gaps) < 0.5  # not the identity (a diagonal prior), but near it


def test_carried_models_score_their_rows_and_are_written_unchanged(tmp_path):
    spec = spec_of(feature_bag="g", variance="full")
    b1 = bucket(spec, rows(DAY1, 1))
    models1 = fit(spec, b1)
    write_bucket_models(spec, b1, models1, str(tmp_path / "d1"), NAMES)
    update = spec.model_copy(update={"prior": Prior(models=str(tmp_path / "d1"))})
    val = rows(np.array([1, 1, 5, 40]), 3, first_uid=50_000)  # 1: carried, 40: unknown
    b2 = bucket(update, rows(DAY2, 2, first_uid=10_000), val)
    prior = load_bucket_prior(update, b2.train, NAMES, DIM, 0, 1, BUCKETS)
    scored = score_bucket(b2, fit(update, b2, prior), prior)
    k1 = int(np.flatnonzero(b1.train.entities == 1)[0])
    b, index, value = models1.coefficients(k1)
    vrows = b2.validation.rows
    expected = b + vrows.X[vrows.entity == 1][:, index] @ value
    np.testing.assert_allclose(scored.val_scores[vrows.entity == 1], expected, rtol=1e-12)
    assert scored.val_scores[vrows.entity == 40] == 0.0
    write_bucket_models(update, b2, scored.models, str(tmp_path / "d2"), NAMES, prior)
    day1 = {r["modelId"]: r for r in read_models(tmp_path / "d1")}
    day2 = {r["modelId"]: r for r in read_models(tmp_path / "d2")}
    assert set(day2) == set(day1)
    for carried in prior.carried.ids.astype(str):
        assert day2[carried] == day1[carried]
    for refit in set(DAY2.astype(str)):
        assert day2[refit]["means"] != day1[refit]["means"]


def test_an_actor_carries_only_its_buckets():
    spec = spec_of(feature_bag="g", variance="full", prior={"models": "x"})
    b = bucket(spec, rows(np.array([0, 0, 1]), 1))
    ids = np.array([str(i) for i in range(20)], dtype=object)
    models = EntityModels(np.arange(20.0), np.zeros(21, np.int64), np.zeros(0, np.int64),
                          np.zeros(0), np.ones(20, bool), np.zeros(20, np.int32), np.ones(20))  # fmt: skip
    from raymix.data.avro.priors import PriorModels

    prior_models = PriorModels(ids, models, np.ones(20, bool))
    seen = []
    for actor in range(3):
        got = bucket_prior(spec, b.train, prior_models, actor, 3, BUCKETS)
        assert np.all(stable_bucket(got.carried.ids, BUCKETS) % 3 == actor)
        assert got.priors.n_entities == 2 and got.priors.has_intercept.all()
        np.testing.assert_array_equal(got.priors.mean, [0.0, 1.0])  # users 0 and 1's means
        np.testing.assert_array_equal(got.carried.models.intercepts, got.carried.ids.astype(float))  # fmt: skip
        seen.extend(got.carried.ids.tolist())
    assert sorted(seen) == list(range(2, 20))


def test_take_models_and_typed_ids():
    m = EntityModels(np.array([1.0, 2.0, 3.0]), np.array([0, 2, 2, 3]), np.array([0, 2, 1]),
                     np.array([0.5, 0.6, 0.7]), np.ones(3, bool), np.zeros(3, np.int32),
                     np.arange(6.0), np.arange(9 + 1 + 4, dtype=float))  # fmt: skip
    t = take_models(m, np.array([2, 0]))
    assert t.intercepts.tolist() == [3.0, 1.0] and t.coef_ptr.tolist() == [0, 1, 3]
    assert t.coef_index.tolist() == [1, 0, 2] and t.coef_value.tolist() == [0.7, 0.5, 0.6]
    assert t.variances.tolist() == [4.0, 5.0, 0.0, 1.0, 2.0]
    assert t.covariances.tolist() == [10.0, 11.0, 12.0, 13.0] + list(range(9))
    assert typed_ids(np.array(["3", "-1"], object), np.zeros(0, np.int64)).tolist() == [3, -1]
    with pytest.raises(DataError, match="'u7' is not an integer"):
        typed_ids(np.array(["u7"], object), np.zeros(0, np.int64), "p.avro")


def test_scoring_models_without_a_prior_is_todays_fits():
    spec = spec_of(feature_bag="g")
    b = bucket(spec, rows(np.array([0, 1, 1]), 1), rows(np.array([1, 9]), 2, first_uid=99))
    models = fit(spec, b)
    use = scoring_models(b.train, b.validation.entities, b.val_model_group, models, None)
    assert use.models is models and use.train_model.tolist() == [0, 1]
    assert use.val_model.tolist() == [1, -1]
