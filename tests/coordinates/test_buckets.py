"""A bucket actor's pure functions, without Ray: a bucket's fit is each entity's own fit."""

import numpy as np
import pytest
import scipy.sparse as sp

from raymix import RandomEffect
from raymix.coordinates.buckets import (
    BucketRows,
    bucket_members,
    entity_problem,
    fit_bucket,
    group_train,
    loaded,
    save_bucket_models,
    score_bucket,
    warm_start_models,
    with_validation,
    write_bucket_models,
)
from raymix.data.avro.models import read_models
from raymix.data.grouping import stable_bucket
from raymix.data.rows import Rows
from raymix.errors import RecipeError
from raymix.solvers.entity import EntityProblem, fit_entities
from raymix.solvers.variance_components import prior_moments

DIM = 6


def make_rows(seed=0, n=400, entities=25, first_uid=0, string_ids=False) -> Rows:
    rng = np.random.default_rng(seed)
    size = rng.zipf(1.5, entities).astype(float)
    entity = rng.choice(entities, size=n, p=size / size.sum())
    mask = rng.uniform(size=(n, DIM)) < 0.5
    X = sp.csr_matrix(np.where(mask, rng.normal(size=(n, DIM)), 0.0))
    w = rng.normal(size=(entities, DIM))
    logit = np.asarray(X.multiply(w[entity]).sum(axis=1)).ravel()
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(float)
    uid = rng.permutation(n).astype(np.int64) + first_uid
    ids = np.array([f"e{e}" for e in entity], dtype=object) if string_ids else entity
    return Rows(
        uid=uid,
        label=y,
        weight=rng.uniform(0.5, 2.0, n),
        offset=rng.normal(scale=0.1, size=n),
        X=X,
        entity=ids.astype(np.int64) if not string_ids else ids,
    )


def spec(**kw) -> RandomEffect:
    return RandomEffect(name="re", entity="e", feature_bag="g", **kw)


def bucket_of(rows: Rows, the_spec: RandomEffect, val: Rows | None = None, seed=3) -> BucketRows:
    row_bucket = stable_bucket(rows.entity, 7)
    bucket = group_train(the_spec, seed, rows, row_bucket)
    return bucket if val is None else with_validation(bucket, val)


def test_group_train_buckets_are_those_of_the_first_rows():
    for string_ids in (False, True):
        rows = make_rows(string_ids=string_ids)
        row_bucket = stable_bucket(rows.entity, 7)
        _, first = np.unique(rows.entity, return_index=True)  # the computation it replaces
        expected = row_bucket[first]
        bucket = group_train(spec(), 0, rows, row_bucket)
        np.testing.assert_array_equal(bucket.bucket_of_entity, expected)
        np.testing.assert_array_equal(
            bucket.bucket_of_entity, stable_bucket(bucket.train.entities, 7)
        )


def test_fit_bucket_is_each_entity_fitted_alone():
    the_spec = spec(l2=2.0, min_samples=3, max_samples=30, sparsity_threshold=0.0)
    rows = make_rows()
    bucket = bucket_of(rows, the_spec)
    g = bucket.train
    assert not g.has_model.all() and not g.active.all()  # both rules at work
    offsets = np.random.default_rng(5).normal(size=len(g.rows))
    fit = fit_bucket(the_spec, bucket, offsets)
    assert fit.entities == int(g.has_model.sum()) == fit.models.n_entities
    assert fit.not_converged == 0 and fit.prior_moments == (0.0, 0)
    X = g.rows.X
    m = 0
    for k in range(g.entities.size):
        lo, hi = g.entity_ptr[k], g.entity_ptr[k + 1]
        if not g.has_model[k]:
            np.testing.assert_array_equal(fit.train_scores[lo:hi], 0.0)
            continue
        keep = np.flatnonzero(g.active[lo:hi]) + lo
        alone = fit_entities(
            EntityProblem(
                np.array([0, keep.size]), X[keep], g.rows.label[keep], g.fit_weight[keep],
                offsets[keep],
            ),
            l2=2.0,
            tol=the_spec.solver.tolerance,
            max_iter=the_spec.solver.max_iter,
        )  # fmt: skip
        b, idx, val = fit.models.coefficients(m)
        b1, idx1, val1 = alone.coefficients(0)
        assert b == b1
        np.testing.assert_array_equal(idx, idx1)
        np.testing.assert_array_equal(val, val1)
        w = np.zeros(DIM)
        w[idx] = val
        np.testing.assert_allclose(fit.train_scores[lo:hi], X[lo:hi] @ w + b, rtol=1e-12)
        m += 1
    assert m == fit.models.n_entities


