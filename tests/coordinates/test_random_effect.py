"""The random-effect coordinate driven in-process: holders that keep their rows in this
process (the pure functions a bucket actor calls, without Ray) behind ``BucketHolders``."""

import numpy as np
import pytest

from raymix import RandomEffect
from raymix.coordinates.base import RowIndex
from raymix.coordinates.buckets import (
    fit_bucket,
    group_train,
    loaded,
    project_bucket,
    save_bucket_models,
    score_bucket,
    shifted_intercepts,
    with_validation,
    write_bucket_models,
)
from raymix.coordinates.random_effect import RandomEffectCoordinate
from raymix.data.avro.models import read_models
from raymix.data.routing import route_file, rows_of_parts
from raymix.solvers.variance_components import next_l2, prior_moments

from ..data.test_routing import source, write


class LocalHolders:
    """``n`` holders in this process, routed as the bucket actors are."""

    def __init__(self, n: int, buckets: int = 8):
        self.n, self.buckets, self.rebuilds = n, buckets, 0
        self.state: dict[str, list] = {}  # name -> per holder [spec, rows, models]

    def __len__(self):
        return self.n

    def load(self, spec, seed, train, validation, names):
        def parts(src):
            routed = [route_file(src, path, self.n, self.buckets) for path in src.files]
            return [[(p, r[a]) for p, r in zip(src.files, routed, strict=True)] for a in range(self.n)]  # fmt: skip

        held = []
        for a, train_parts in enumerate(parts(train)):
            rows, bucket = rows_of_parts(iter(train_parts), train)
            grouped = group_train(spec, seed, rows, bucket)
            if validation is not None:
                grouped = with_validation(grouped, rows_of_parts(iter(parts(validation)[a]), validation)[0])  # fmt: skip
            held.append([spec, grouped, None])
        self.state[spec.name] = held

    def loaded(self, name):
        return [loaded(rows) for _, rows, _ in self.state[name]]

    def warm_start(self, name):
        raise AssertionError("no warm start here")

    def share(self, values):
        return list(values)

    def fit(self, name, offsets, command):
        fits = []
        for held, piece in zip(self.state[name], offsets, strict=True):
            spec, rows, models = held
            fit = fit_bucket(spec, rows, piece, l2=command.l2, moments=command.moments, variance_scale=command.variance_scale, warm_start=models, l2s=command.l2s, coupling=command.coupling)  # fmt: skip
            held[2] = fit.models
            fits.append(fit)
        return fits

    def project(self, name, labels, offsets, l2, l2s):
        return [project_bucket(spec, rows, y, o, l2=l2, l2s=l2s) for (spec, rows, _), y, o in zip(self.state[name], labels, offsets, strict=True)]  # fmt: skip

    def score(self, name):
        return [score_bucket(rows, models) for _, rows, models in self.state[name]]

    def shift_intercepts(self, name, by):
        for held in self.state[name]:
            held[2] = shifted_intercepts(held[2], by)
        return self.score(name)

    def reconfigure(self, spec):
        for held in self.state[spec.name]:
            held[0], held[2] = spec, None

    def write_models(self, name, directory, names):
        return [p for s, r, m in self.state[name] for p in write_bucket_models(s, r, m, directory, names)]  # fmt: skip

    def save_models(self, name, directory):
        return [p for a, (_, r, m) in enumerate(self.state[name]) for p in save_bucket_models(r, m, directory, a)]  # fmt: skip

    def snapshot(self, name):
        return [models for _, _, models in self.state[name]]

    def restore(self, name, saved):
        for held, models in zip(self.state[name], saved, strict=True):
            held[2] = models

    def close(self, name):
        self.state.pop(name)


@pytest.fixture
def data(tmp_path):
    train = [write(tmp_path / f"t{k}.parquet", 300, k) for k in range(3)]
    val = [write(tmp_path / "v.parquet", 200, 7)]
    return source(*train), source(*val)


def coordinate(data, holders, **kw):
    spec = RandomEffect(name="re", entity="user_id", feature_bag="g", **kw)
    c = RandomEffectCoordinate(spec, data[0], data[1], None, pool=holders, seed=0)
    c.start()
    train, val = c.holders()
    train_index = RowIndex([h.uid for h in train], "training")
    val_index = RowIndex([h.uid for h in val], "validation")
    c.bind(train_index, val_index)
    codes = np.full(len(val_index), -1)
    for h in val:
        codes[val_index.positions(h.uid, "test")] = h.entity_code
    return c, len(train_index), len(val_index), codes


def test_scores_and_models_do_not_depend_on_the_number_of_holders(data, tmp_path):
    results = []
    for n in (1, 3):
        c, n_train, n_val, codes = coordinate(data, LocalHolders(n), min_samples=3)
        offsets = np.random.default_rng(0).normal(scale=0.2, size=n_train)
        outcome = c.fit(offsets, np.zeros(n_val))
        assert outcome.info["entities"] > 0 and outcome.info["actor_rebuilds"] == 0
        assert "l2" not in outcome.info
        scored = c.fit(offsets, np.zeros(n_val), refit=False)  # the held models, no refit
        np.testing.assert_array_equal(scored.train, outcome.train)
        assert scored.info == {}
        files = c.write_models(tmp_path / f"n{n}")
        records = sorted((r["modelId"], r["means"]) for r in read_models(tmp_path / f"n{n}"))
        results.append((outcome, records, codes, len(files)))
        c.close()
    (one, records_one, codes_one, _), (three, records_three, codes_three, files) = results
    np.testing.assert_array_equal(one.train, three.train)
    np.testing.assert_array_equal(one.validation, three.validation)
    assert records_one == records_three and files > 1
    assert one.info["entities"] == three.info["entities"]
    # validation entity codes: one per entity, over all holders (the same partition)
    assert codes_three.min() == 0 and len(np.unique(codes_three)) == len(np.unique(codes_one))
    pairs = set(zip(codes_one.tolist(), codes_three.tolist(), strict=True))
    assert len(pairs) == len(np.unique(codes_one))


def test_auto_l2_is_the_em_fixed_point(data):
    holders = LocalHolders(2)
    c, n_train, n_val, _ = coordinate(data, holders, l2="auto", regularize_intercept=True)
    offsets = np.zeros(n_train)
    outcome = c.fit(offsets, np.zeros(n_val))
    l2 = outcome.info["l2"]
    assert outcome.info["em_iterations"] >= 2 and l2 != 1.0
    fits = [
        fit_bucket(spec, rows, offsets[c._train_pos[a]], l2=l2, moments=True)
        for a, (spec, rows, _) in enumerate(holders.state["re"])
    ]
    assert next_l2([f.prior_moments for f in fits], l2) == pytest.approx(l2, rel=1e-2)
    assert all(f.prior_moments == prior_moments(f.models, True) for f in fits)
    c.reconfigure(c.spec.model_copy(update={"l2": 2.0}))
    assert c._auto_l2 is None and all(m is None for m in holders.snapshot("re"))
    assert "l2" not in c.fit(offsets, np.zeros(n_val)).info


def test_snapshot_and_restore_put_the_models_back(data):
    holders = LocalHolders(2)
    c, n_train, n_val, _ = coordinate(data, holders)
    first = c.fit(np.zeros(n_train), np.zeros(n_val))
    saved = c.snapshot()
    c.fit(np.full(n_train, 0.5), np.zeros(n_val))
    c.restore(saved)
    again = c.fit(np.zeros(n_train), np.zeros(n_val), refit=False)
    np.testing.assert_array_equal(again.train, first.train)
    np.testing.assert_array_equal(again.validation, first.validation)
