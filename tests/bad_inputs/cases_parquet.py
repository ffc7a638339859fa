"""Parquet files and their schemas: refused before the output is touched, naming the file
and the column."""

from __future__ import annotations

import pyarrow as pa

from raymix import Columns

from .corpus import case, parquet, replace, rows, set_value


def strings(table: pa.Table, name: str) -> pa.Array:
    return pa.array([str(v) for v in table.column(name).to_pylist()])


@case("plan", "not a Parquet file (garbage bytes)")
def parquet_garbage(w, where):
    path = where / "train" / "part-0.parquet"
    path.parent.mkdir()
    path.write_bytes(b"PAR1 this is not parquet at all" * 3)
    return w.recipe(where / "train"), [str(path), "not a readable Parquet file"]


@case("plan", "Parquet file of zero bytes")
def parquet_empty_file(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    path = where / "train" / "part-1.parquet"
    path.write_bytes(b"")
    return w.recipe(where / "train"), [str(path), "not a readable Parquet file"]


@case("plan", "Parquet file cut short (its footer lost)")
def parquet_truncated(w, where):
    path = parquet(where / "train" / "part-0.parquet", rows())
    path.write_bytes(path.read_bytes()[:-100])
    return w.recipe(where / "train"), [str(path), "not a readable Parquet file"]


@case("plan", "Parquet label column of strings", cli=True)
def parquet_label_string(w, where):
    table = replace(rows(), "response", strings(rows(), "response"))
    parquet(where / "train" / "part-0.parquet", rows(20, 100))
    path = parquet(where / "train" / "part-1.parquet", table)
    return w.recipe(where / "train"), [str(path), "column 'response'", "string", "numbers"]


@case("plan", "Parquet feature values as strings")
def parquet_values_string(w, where):
    table = rows()
    text = [[str(v) for v in row] for row in table.column("global_values").to_pylist()]
    path = parquet(where / "train" / "part-0.parquet", replace(table, "global_values", text))
    fragments = [str(path), "column 'global_values'", "string", "expected lists of numbers"]
    return w.recipe(where / "train"), fragments


@case("plan", "Parquet feature indices as floats")
def parquet_indices_float(w, where):
    table = rows()
    floats = [[float(v) for v in r] for r in table.column("global_indices").to_pylist()]
    path = parquet(where / "train" / "part-0.parquet", replace(table, "global_indices", floats))
    return w.recipe(where / "train"), [str(path), "column 'global_indices'", "double"]


@case("plan", "Parquet feature values that are not lists")
def parquet_values_not_lists(w, where):
    table = replace(rows(), "global_values", pa.array([0.5] * 20))
    path = parquet(where / "train" / "part-0.parquet", table)
    return w.recipe(where / "train"), [str(path), "column 'global_values'", "lists"]


@case("plan", "Parquet feature values without their indices")
def parquet_values_without_indices(w, where):
    path = parquet(where / "train" / "part-0.parquet", rows().drop_columns(["global_indices"]))
    return w.recipe(where / "train"), [str(path), "column 'global_indices'", "missing column"]


@case("plan", "Parquet file without the entity column")
def missing_entity_column(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    path = parquet(where / "train" / "part-1.parquet", rows(20, 20).drop_columns(["user_id"]))
    return w.recipe(where / "train"), [str(path), "column 'user_id'", "missing column"]


@case("plan", "Parquet file without the uid column")
def missing_uid_column(w, where):
    path = parquet(where / "train" / "part-0.parquet", rows().drop_columns(["uid"]))
    return w.recipe(where / "train"), [str(path), "column 'uid'", "missing column"]


@case("plan", "Parquet file without the label column")
def missing_label_column(w, where):
    path = parquet(where / "train" / "part-0.parquet", rows().drop_columns(["response"]))
    return w.recipe(where / "train"), [str(path), "column 'response'", "missing column"]


@case("plan", "Parquet file without the weight column the recipe names")
def missing_weight_column(w, where):
    path = parquet(where / "train" / "part-0.parquet", rows().drop_columns(["weight"]))
    recipe = w.recipe(where / "train", columns=Columns(weight="weight"))  # a default is optional
    return recipe, [str(path), "column 'weight'", "missing column"]


@case("plan", "Parquet uid column of strings")
def uid_strings(w, where):
    path = parquet(
        where / "train" / "part-0.parquet", replace(rows(), "uid", strings(rows(), "uid"))
    )
    return w.recipe(where / "train"), [str(path), "column 'uid'", "string"]


@case("plan", "Parquet uid column of floats")
def uid_floats(w, where):
    table = replace(rows(), "uid", pa.array([float(u) + 0.5 for u in range(20)]))
    path = parquet(where / "train" / "part-0.parquet", table)
    return w.recipe(where / "train"), [str(path), "column 'uid'", "double"]


@case("plan", "Parquet weight column of strings")
def weight_strings(w, where):
    table = replace(rows(), "weight", strings(rows(), "weight"))
    path = parquet(where / "train" / "part-0.parquet", table)
    return w.recipe(where / "train"), [str(path), "column 'weight'", "string"]


@case("plan", "Parquet offset column of strings")
def offset_strings(w, where):
    table = replace(rows(), "offset", pa.array(["0"] * 20))
    path = parquet(where / "train" / "part-0.parquet", table)
    recipe = w.recipe(where / "train", columns=Columns(offset="offset"))
    return recipe, [str(path), "column 'offset'", "string"]


@case("plan", "Parquet feature values as lists of lists")
def values_nested(w, where):
    nested = [[[0.5], [1.0]]] * 20
    table = replace(rows(), "global_values", pa.array(nested, pa.list_(pa.list_(pa.float32()))))
    path = parquet(where / "train" / "part-0.parquet", table)
    return w.recipe(where / "train"), [str(path), "column 'global_values'"]


@case("plan", "entity ids: integers in one file, strings in another")
def entity_mixed_types(w, where):
    first = parquet(where / "train" / "part-0.parquet", rows())
    table = rows(20, 20)
    table = replace(table, "user_id", [f"u{v}" for v in table.column("user_id").to_pylist()])
    path = parquet(where / "train" / "part-1.parquet", table)
    fragments = [str(path), "column 'user_id'", "string", "int64", str(first)]
    return w.recipe(where / "train"), fragments


@case("plan", "entity ids: integers in training, strings in validation", cli=True)
def entity_types_differ_between_splits(w, where):
    train = parquet(where / "train" / "part-0.parquet", rows())
    table = rows(20, 100)
    table = replace(table, "user_id", [f"u{v}" for v in table.column("user_id").to_pylist()])
    path = parquet(where / "validation" / "part-0.parquet", table)
    recipe = w.recipe(where / "train", validation=str(where / "validation"))
    fragments = [str(path), "column 'user_id'", "strings here but integers", str(train)]
    return recipe, fragments


@case("plan", "a weight column of strings in the validation data only")
def validation_schema_differs(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    table = replace(rows(20, 100), "weight", strings(rows(20, 100), "weight"))
    path = parquet(where / "validation" / "part-0.parquet", table)
    recipe = w.recipe(where / "train", validation=str(where / "validation"))
    return recipe, [str(path), "column 'weight'", "string"]


@case("plan", "training data: a Parquet file with zero rows")
def zero_rows(w, where):
    parquet(where / "train" / "part-0.parquet", rows().slice(0, 0))
    return w.recipe(where / "train"), [str(where / "train"), "data.train", "no rows"]


@case("plan", "validation data: a Parquet file with zero rows")
def zero_validation_rows(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    parquet(where / "validation" / "part-0.parquet", rows().slice(0, 0))
    recipe = w.recipe(where / "train", validation=str(where / "validation"))
    return recipe, [str(where / "validation"), "data.validation", "no rows"]


@case("plan", "offset column missing from the data")
def missing_offset_column(w, where):
    path = parquet(where / "train" / "part-0.parquet", rows())
    recipe = w.recipe(where / "train", columns=Columns(offset="offset"))
    return recipe, [str(path), "column 'offset'", "missing column"]


@case("read", "a null uid")
def null_uid(w, where):
    path = parquet(where / "train" / "part-0.parquet", set_value(rows(), "uid", 3, None))
    return w.recipe(where / "train"), [str(path), "row 3", "column 'uid'", "missing value"]
