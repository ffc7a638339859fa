"""Photon ML's files as the tests write and read them: the feature record of a bag of GAME
input (``{name, term, value}``, a nullable ``term`` as Photon's own files have it), and an
independent decode of Photon's model files."""

import io
import json
import zlib
from pathlib import Path

import fastavro

FEATURE = {
    "type": "record",
    "name": "Feature",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "term", "type": ["null", "string"]},
        {"name": "value", "type": "double"},
    ],
}


def reference_model_records(file: Path) -> list[dict]:
    """An independent decode of a model file: the writer schema with the ``null`` defaults of
    ``string`` fields (Photon ML's 2016 files have them; strict parsers refuse them) removed by
    hand, then parsed strictly, the container framed here."""
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
