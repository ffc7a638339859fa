"""The prior reader: raymix / GDMix / Photon ML model files as Gaussian priors (no Ray)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import fastavro
import numpy as np
import pytest

from raymix.data.avro.models import model_record, write_models
from raymix.data.avro.priors import (
    prior_models_dir,
    read_prior_models,
    read_records,
    write_covariances,
)
from raymix.errors import DataError
from raymix.solvers.entity import EntityModels

PHOTON = Path(__file__).parents[3] / "../shared/data/photon-fixtures/gameModel"
PHOTON_FILE = PHOTON / "fixed-effect/globalShard/coefficients/part-00000.avro"
NAMES = [("a", ""), ("b", "x"), ("c", "")]


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_models(path, records)


def test_features_are_matched_by_name_and_term_not_index(tmp_path):
    rec = model_record("u1", 0.5, np.array([0, 1, 2]), np.array([1.0, 2.0, 3.0]), NAMES,
                       "logistic", variances=np.array([0.1, 0.2, 0.3, 0.4]))  # fmt: skip
    _write(tmp_path / "m" / "part-00000.avro", [rec])
    today = [("c", ""), ("new", ""), ("a", "")]  # reordered, one added, ("b", "x") dropped
    got = read_prior_models(tmp_path / "m", today, "logistic", len(today))
    m = got.models
    assert list(got.ids) == ["u1"] and got.has_intercept.tolist() == [True]
    assert m.intercepts.tolist() == [0.5]
    assert m.coef_index.tolist() == [0, 2]  # c -> 0, a -> 2
    assert m.coef_value.tolist() == [3.0, 1.0]
    assert np.asarray(m.variances).tolist() == [0.1, 0.4, 0.2]
    p = got.priors(weight=2.0, forgetting=0.5).prior(0)
    np.testing.assert_allclose(p.precision, [1 / 0.1, 1 / 0.4, 1 / 0.2])
    np.testing.assert_allclose(p.mean, [0.5, 3.0, 1.0])


def test_prior_models_dir_layouts(tmp_path):
    rec = model_record("g", 0.0, np.zeros(0, np.int64), np.zeros(0), None, "linear",
                       variances=np.array([1.0]))  # fmt: skip
    _write(tmp_path / "out" / "per_user" / "models" / "part-00000.avro", [rec])
    assert prior_models_dir(tmp_path / "out", "per_user") == tmp_path / "out/per_user/models"
    assert prior_models_dir(tmp_path / "out/per_user/models", "x") == tmp_path / "out/per_user/models"  # fmt: skip
    assert prior_models_dir(PHOTON, "global", "fixed_effect") == PHOTON_FILE.parent
    with pytest.raises(DataError, match="no models of coordinate 'nope'"):
        prior_models_dir(tmp_path / "out", "nope")


def test_photon_file_with_a_null_default_on_a_string_is_read():
    # a strict reader refuses the file
    with pytest.raises(fastavro.schema.SchemaParseException), open(PHOTON_FILE, "rb") as handle:
        list(fastavro.reader(handle))
    # the fixture was written without variances: read, then refused as a prior, naming it
    with pytest.raises(DataError, match="has no variances") as info:
        read_prior_models(PHOTON_FILE, None, "linear", 0)
    assert str(PHOTON_FILE.name) in str(info.value)


def _photon_with_variances(tmp_path) -> Path:
    """The Photon ML fixture rewritten with variances under its own (lenient) writer schema."""
    raw = PHOTON_FILE.read_bytes()
    stream = io.BytesIO(raw[4:])
    meta = fastavro.schemaless_reader(stream, {"type": "map", "values": "bytes"}, None)
    schema_json = json.loads(meta["avro.schema"])
    schema = fastavro.parse_schema(schema_json, _ignore_default_error=True)
    records = read_records(PHOTON_FILE)
    for r in records:
        r["variances"] = [{**m, "value": 0.5 + i} for i, m in enumerate(r["means"])]
    out = tmp_path / "photon" / "fixed-effect" / "globalShard" / "coefficients"
    out.mkdir(parents=True)
    with open(out / "part-00000.avro", "wb") as handle:
        fastavro.writer(handle, schema, records, codec="null")
    strict = pytest.raises(fastavro.schema.SchemaParseException)  # as strict readers see it
    with strict, open(out / "part-00000.avro", "rb") as handle:
        list(fastavro.reader(handle))
    return tmp_path / "photon"


def test_photon_layout_read_as_a_fixed_effect_prior(tmp_path):
    root = _photon_with_variances(tmp_path)
    names = [("s", "0"), ("u", "1"), ("zz", "")]
    got = read_prior_models(prior_models_dir(root, "global", "fixed_effect"), names, "linear", 3)
    p = got.fixed_effect_prior()
    assert p.index.tolist() == [0, 1] and p.has_intercept
    np.testing.assert_allclose(p.mean, [3.5525033712866567, -0.5459171817110414, -0.8386040284501038])  # fmt: skip
    np.testing.assert_allclose(p.precision, [1 / 0.5, 1 / 2.5, 1 / 1.5])
    with pytest.raises(DataError, match="not a logistic model"):
        read_prior_models(prior_models_dir(root, "global", "fixed_effect"), names, "logistic", 3)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_variances_name_the_file(tmp_path, bad):
    rec = model_record("u1", 0.5, np.array([0]), np.array([1.0]), NAMES, "linear",
                       variances=np.array([1.0, bad]))  # fmt: skip
    path = _write(tmp_path / "part-00000.avro", [rec])
    with pytest.raises(DataError, match="must be finite and > 0") as info:
        read_prior_models(path, NAMES, "linear", 3)
    assert "part-00000.avro" in str(info.value)


def test_corrupt_file_names_it(tmp_path):
    rec = model_record("u1", 0.5, np.array([0]), np.array([1.0]), NAMES, "linear",
                       variances=np.array([1.0, 1.0]))  # fmt: skip
    path = _write(tmp_path / "part-00000.avro", [rec])
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="cannot read Avro model file") as info:
        read_prior_models(path, NAMES, "linear", 3)
    assert "part-00000.avro" in str(info.value)
    (tmp_path / "x.avro").write_bytes(b"hello")
    with pytest.raises(DataError, match="not an Avro object container"):
        read_prior_models(tmp_path / "x.avro", NAMES, "linear", 3)


def test_covariances_beside_the_file_follow_the_feature_matching(tmp_path):
    # two entities over features a, c (theta [b, w_a, w_c]) with their covariances
    cov0 = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 3.0]])
    cov1 = np.array([[1.0, 0.5], [0.5, 4.0]])
    models = EntityModels(
        np.array([0.1, 0.2]), np.array([0, 2, 3]), np.array([0, 2, 2]), np.array([1.0, 2.0, 3.0]),
        np.ones(2, bool), np.zeros(2, np.int32), np.array([2.0, 1.0, 3.0, 1.0, 4.0]),
        np.r_[cov0.ravel(), cov1.ravel()],
    )  # fmt: skip
    recs = [
        model_record("e0", 0.1, np.array([0, 2]), np.array([1.0, 2.0]), NAMES, "linear",
                     variances=np.array([2.0, 1.0, 3.0])),
        model_record("e1", 0.2, np.array([2]), np.array([3.0]), NAMES, "linear",
                     variances=np.array([1.0, 4.0])),
    ]  # fmt: skip
    _write(tmp_path / "m" / "part-00000.avro", recs)
    write_covariances(tmp_path / "m" / "part-00000.covariance.arrow", ["e0", "e1"], models,
                      np.array([0, 1]))  # fmt: skip
    today = [("c", ""), ("a", "")]  # reordered: c -> 0, a -> 1
    got = read_prior_models(tmp_path / "m", today, "linear", 2)
    pri = got.priors()
    p0 = pri.prior(0)
    assert p0.full and p0.index.tolist() == [0, 1]
    perm = [0, 2, 1]  # [b, w_c, w_a] in the stored [b, w_a, w_c]
    np.testing.assert_allclose(p0.precision, np.linalg.inv(cov0[np.ix_(perm, perm)]))
    np.testing.assert_allclose(pri.prior(1).precision, np.linalg.inv(cov1))
    # a dropped feature is marginalized out of the covariance
    got = read_prior_models(tmp_path / "m", [("a", "")], "linear", 1)
    keep = [0, 1]
    np.testing.assert_allclose(got.priors().prior(0).precision, np.linalg.inv(cov0[np.ix_(keep, keep)]))  # fmt: skip
    shutil.rmtree(tmp_path / "m")


def test_select_finds_ids(tmp_path):
    recs = [model_record(str(i), 0.0, np.zeros(0, np.int64), np.zeros(0), None, "linear",
                         variances=np.array([1.0])) for i in ("a", "b", "c")]  # fmt: skip
    got = read_prior_models(_write(tmp_path / "p.avro", recs), None, "linear", 0)
    rows, found = got.select(["c", "z", "a"])
    assert rows.tolist() == [2, -1, 0] and found.tolist() == [True, False, True]
