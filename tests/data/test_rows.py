"""Stacking and reordering rows without a second copy gives the same rows as the plain way."""

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from raymix.data.rows import LARGEST_VALUE, Rows, RowSchema, concat_rows, rows_from_table
from raymix.errors import DataError


def rows(X, start=0):
    n = X.shape[0]
    uid = np.arange(start, start + n)
    return Rows(uid, uid % 2, np.ones(n), np.zeros(n), X, entity=uid % 3)


@pytest.mark.parametrize("dense", [True, False])
def test_concat_matches_stacking_and_releases_parts(dense):
    full = sp.random(12, 5, density=0.4, format="csr", random_state=1)
    pieces = [full[0:4], full[4:4], full[4:9], full[9:12]]  # sliced CSR keeps the parent's data
    if dense:
        pieces = [p.toarray().astype(np.float32) for p in pieces]
    parts = [rows(p, start) for p, start in zip(pieces, (0, 4, 4, 9), strict=True)]
    stacked = concat_rows(parts, 5)
    got = stacked.X if dense else stacked.X.toarray()
    assert np.array_equal(got, full.toarray().astype(got.dtype))
    assert np.array_equal(stacked.uid, np.arange(12))
    assert np.array_equal(stacked.entity, np.arange(12) % 3)
    assert all(p.X is None for p in parts if len(p))  # given up as they were copied


def test_permute_in_place_equals_take():
    X = sp.random(20, 4, density=0.5, format="csr", random_state=3)
    order = np.random.default_rng(1).permutation(20)
    want = rows(X).take(order)
    got = rows(X)
    got.permute(order)
    assert np.array_equal(got.X.toarray(), want.X.toarray())
    for name in ("uid", "label", "weight", "offset", "entity"):
        assert np.array_equal(getattr(got, name), getattr(want, name))


def label_table(labels):
    return pa.table({"uid": np.arange(len(labels)), "response": pa.array(labels, pa.float64())})


@pytest.mark.parametrize(
    "task, labels, row, message",
    [
        ("logistic", [0.0, 1.0, 2.0], 2, "A label of task 'logistic' must be 0 or 1. Got 2.0."),
        ("poisson", [0.0, -1.0, 3.0], 1, "A label of task 'poisson' must be >= 0. Got -1.0."),
    ],
)
def test_labels_outside_the_task_range_name_the_file_and_row(task, labels, row, message):
    schema = RowSchema("uid", "response", None, None, None, 0, task=task)
    with pytest.raises(DataError) as info:
        rows_from_table(label_table(labels), schema, "part-0.tfrecord")
    assert str(info.value) == f"part-0.tfrecord, row {row}, column 'response': {message}"


def test_any_label_fits_a_linear_task_and_missing_optional_labels_pass():
    linear = RowSchema("uid", "response", None, None, None, 0, task="linear")
    assert len(rows_from_table(label_table([-3.0, 0.5, 7.0]), linear)) == 3
    optional = RowSchema(
        "uid", "response", None, None, None, 0, label_optional=True, task="logistic"
    )
    got = rows_from_table(label_table([1.0, np.nan, 0.0]), optional)
    assert np.isnan(got.label[1])


def dense_table(values):
    values = np.asarray(values, np.float64)
    bag = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    return pa.table({"uid": np.arange(len(values)), "response": np.zeros(len(values)), "x": bag})


@pytest.mark.parametrize(
    "value, message",
    [
        (1e13, "feature value 1e+13 is beyond raymix's limit of ±1e+12: rescale the column"),
        (-3e38, "feature value -3e+38 is beyond raymix's limit of ±1e+12: rescale the column"),
        (np.nan, "feature value is NaN or infinite"),
    ],
)
def test_a_dense_feature_value_beyond_the_limit_names_its_row(value, message):
    schema = RowSchema("uid", "response", None, None, "x", 3, dense_bag=True)
    values = np.ones((4, 3))
    values[2, 1] = value
    with pytest.raises(DataError) as info:
        rows_from_table(dense_table(values), schema, "part-0.parquet")
    assert str(info.value) == f"part-0.parquet, row 2, column 'x': {message}"
    values[2, 1] = LARGEST_VALUE  # the limit itself is accepted
    assert rows_from_table(dense_table(values), schema).X[2, 1] == LARGEST_VALUE


def test_an_optional_label_beyond_the_limit_names_its_own_row():
    optional = RowSchema("uid", "response", None, None, None, 0, label_optional=True)
    with pytest.raises(DataError) as info:
        rows_from_table(label_table([np.nan, 1.0, np.inf]), optional, "part-0.parquet")
    assert str(info.value) == "part-0.parquet, row 2, column 'response': value is NaN or infinite"
