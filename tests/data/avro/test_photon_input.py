"""The compiled Photon ML input reader against fastavro's decoding of the same files."""

from __future__ import annotations

from pathlib import Path

import fastavro
import numpy as np
import pytest

from raymix.data.avro.photon_input import PhotonColumns, read_photon
from raymix.data.metadata import load_feature_list
from raymix.errors import DataError
from tests.photon_files import FEATURE

FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "photon-fixtures"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/data/photon-fixtures")
YAHOO = FIXTURES / "input" / "yahoo-music-test.avro"
BAGS = ("features", "userFeatures", "songFeatures")
COLUMNS = PhotonColumns(ids=("userId", "songId", "artistId"), bags=BAGS)

pytestmark = pytest.mark.skipif(not YAHOO.is_file(), reason="Photon fixtures not present")


def _lists():
    return {
        b: load_feature_list(FIXTURES / "feature-lists" / b, "\t")
        for b in ("userFeatures", "songFeatures")
    }


def _reference(path, lists):
    """Ids, responses and per-bag (row, column, value) triples, one record at a time."""
    with open(path, "rb") as f:
        records = list(fastavro.reader(f))
    out = {"ids": {k: np.array([r[k] for r in records]) for k in COLUMNS.ids}}
    out["response"] = np.array([float(r["response"]) for r in records])
    for bag in BAGS:
        pairs = lists.get(bag)
        if pairs is None:
            pairs = sorted({(x["name"], x["term"] or "") for r in records for x in r[bag]})
        index = {p: j for j, p in enumerate(pairs)}
        triples = [
            (i, index[(x["name"], x["term"] or "")], x["value"])
            for i, r in enumerate(records)
            for x in r[bag]
            if (x["name"], x["term"] or "") in index
        ]
        out[bag] = (pairs, triples)
    return out, len(records)


@pytest.mark.parametrize("with_lists", [True, False])
def test_yahoo_matches_fastavro(with_lists):
    lists = _lists() if with_lists else {}
    rows = read_photon(YAHOO, COLUMNS, lists)
    ref, n = _reference(YAHOO, lists)
    assert n == 9195 and rows.response.size == n
    for k in COLUMNS.ids:
        np.testing.assert_array_equal(rows.ids[k], ref["ids"][k])
    np.testing.assert_array_equal(rows.response, ref["response"])
    np.testing.assert_array_equal(rows.weight, np.ones(n))
    np.testing.assert_array_equal(rows.offset, np.zeros(n))
    for bag in BAGS:
        pairs, triples = ref[bag]
        assert rows.names[bag] == pairs
        csr = rows.bags[bag]
        coo = csr.tocoo()
        got = list(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True))
        assert got == triples  # the same triples in file order: exact values, indices
        assert csr.shape == (n, len(pairs))


def test_features_not_in_the_list_are_dropped_and_counted():
    rows = read_photon(YAHOO, COLUMNS, _lists())
    # userFeatures holds terms 0..29 for every row; the list names 20 of them
    assert rows.bags["userFeatures"].nnz == 9195 * 20
    assert rows.dropped["userFeatures"] == 9195 * 10
    assert rows.dropped["songFeatures"] == 0 or rows.bags["songFeatures"].shape[1] == 20


def _write(path, records, schema):
    with open(path, "wb") as f:
        fastavro.writer(f, schema, records, codec="deflate")


def _schema(response=True, uid=True):
    fields = [{"name": "memberId", "type": "string"}]
    if uid:
        fields.append({"name": "uid", "type": ["null", "string"]})
    if response:
        fields.append({"name": "response", "type": "double"})
    fields += [
        {"name": "weight", "type": ["null", "double"]},
        {"name": "offset", "type": ["null", "float"]},
        {"name": "tags", "type": "long"},
        {"name": "features", "type": {"type": "array", "items": FEATURE}},
    ]
    return {"type": "record", "name": "Example", "fields": fields}


def test_string_ids_uid_weight_offset_and_null_terms(tmp_path):
    records = [
        {"memberId": "m1", "uid": "a", "response": 1.0, "weight": 2.0, "offset": 0.5, "tags": -7,
         "features": [{"name": "x", "term": None, "value": 3.0}, {"name": "y", "term": "t", "value": -1.0}]},
        {"memberId": "m2", "uid": None, "response": 0.0, "weight": None, "offset": None, "tags": 1 << 40,
         "features": []},
    ]  # fmt: skip
    path = tmp_path / "x.avro"
    _write(path, records, _schema())
    rows = read_photon(
        path,
        PhotonColumns(ids=("memberId",), bags=("features",)),
        {"features": [("y", "t"), ("x", "")]},
    )
    assert rows.ids["memberId"].tolist() == ["m1", "m2"]
    assert rows.uid.tolist() == ["a", None]
    assert rows.weight.tolist() == [2.0, 1.0] and rows.offset.tolist() == [0.5, 0.0]
    assert rows.bags["features"].toarray().tolist() == [[-1.0, 3.0], [0.0, 0.0]]


def test_truncated_file_names_the_file(tmp_path):
    raw = YAHOO.read_bytes()
    path = tmp_path / "cut.avro"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated") as info:
        read_photon(path, COLUMNS)
    assert str(path) in str(info.value)


def test_missing_response_is_refused(tmp_path):
    path = tmp_path / "nores.avro"
    _write(path, [], _schema(response=False))
    with pytest.raises(DataError, match="no field 'response'") as info:
        read_photon(path, PhotonColumns(ids=("memberId",), bags=("features",)))
    assert str(path) in str(info.value)


def test_a_bag_of_the_wrong_type_is_refused(tmp_path):
    path = tmp_path / "bad.avro"
    _write(path, [], _schema())
    with pytest.raises(DataError, match="bag 'tags'"):
        read_photon(path, PhotonColumns(ids=("memberId",), bags=("tags",)))


def test_not_avro(tmp_path):
    path = tmp_path / "x.avro"
    path.write_bytes(b"hello world")
    with pytest.raises(DataError, match="not an Avro"):
        read_photon(path, COLUMNS)
