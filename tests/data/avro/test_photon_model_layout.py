"""Photon ML's model layout: the fixture's 2016 model file (a ``null`` default on a ``string``
field, which strict Avro parsers reject) reads back with the names and terms it was written
with, through every reader of model files."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import fastavro
import numpy as np
import pytest

from raymix.data.avro.container import lenient_schema, read_records
from raymix.data.avro.model_reader import model_features, read_avro_model_table
from raymix.data.avro.models import INTERCEPT, read_models
from raymix.errors import DataError

FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "photon-fixtures"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/data/photon-fixtures")
MODEL = FIXTURES / "gameModel" / "fixed-effect" / "globalShard" / "coefficients" / "part-00000.avro"
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="Photon ML fixtures not present")


def _reference_records(file: Path) -> list[dict]:
    """An independent decode: the writer schema with the offending defaults removed by hand
    (then parsed strictly), the container framed here."""
    raw = file.read_bytes()
    stream = io.BytesIO(raw)
    assert stream.read(4) == b"Obj\x01"
    meta = fastavro.schemaless_reader(stream, {"type": "map", "values": "bytes"}, None)
    sync = stream.read(16)
    schema = json.loads(meta["avro.schema"])
    for field in schema["fields"]:
        if field["type"] == "string" and field.get("default", 0) is None:
            del field["default"]
    parsed = fastavro.parse_schema(schema)
    codec = meta.get("avro.codec", b"null").decode()
    out = []
    while stream.tell() < len(raw):
        count = fastavro.schemaless_reader(stream, {"type": "long"}, None)
        size = fastavro.schemaless_reader(stream, {"type": "long"}, None)
        data = stream.read(size)
        assert stream.read(16) == sync
        block = io.BytesIO(zlib.decompress(data, -15) if codec == "deflate" else data)
        out.extend(fastavro.schemaless_reader(block, parsed, None) for _ in range(count))
    return out


def test_strict_parsers_reject_the_fixture():
    """The premise: fastavro's own reader cannot read this file."""
    with open(MODEL, "rb") as handle, pytest.raises(Exception, match="Default value"):
        list(fastavro.reader(handle))


def test_fixture_reads_back_with_its_names_and_terms():
    (expected,) = _reference_records(MODEL)
    triples = [(m["name"], m["term"], m["value"]) for m in expected["means"]]
    assert len(triples) > 1000 and any(t[1] for t in triples)  # terms are really there

    (record,) = list(read_models(MODEL))
    assert record == expected
    assert read_records(MODEL) == [expected]

    pairs = {(n, t) for n, t, _ in triples} - {INTERCEPT}
    assert model_features(MODEL) == pairs
    assert model_features(MODEL.parent) == pairs

    names = sorted(pairs)
    table = read_avro_model_table(MODEL, names).to_pylist()
    assert [row["entity"] for row in table] == [expected["modelId"]]
    value = dict(((n, t), v) for n, t, v in triples)
    (row,) = table
    assert row["intercept"] == value[INTERCEPT]
    assert [names[j] for j in row["index"]] == names  # every feature, ascending
    np.testing.assert_array_equal(row["value"], [value[k] for k in names])


def test_lenient_schema_only_forgives_defaults(tmp_path: Path):
    broken = tmp_path / "part-00000.avro"
    raw = MODEL.read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="part-00000.avro"):
        read_records(broken)
    with pytest.raises(Exception, match="nope"):
        lenient_schema('{"type": "record", "name": "r", "fields": [{"name": "a", "type": "nope"}]}')
