"""pandas-shaped data, without Ray: rows in memory and Parquet written from a DataFrame read as
files are, with bags of scalar columns, list<float> bags, categorical ids, and the default uid
(the row number) and weight (1); every wrong column gives one message that names it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix import Columns, Data, write_dataset
from raymix.coordinates.inputs import build_source, feature_names
from raymix.data.rows import rows_from_table
from raymix.data.source import read_table
from raymix.errors import DataError, RecipeError


def frame(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.uniform(18, 80, n),
            "price": rng.integers(1, 100, n),
            "user": pd.Categorical(["ann", "bob", "ann", "cy", "bob", "ann"][:n]),
            "emb": [list(rng.normal(size=3)) for _ in range(n)],
            "response": rng.integers(0, 2, n),
        }
    )


def rows_of(data: Data, columns=Columns(), **kw):
    source = build_source(data, columns, split="train", **kw)
    table = pa.concat_tables(read_table(source, path) for path in source.files)
    return source, rows_from_table(table, source.schema, source="test")


def test_a_bag_of_scalar_columns_is_dense_and_named_after_them():
    df = frame()
    source, rows = rows_of(Data(train=df), bag=("age", "price"), task="logistic")
    assert source.schema.dim == 2 and source.schema.dense_bag
    np.testing.assert_array_equal(rows.X, df[["age", "price"]].to_numpy(float))
    assert feature_names(Data(train=df), ("age", "price"), 2) == [("age", ""), ("price", "")]


def test_no_uid_is_the_row_number_and_no_weight_is_one():
    source, rows = rows_of(Data(train=frame()), bag=("age",))
    np.testing.assert_array_equal(rows.uid, np.arange(6))
    np.testing.assert_array_equal(rows.weight, np.ones(6))
    assert source.schema.uid_from_row and source.schema.weight is None


def test_parquet_files_keep_their_uid(tmp_path):
    """Files are matched across coordinates by uid: a file without one is refused (the
    row number is for rows in memory, and raymix.write_dataset writes it)."""
    df = frame().drop(columns=["user"])
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "p0.parquet")
    with pytest.raises(DataError, match="column 'uid': missing column"):
        rows_of(Data(train=str(tmp_path)), bag=("age",))


def test_a_column_named_in_the_recipe_must_be_there():
    for columns in (Columns(weight="weight"), Columns(uid="uid")):
        with pytest.raises(DataError, match="missing column"):
            rows_of(Data(train=frame()), columns, bag=("age",))


def test_equal_length_float_lists_are_a_dense_bag():
    df = frame()
    source, rows = rows_of(Data(train=df), bag="emb")
    assert source.schema.dim == 3 and source.schema.dense_bag
    np.testing.assert_allclose(rows.X, np.stack(df["emb"].to_numpy()))


def test_a_list_of_another_length_names_its_row():
    df = frame()
    df.at[4, "emb"] = [1.0, 2.0]
    with pytest.raises(DataError, match=r"row 4, column 'emb': .*hold 3 values; this one holds 2"):
        rows_of(Data(train=df), bag="emb")


def test_categorical_ids_are_their_values():
    source, rows = rows_of(Data(train=frame()), bag=("age",), entity="user")
    assert list(rows.entity) == ["ann", "bob", "ann", "cy", "bob", "ann"]


@pytest.mark.parametrize(
    ("change", "bag", "message"),
    [
        (
            lambda df: df.assign(age=["x"] * 6),
            ("age",),
            "column 'age': has type .*expected numbers",
        ),
        (lambda df: df.drop(columns="price"), ("age", "price"), "column 'price': missing column"),
        (lambda df: df.drop(columns="response"), ("age",), "column 'response': missing column"),
        (lambda df: df.assign(age=[1.0, np.nan, 1, 1, 1, 1]), ("age",), "row 1, column 'age'"),
    ],
    ids=["text-feature", "missing-feature", "missing-label", "nan-feature"],
)
def test_a_bad_column_is_named_in_one_line(change, bag, message):
    with pytest.raises(DataError, match=message) as caught:
        rows_of(Data(train=change(frame())), bag=bag, task="logistic")
    assert "\n" not in str(caught.value)


def test_rows_from_a_run_json_are_only_a_description():
    described = Data.model_validate_json(Data(train=frame()).model_dump_json())
    assert described.train.table is None and "6 rows" in described.train.in_memory
    with pytest.raises(RecipeError, match="data.train was in memory .* give the rows again"):
        rows_of(described, bag=("age",))


def test_write_dataset_writes_what_the_readers_read(tmp_path):
    df = frame()
    files = write_dataset(df, tmp_path / "d", bags={"global": ["age", "price"]})
    assert [f.name for f in files] == ["part-00000.parquet", "global"]
    data = Data(train=str(tmp_path / "d"), feature_lists=str(tmp_path / "d" / "featureList"))
    source, rows = rows_of(data, bag="global", entity="user")
    np.testing.assert_array_equal(rows.X, df[["age", "price"]].to_numpy(float))
    np.testing.assert_array_equal(rows.uid, np.arange(6))
    assert list(rows.entity) == ["ann", "bob", "ann", "cy", "bob", "ann"]
    assert feature_names(data, "global", 2) == [("age", ""), ("price", "")]
    written = pq.read_schema(files[0])
    assert written.field("emb").type == pa.list_(pa.float64(), 3)
    assert written.field("user").type in (pa.string(), pa.large_string())


def test_write_dataset_refuses_and_names_what_is_wrong(tmp_path):
    write_dataset(frame(), tmp_path / "d")
    with pytest.raises(DataError, match="not empty"):
        write_dataset(frame(), tmp_path / "d")
    write_dataset(frame(3), tmp_path / "d", overwrite=True, rows_per_file=2)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    with pytest.raises(DataError, match="column 'nope': bag 'b': no such column"):
        write_dataset(frame(), tmp_path / "e", bags={"b": ["age", "nope"]})
    with pytest.raises(DataError, match="column 'user': bag 'b': a feature column must hold"):
        write_dataset(frame(), tmp_path / "e", bags={"b": ["user"]})
    uneven = frame()
    uneven.at[2, "emb"] = [1.0]
    with pytest.raises(DataError, match="row 2, column 'emb': a dense bag's lists"):
        write_dataset(uneven, tmp_path / "e")


def test_default_uid_and_weight_stay_defaults_through_json():
    columns = Columns.model_validate_json(Columns().model_dump_json())  # as run.json keeps them
    source, rows = rows_of(Data(train=frame()), columns, bag=("age",))
    np.testing.assert_array_equal(rows.uid, np.arange(6))
    assert source.schema.weight is None
    named = Columns.model_validate_json(Columns(uid="uid").model_dump_json())
    with pytest.raises(DataError, match="column 'uid': missing column"):
        rows_of(Data(train=frame()), named, bag=("age",))
