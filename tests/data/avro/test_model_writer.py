"""The compiled model writer gives the records fastavro writes from ``model_record`` dicts."""

import fastavro
import numpy as np
import pytest

from raymix.data.avro.model_writer import BLOCK_RECORDS, write_model_file
from raymix.data.avro.models import MODEL_CLASS, model_record, read_models, write_models


def ragged(rng, n, dim, most=6):
    counts = rng.integers(0, most + 1, n)
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    index = np.concatenate(
        [np.sort(rng.choice(dim, k, replace=False)) for k in counts] + [np.zeros(0, np.int64)]
    ).astype(np.int64)
    return ptr, index, rng.normal(size=index.size)


def expected(ids, intercepts, ptr, index, value, names, variances, members, model_class):
    records = []
    for k in members:
        sl = slice(ptr[k], ptr[k + 1])
        var = None
        if variances is not None:
            var = variances[ptr[k] + k : ptr[k + 1] + k + 1]
            if intercepts is None:
                var = var[1:]
        record = model_record(
            ids[k],
            None if intercepts is None else intercepts[k],
            index[sl],
            value[sl],
            names,
            "logistic",
            var,
        )
        record["modelClass"] = model_class
        records.append(record)
    return records


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("with_variances", [True, False])
@pytest.mark.parametrize("with_names", [True, False])
@pytest.mark.parametrize("compress", [True, False])
def test_records_match_fastavro(tmp_path, intercept, with_variances, with_names, compress):
    rng = np.random.default_rng(7)
    n, dim = BLOCK_RECORDS + 300, 40  # more than one container block
    ptr, index, value = ragged(rng, n, dim)
    intercepts = rng.normal(size=n) if intercept else None
    variances = rng.random(ptr[-1] + n) if with_variances else None
    names = [(f"f{j}é", "t" * (j % 3)) for j in range(dim)] if with_names else None
    ids = np.arange(n, dtype=np.int64) * 1_000_003 - 5  # negative and multi-digit ids
    members = np.flatnonzero(rng.random(n) < 0.7)
    path = write_model_file(
        tmp_path / "m.avro",
        ids,
        intercepts=intercepts,
        coef_ptr=ptr,
        coef_index=index,
        coef_value=value,
        names=names,
        model_class=MODEL_CLASS["logistic"],
        variances=variances,
        members=members,
        compress=compress,
    )
    want = expected(
        [str(i) for i in ids], intercepts, ptr, index, value, names, variances, members,
        MODEL_CLASS["logistic"],
    )  # fmt: skip
    assert list(read_models(path)) == want


def test_string_ids_long_and_unicode_and_empty_models(tmp_path):
    rng = np.random.default_rng(1)
    n = 50
    ids = np.array(["user-" + "x" * (k * 7) + "ü" for k in range(n)], dtype=object)
    ptr = np.zeros(n + 1, np.int64)  # no coefficients at all
    path = write_model_file(
        tmp_path / "m.avro",
        ids,
        intercepts=None,
        coef_ptr=ptr,
        coef_index=np.zeros(0, np.int64),
        coef_value=np.zeros(0),
        names=None,
        model_class="c",
    )
    want = expected(
        list(ids), None, ptr, np.zeros(0, np.int64), np.zeros(0), None, None, range(n), "c"
    )
    assert list(read_models(path)) == want
    assert all(r["means"] == [] for r in want)
    del rng


def test_same_bytes_twice_and_readable_by_any_reader(tmp_path):
    rng = np.random.default_rng(3)
    ptr, index, value = ragged(rng, 100, 10)
    kwargs = dict(
        intercepts=rng.normal(size=100),
        coef_ptr=ptr,
        coef_index=index,
        coef_value=value,
        names=None,
        model_class="c",
    )
    a = write_model_file(tmp_path / "a.avro", np.arange(100), **kwargs).read_bytes()
    b = write_model_file(tmp_path / "b.avro", np.arange(100), **kwargs).read_bytes()
    assert a == b
    with open(tmp_path / "a.avro", "rb") as handle:
        reader = fastavro.reader(handle)
        assert reader.codec == "deflate"
        assert len(list(reader)) == 100


def test_empty_file_is_a_valid_container(tmp_path):
    path = write_model_file(
        tmp_path / "e.avro",
        np.zeros(0, np.int64),
        intercepts=np.zeros(0),
        coef_ptr=np.zeros(1, np.int64),
        coef_index=np.zeros(0, np.int64),
        coef_value=np.zeros(0),
        names=None,
        model_class="c",
    )
    assert list(read_models(path)) == []
    write_models(tmp_path / "f.avro", [])
    assert list(read_models(tmp_path / "f.avro")) == []
