"""TFRecord framing and ``tf.train.Example`` messages without importing TensorFlow.

Checking the first records of every input file before a run starts must not cost a
TensorFlow import (~2 s). A TFRecord file is a sequence of records framed as

    uint64 length | uint32 masked CRC-32C of length | data | uint32 masked CRC-32C of data

(little endian), optionally inside a gzip or zlib stream. ``Example`` is rebuilt here from
its public .proto definition into a private descriptor pool, so it never clashes with
TensorFlow's own classes; its Python API is the same (``features.feature[key].int64_list``).
Bulk reading decodes the same framing and messages in compiled code
(:mod:`raymix.data.tfrecord.example_reader`), also without TensorFlow.
"""

from __future__ import annotations

import functools
import gzip
import struct
import zlib

from raymix import storage
from raymix.errors import DataError

_MASK_DELTA = 0xA282EAD8


@functools.cache
def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


def crc32c(data: bytes) -> int:
    table, crc = _crc_table(), 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _open(path: str):
    if path.endswith(".gz"):
        if not storage.is_uri(path):
            return gzip.open(path, "rb")
        # GzipFile leaves its file object open: a pyarrow file closes when it is collected
        return gzip.GzipFile(fileobj=storage.open_input(path), mode="rb")
    if path.endswith(".deflate"):
        return _ZlibReader(path)
    return storage.open_input(path)


class _ZlibReader:
    def __init__(self, path: str):
        self._file = storage.open_input(path)
        self._inflate = zlib.decompressobj()
        self._buffer = b""

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self._file.read(1 << 16)
            if not chunk:
                self._buffer += self._inflate.flush()
                break
            self._buffer += self._inflate.decompress(chunk)
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def first_records(path: str, n: int) -> list[bytes]:
    """The first ``n`` records of a TFRecord file, CRC-checked; DataError if corrupt."""
    records: list[bytes] = []
    try:
        with _open(path) as handle:
            while len(records) < n:
                header = handle.read(12)
                if not header:
                    break
                if len(header) < 12:
                    raise DataError(
                        "corrupt or truncated TFRecord: partial record header",
                        path,
                        row=len(records),
                    )
                length, length_crc = struct.unpack("<QI", header)
                if masked_crc(header[:8]) != length_crc:
                    raise DataError(
                        "corrupt or truncated TFRecord: bad length checksum", path, row=len(records)
                    )
                data = handle.read(length)
                footer = handle.read(4)
                if len(data) < length or len(footer) < 4:
                    raise DataError(
                        "corrupt or truncated TFRecord: partial record", path, row=len(records)
                    )
                if masked_crc(data) != struct.unpack("<I", footer)[0]:
                    raise DataError(
                        "corrupt or truncated TFRecord: bad data checksum", path, row=len(records)
                    )
                records.append(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"corrupt or truncated TFRecord: {exc}", path) from None
    return records


@functools.cache
def example_class():
    """The ``tf.train.Example`` message class, built without TensorFlow."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="raymix/example.proto", package="raymix.tfexample"
    )
    proto.syntax = "proto3"

    def message(name, fields, nested=()):
        m = proto.message_type.add(name=name)
        for sub in nested:
            m.nested_type.add().CopyFrom(sub)
        for field_name, number, kind, label, type_name, oneof in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
            if oneof is not None:
                f.oneof_index = oneof
        return m

    repeated, optional = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", [("value", 1, F.TYPE_BYTES, repeated, None, None)])
    message("FloatList", [("value", 1, F.TYPE_FLOAT, repeated, None, None)])
    message("Int64List", [("value", 1, F.TYPE_INT64, repeated, None, None)])
    feature = message(
        "Feature",
        [
            ("bytes_list", 1, F.TYPE_MESSAGE, optional, ".raymix.tfexample.BytesList", 0),
            ("float_list", 2, F.TYPE_MESSAGE, optional, ".raymix.tfexample.FloatList", 0),
            ("int64_list", 3, F.TYPE_MESSAGE, optional, ".raymix.tfexample.Int64List", 0),
        ],
    )
    feature.oneof_decl.add(name="kind")
    entry = descriptor_pb2.DescriptorProto(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=optional)
    entry.field.add(
        name="value",
        number=2,
        type=F.TYPE_MESSAGE,
        label=optional,
        type_name=".raymix.tfexample.Feature",
    )
    message(
        "Features",
        [("feature", 1, F.TYPE_MESSAGE, repeated, ".raymix.tfexample.Features.FeatureEntry", None)],
        nested=[entry],
    )
    message(
        "Example", [("features", 1, F.TYPE_MESSAGE, optional, ".raymix.tfexample.Features", None)]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("raymix.tfexample.Example"))
