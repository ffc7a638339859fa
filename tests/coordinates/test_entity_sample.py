"""The report's sample of a random effect's entities: rows, intercepts and slopes of the
entities fitted, read where the bucket holds them (no Ray)."""

import numpy as np

from raymix.coordinates.buckets import fit_bucket
from raymix.coordinates.entity_sample import concatenate_samples, sample_entities
from tests.coordinates.test_buckets import bucket_of, make_rows, spec


def entity(s):
    """The sample's entities as (rows, intercept, slope norm) tuples."""
    return list(zip(s.rows.tolist(), s.intercept.tolist(), s.slope_norm.tolist(), strict=True))


def fitted(min_samples=0):
    the_spec = spec(l2=1.0, min_samples=min_samples)
    bucket = bucket_of(make_rows(), the_spec)
    fit = fit_bucket(the_spec, bucket, np.zeros(len(bucket.train.rows.uid)))
    return bucket, fit.models


def test_every_fitted_entity_with_its_rows_and_model():
    bucket, models = fitted(min_samples=3)
    train = bucket.train
    sample = sample_entities(train, models, k=1000, seed=0)
    modelled = np.flatnonzero(train.has_model)
    assert 0 < modelled.size < train.entities.size  # min_samples left some without a model
    assert sample.entities == sample.n == modelled.size
    np.testing.assert_array_equal(sample.rows, np.diff(train.entity_ptr)[modelled])
    np.testing.assert_array_equal(sample.intercept, models.intercepts)
    for k in range(models.n_entities):
        w = models.coef_value[models.coef_ptr[k] : models.coef_ptr[k + 1]]
        assert sample.slope_norm[k] == np.sqrt(np.sum(w**2))
    np.testing.assert_array_equal(sample.slopes, models.coef_value)


def test_a_seeded_sample_of_k_without_replacement_lines_up():
    bucket, models = fitted()
    full = sample_entities(bucket.train, models, k=10**6, seed=0)
    part = sample_entities(bucket.train, models, k=7, seed=5)
    assert part.n == 7 and part.entities == full.entities
    again = sample_entities(bucket.train, models, k=7, seed=5)
    np.testing.assert_array_equal(part.intercept, again.intercept)
    population = entity(full)
    assert all(e in population for e in entity(part))  # each sampled entity, as it is
    assert len(set(entity(part))) == 7  # without replacement


def test_no_models_and_concatenation():
    bucket, models = fitted()
    empty = sample_entities(bucket.train, None, k=5, seed=0)
    assert empty.n == 0 and empty.entities == 0
    one = sample_entities(bucket.train, models, k=4, seed=1)
    both = concatenate_samples([one, empty, one])
    assert both.n == 8 and both.entities == 2 * one.entities
    assert both.slopes.size == 2 * one.slopes.size