def test_l2_overrides_the_spec_and_auto_needs_it():
    rows = make_rows()
    offsets = np.zeros(len(rows))
    a = fit_bucket(spec(l2=5.0), bucket_of(rows, spec(l2=5.0)), offsets)
    rows = make_rows()
    b = fit_bucket(spec(l2=1.0), bucket_of(rows, spec(l2=1.0)), offsets, l2=5.0)
    np.testing.assert_array_equal(a.models.coef_value, b.models.coef_value)
    np.testing.assert_array_equal(a.train_scores, b.train_scores)
    with pytest.raises(RecipeError, match="coordinates.re.l2"):
        fit_bucket(spec(l2="auto"), bucket_of(make_rows(), spec(l2="auto")), offsets)


def test_moments_fit_keeps_every_coefficient_and_its_full_variance():
    the_spec = spec(l2=3.0, variance="simple", sparsity_threshold=0.5, regularize_intercept=True)
    bucket = bucket_of(make_rows(), the_spec)
    offsets = np.zeros(len(bucket.train.rows))
    em = fit_bucket(the_spec, bucket, offsets, moments=True)
    problem = entity_problem(bucket.train, offsets)
    full = fit_entities(
        problem, l2=3.0, regularize_intercept=True, variance="full", threshold=0.0,
        tol=the_spec.solver.tolerance, max_iter=the_spec.solver.max_iter,
    )  # fmt: skip
    np.testing.assert_array_equal(em.models.coef_value, full.coef_value)
    np.testing.assert_array_equal(em.models.variances, full.variances)
    assert em.prior_moments == prior_moments(full, True)
    kept = fit_bucket(the_spec, bucket, offsets)  # the run's models: threshold and variances
    assert kept.models.coef_value.size < em.models.coef_value.size
    assert np.all(np.abs(kept.models.coef_value) > 0.5)
    assert kept.models.variances.size == kept.models.variance_ptr[-1]


def test_warm_start_from_the_solution_changes_nothing():
    the_spec = spec(l2=1.0, sparsity_threshold=0.0)
    bucket = bucket_of(make_rows(), the_spec)
    offsets = np.zeros(len(bucket.train.rows))
    first = fit_bucket(the_spec, bucket, offsets)
    again = fit_bucket(the_spec, bucket, offsets, warm_start=first.models)
    np.testing.assert_allclose(again.models.coef_value, first.models.coef_value, atol=1e-7)
    assert again.models.n_iter.max() <= 1


def test_scores_of_validation_rows_use_their_entity_model_or_none():
    the_spec = spec(min_samples=2)
    train = make_rows(seed=0, entities=20)
    val = make_rows(seed=1, n=150, entities=30, first_uid=1000)  # entities 20-29 are unseen
    bucket = bucket_of(train, the_spec, val)
    fit = fit_bucket(the_spec, bucket, np.zeros(len(bucket.train.rows)))
    g, v = bucket.train, bucket.validation
    again = score_bucket(bucket, fit.models)
    np.testing.assert_array_equal(again.train_scores, fit.train_scores)
    np.testing.assert_array_equal(again.val_scores, fit.val_scores)
    assert again.models is fit.models and again.entities == 0
    model = np.cumsum(g.has_model) - 1
    for k, e in enumerate(v.entities):
        lo, hi = v.entity_ptr[k], v.entity_ptr[k + 1]
        t = np.searchsorted(g.entities, e)
        if t < g.entities.size and g.entities[t] == e and g.has_model[t]:
            b, idx, values = fit.models.coefficients(int(model[t]))
            w = np.zeros(DIM)
            w[idx] = values
            np.testing.assert_allclose(fit.val_scores[lo:hi], v.rows.X[lo:hi] @ w + b)
        else:
            np.testing.assert_array_equal(fit.val_scores[lo:hi], 0.0)
    none = score_bucket(bucket, None)
    assert none.models is None
    np.testing.assert_array_equal(none.train_scores, np.zeros(len(g.rows)))
    np.testing.assert_array_equal(none.val_scores, np.zeros(len(v.rows)))


