"""TFRecord files: framing, compression and records against the metadata."""

from __future__ import annotations

import gzip
import struct

import numpy as np

from raymix import RecipeError
from raymix.data.tfrecord.framing import masked_crc

from .corpus import DIM, case, rows, set_value, tfrecord


def framed(payloads: list[bytes]) -> bytes:
    """TFRecord framing of ``payloads`` (valid lengths and CRCs)."""
    out = b""
    for data in payloads:
        length = struct.pack("<Q", len(data))
        out += length + struct.pack("<I", masked_crc(length)) + data
        out += struct.pack("<I", masked_crc(data))
    return out


def with_metadata(w, where, **data):
    return w.recipe(where / "train", metadata=str(w.metadata(where)), **data)


@case("plan", "TFRecord file truncated in the middle of a record")
def tfrecord_truncated(w, where):
    path = tfrecord(where / "train" / "part-0.tfrecord", rows(6))
    path.write_bytes(path.read_bytes()[:-30])
    return with_metadata(w, where), [str(path), "corrupt or truncated TFRecord"]


@case("plan", "TFRecord file of random bytes", cli=True)
def tfrecord_garbage(w, where):
    path = where / "train" / "part-0.tfrecord"
    path.parent.mkdir()
    path.write_bytes(np.random.default_rng(0).bytes(500))
    return with_metadata(w, where), [str(path), "corrupt or truncated TFRecord"]


@case("plan", "TFRecord file with flipped bytes (CRC mismatch)")
def tfrecord_flipped_bytes(w, where):
    path = tfrecord(where / "train" / "part-0.tfrecord", rows(4))
    data = bytearray(path.read_bytes())
    for k in range(40, 48):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    return with_metadata(w, where), [str(path), "corrupt or truncated TFRecord"]


@case("plan", "TFRecord file of zero bytes")
def tfrecord_empty(w, where):
    path = where / "train" / "part-0.tfrecord"
    path.parent.mkdir()
    path.write_bytes(b"")
    return with_metadata(w, where), [str(where / "train"), "no rows"]


@case("plan", "TFRecord record that is not an Example")
def tfrecord_not_an_example(w, where):
    path = where / "train" / "part-0.tfrecord"
    path.parent.mkdir()
    path.write_bytes(framed([b"\xff\xff\xff\xff not a protocol buffer"] * 3))
    return with_metadata(w, where), [str(path), "row 0", "record is not a tf.train.Example"]


@case("plan", ".tfrecord.gz stream cut short")
def tfrecord_gz_truncated(w, where):
    plain = tfrecord(where / "plain" / "part-0.tfrecord", rows(50))
    path = where / "train" / "part-0.tfrecord.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(plain.read_bytes())[:60])
    return with_metadata(w, where), [str(path)]


@case("plan", "TFRecord file without metadata", RecipeError)
def tfrecord_without_metadata(w, where):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    return w.recipe(where / "train"), ["data.metadata", "TFRecord data needs data.metadata"]


@case("plan", "TFRecord records without the label")
def tfrecord_without_label(w, where):
    columns = ["uid", "weight", "user_id", "global"]
    path = tfrecord(where / "train" / "part-0.tfrecord", rows(), columns)
    return with_metadata(w, where), [str(path), "row 0", "column 'response'", "missing"]


@case("plan", "TFRecord records without the uid")
def tfrecord_without_uid(w, where):
    columns = ["response", "weight", "user_id", "global"]
    path = tfrecord(where / "train" / "part-0.tfrecord", rows(), columns)
    return with_metadata(w, where), [str(path), "row 0", "column 'uid'", "missing"]


@case("plan", "metadata declares a feature bag the files do not hold")
def metadata_bag_missing_from_files(w, where):
    columns = ["uid", "weight", "user_id", "response"]
    path = tfrecord(where / "train" / "part-0.tfrecord", rows(), columns)
    return with_metadata(w, where), [
        str(path),
        "row 0",
        "column 'global_indices'",
        "missing from the records",
    ]


@case("plan", "TFRecord feature index outside the bag dimension")
def tfrecord_index_outside_dim(w, where):
    table = set_value(rows(), "global_indices", 2, [1, DIM + 2])
    path = tfrecord(where / "train" / "part-0.tfrecord", table)
    return with_metadata(w, where), [
        str(path),
        "row 2",
        "column 'global_indices'",
        f"index {DIM + 2}",
        f"[0, {DIM})",
    ]


@case("plan", "TFRecord negative feature index")
def tfrecord_negative_index(w, where):
    table = set_value(rows(), "global_indices", 1, [-1, DIM - 1])
    path = tfrecord(where / "train" / "part-0.tfrecord", table)
    return with_metadata(w, where), [str(path), "row 1", "column 'global_indices'", "-1"]


@case("plan", "TFRecord data read as Parquet (data.format says parquet)")
def tfrecord_declared_parquet(w, where):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    recipe = with_metadata(w, where, format="parquet")
    return recipe, [str(where / "train" / "part-0.tfrecord"), "not a readable Parquet file"]


@case("read", "grouped layout asked of ungrouped TFRecord files")
def tfrecord_not_grouped(w, where):
    path = tfrecord(where / "train" / "part-0.tfrecord", rows())
    recipe = with_metadata(w, where, grouped_by="user_id")
    return recipe, [str(path), "row 0", "feature list 'global_indices' of bag 'global'"]


@case("read", "TFRecord file truncated after its first records (fixed effect)", cli=True)
def tfrecord_truncated_late(w, where):
    path = tfrecord(where / "train" / "part-0.tfrecord", rows(30))
    path.write_bytes(path.read_bytes()[:-30])
    recipe = w.recipe(where / "train", coordinate="fe", metadata=str(w.metadata(where)))
    return recipe, [str(path), "corrupt or truncated TFRecord"]


@case("read", "TFRecord feature index outside the dimension in a late record")
def tfrecord_index_outside_dim_late(w, where):
    table = set_value(rows(30), "global_indices", 27, [0, DIM + 5])
    path = tfrecord(where / "train" / "part-0.tfrecord", table)
    return with_metadata(w, where), [str(path), "row 27", "column 'global_indices'"]
