"""Routing rows to bucket actors, without Ray: a file split by bucket, parts put back."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix.data.grouping import stable_bucket
from raymix.data.routing import BUCKET, ROW, route_file, rows_of_parts
from raymix.data.rows import RowSchema
from raymix.data.source import Source
from raymix.errors import DataError

DIM = 4


def write(path, n, seed, ids=None, weight=None):
    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "uid": np.arange(n, dtype=np.int64) + 1000 * seed,
            "response": rng.integers(0, 2, n),
            "weight": rng.uniform(0.5, 2, n) if weight is None else weight,
            "user_id": rng.integers(0, 40, n) if ids is None else ids,
            "g_indices": pa.array([list(range(DIM))] * n, pa.list_(pa.int64())),
            "g_values": pa.array(list(rng.normal(size=(n, DIM))), pa.list_(pa.float64())),
        }
    )
    pq.write_table(table, path)
    return str(path)


def source(*files) -> Source:
    schema = RowSchema(
        uid="uid", label="response", weight="weight", offset=None, bag="g", dim=DIM,
        entity="user_id", task="logistic",
    )  # fmt: skip
    return Source(files=tuple(files), format="parquet", metadata=None, schema=schema)


def test_a_file_splits_by_bucket_and_the_parts_come_back_whole(tmp_path):
    files = [write(tmp_path / f"part-{k}.parquet", 200, k) for k in range(3)]
    src = source(*files)
    n_actors, n_buckets = 3, 8
    per_actor = [[] for _ in range(n_actors)]
    for path in files:
        parts = route_file(src, path, n_actors, n_buckets)
        assert len(parts) == n_actors and sum(p.num_rows for p in parts) == 200
        for a, part in enumerate(parts):
            bucket = part.column(BUCKET).to_numpy()
            np.testing.assert_array_equal(
                bucket, stable_bucket(part.column("user_id").to_numpy(), n_buckets)
            )
            assert np.all(bucket % n_actors == a)
            assert part.column("g_indices").type.value_type == pa.int32()  # narrowed
            per_actor[a].append((path, part))
    seen = []
    for a in range(n_actors):
        rows, bucket = rows_of_parts(iter(per_actor[a]), src)
        np.testing.assert_array_equal(bucket, stable_bucket(rows.entity, n_buckets))
        assert rows.X.shape == (len(rows), DIM) and rows.X.nnz == len(rows) * DIM
        seen.append(rows.uid)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(np.concatenate(
        [np.arange(200) + 1000 * k for k in range(3)])))  # fmt: skip
    (one,) = route_file(src, files[0], 1, n_buckets)
    np.testing.assert_array_equal(one.column(ROW).to_numpy(), np.arange(200))


def test_an_error_names_the_file_and_its_row_not_the_parts(tmp_path):
    weight = np.ones(50)
    weight[37] = -1.0
    path = write(tmp_path / "bad.parquet", 50, 0, weight=weight)
    src = source(path)
    parts = route_file(src, path, 2, 4)
    owner = next(a for a, p in enumerate(parts) if 37 in p.column(ROW).to_numpy())
    with pytest.raises(DataError, match="negative weight") as caught:
        rows_of_parts(iter([(path, parts[owner])]), src)
    assert (caught.value.path, caught.value.row, caught.value.column) == (path, 37, "weight")


def test_entity_ids_of_two_types_are_refused(tmp_path):
    a = write(tmp_path / "a.parquet", 10, 0)
    b = write(tmp_path / "b.parquet", 10, 1, ids=[f"u{k}" for k in range(10)])
    src = source(a, b)
    parts = [(p, route_file(src, p, 1, 4)[0]) for p in (a, b)]
    with pytest.raises(DataError, match="mixed types") as caught:
        rows_of_parts(iter(parts), src)
    assert caught.value.path == b


def test_no_parts_are_no_rows():
    rows, bucket = rows_of_parts(iter([]), source())
    assert len(rows) == 0 and rows.entity.dtype == np.int64 and bucket.size == 0
