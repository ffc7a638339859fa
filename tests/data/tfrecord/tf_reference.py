"""The TensorFlow reference reader of per-record TFRecord files (``tf.data`` +
``tf.io.parse_example``): the oracle the tests and ``bench/tfrecord_read.py`` hold raymix's
compiled decoder (:func:`raymix.data.tfrecord.tables.read_tfrecord_file`) to."""

from __future__ import annotations

import pyarrow as pa

from raymix.data.tfrecord.example_codec import (
    bag_arrays,
    check_complete,
    compression_type,
    counted,
    dense_array,
    finish_table,
    parse_spec,
    tf,
    tf_error,
)
from raymix.data.tfrecord.tables import validate_against_metadata


def read_with_tensorflow(path, metadata, columns=None, batch_size: int = 65536):
    """A per-record TFRecord file read by TensorFlow (``tf.data`` + ``tf.io.parse_example``),
    as raymix read them before its compiled decoder: the reference that the tests and
    ``bench/tfrecord_read.py`` hold :func:`raymix.data.tfrecord.tables.read_tfrecord_file` to."""
    t = tf()
    path = str(path)
    specs = metadata.select(columns)
    validate_against_metadata(path, metadata, [s.name for s in specs], num_records=1)
    spec = parse_spec(specs)
    ds = t.data.TFRecordDataset([path], compression_type=compression_type(path))
    ds = ds.batch(batch_size).map(counted(lambda x: t.io.parse_example(x, spec)))
    chunks: dict[str, list[pa.Array]] = {}
    rows = payload = 0
    try:
        for parsed, n, nbytes in ds:
            payload += int(nbytes)
            for s in specs:
                if s.is_sparse:
                    idx, val = parsed[s.columns[0]], parsed[s.columns[1]]
                    arrays = bag_arrays(
                        idx.row_splits.numpy(),
                        idx.flat_values.numpy(),
                        val.row_splits.numpy(),
                        val.flat_values.numpy(),
                        s,
                        path,
                        rows,
                    )
                else:
                    arrays = (dense_array(parsed[s.name].numpy(), s),)
                for col, arr in zip(s.columns, arrays, strict=True):
                    chunks.setdefault(col, []).append(arr)
            rows += int(n)
    except t.errors.OpError as e:
        raise tf_error(e, path, specs, rows) from None
    check_complete(path, rows, payload)
    return finish_table(chunks, specs)