def test_an_actor_without_training_rows_scores_its_validation_rows_zero():
    empty = make_rows(n=0)
    bucket = bucket_of(empty, spec(), make_rows(seed=1, n=50, first_uid=1000))
    fit = fit_bucket(spec(), bucket, np.zeros(0))
    assert fit.entities == 0 and fit.train_scores.size == 0
    np.testing.assert_array_equal(fit.val_scores, np.zeros(50))


def test_loaded_reports_rows_in_the_grouped_order_and_local_entity_codes():
    bucket = bucket_of(make_rows(), spec(), make_rows(seed=1, n=90, first_uid=1000))
    report = loaded(bucket)
    np.testing.assert_array_equal(report.train.uid, bucket.train.rows.uid)
    np.testing.assert_array_equal(report.train.offset, bucket.train.rows.offset)
    v = bucket.validation
    assert report.n_val_entities == v.entities.size
    np.testing.assert_array_equal(report.validation.uid, v.rows.uid)
    np.testing.assert_array_equal(report.validation.weight, np.ones(90))
    codes = report.validation.entity_code
    np.testing.assert_array_equal(v.entities[codes], v.rows.entity)
    alone = loaded(bucket_of(make_rows(), spec()))
    assert alone.n_val_entities == 0 and alone.validation.uid.size == 0
    assert alone.validation.entity_code.dtype == np.int64


def test_bucket_members_group_positions_by_bucket():
    got = bucket_members(np.array([4, 1, 4, 0, 1, 4]))
    assert [b for b, _ in got] == [0, 1, 4]
    for (_, members), expected in zip(got, ([3], [1, 4], [0, 2, 5]), strict=True):
        np.testing.assert_array_equal(members, expected)
    assert bucket_members(np.zeros(0, np.int64)) == []


def test_model_files_one_per_bucket_and_checkpoint_round_trip(tmp_path):
    the_spec = spec(min_samples=2)
    bucket = bucket_of(make_rows(string_ids=True), the_spec)
    (tmp_path / "avro").mkdir()
    (tmp_path / "table").mkdir()
    fit = fit_bucket(the_spec, bucket, np.zeros(len(bucket.train.rows)))
    written = write_bucket_models(the_spec, bucket, fit.models, str(tmp_path / "avro"), None)
    modelled = bucket.train.entities[bucket.train.has_model]
    buckets = stable_bucket(modelled, 7)
    assert sorted(written) == [str(tmp_path / "avro" / f"part-{b:05d}.avro") for b in sorted(set(buckets))]  # fmt: skip
    for path in written:
        number = int(path[-10:-5])
        ids = [r["modelId"] for r in read_models(path)]
        assert ids == list(modelled[buckets == number])
    assert write_bucket_models(the_spec, bucket, None, str(tmp_path), None) == []
    for directory, files in (
        (tmp_path / "avro", written),
        (tmp_path / "table", save_bucket_models(bucket, fit.models, str(tmp_path / "table"), 3)),
    ):
        assert files
        models, found = warm_start_models(bucket, str(directory), None, DIM)
        assert found == modelled.size
        np.testing.assert_allclose(models.intercepts, fit.models.intercepts)
        np.testing.assert_array_equal(models.coef_index, fit.models.coef_index)
        np.testing.assert_allclose(models.coef_value, fit.models.coef_value)
    assert save_bucket_models(bucket, None, str(tmp_path), 0) == []
