"""Values found while reading (NaN, limits, labels, weights, duplicates): the previous run
is restored and the failed run's partial outputs kept beside it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raymix import Columns

from .corpus import DIM, case, parquet, replace, rows, set_value


@case("read", "NaN feature value (Parquet)")
def nan_feature_value(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    path = parquet(
        where / "train" / "part-1.parquet",
        set_value(rows(20, 20), "global_values", 5, [0.5, float("nan")]),
    )
    return w.recipe(where / "train"), [
        str(path),
        "row 5",
        "column 'global_values'",
        "NaN or infinite",
    ]


@case("read", "infinite feature value")
def inf_feature_value(w, where):
    path = parquet(
        where / "train" / "part-0.parquet",
        set_value(rows(), "global_values", 17, [float("-inf"), 1.0]),
    )
    return w.recipe(where / "train"), [
        str(path),
        "row 17",
        "column 'global_values'",
        "NaN or infinite",
    ]


@case("read", "label outside {0, 1} for a logistic fixed effect")
def label_not_binary(w, where):
    path = parquet(where / "train" / "part-0.parquet", set_value(rows(), "response", 3, 2))
    recipe = w.recipe(where / "train", coordinate="fe")
    return recipe, [str(path), "row 3", "column 'response'", "0 or 1", "logistic"]


@case("read", "negative weight", cli=True)
def negative_weight(w, where):
    path = parquet(where / "train" / "part-0.parquet", set_value(rows(), "weight", 7, -1.0))
    return w.recipe(where / "train"), [str(path), "row 7", "column 'weight'", "negative weight"]


@case("read", "weight beyond the limit (1e300 made AUC 0.5 silently)", cli=True)
def huge_weight(w, where):
    weight = np.ones(20)  # float64: in the float32 column of rows(), 1e300 is inf
    weight[6] = 1e300
    path = parquet(where / "train" / "part-0.parquet", replace(rows(), "weight", weight))
    return w.recipe(where / "train"), [str(path), "row 6", "column 'weight'", "1e+300", "limit"]


@case("read", "feature value beyond the limit (3e38 wiped out the coefficients)")
def huge_feature_value(w, where):
    path = parquet(
        where / "train" / "part-0.parquet",
        set_value(rows(), "global_values", 12, [3e38, 1.0]),
    )
    return w.recipe(where / "train"), [
        str(path),
        "row 12",
        "column 'global_values'",
        "3e+38",
        "limit",
    ]


@case("read", "offset beyond the limit")
def huge_offset(w, where):
    table = replace(rows(), "offset", pa.array(np.zeros(20)))
    path = parquet(where / "train" / "part-0.parquet", set_value(table, "offset", 2, -1e20))
    recipe = w.recipe(where / "train", columns=Columns(offset="offset"))
    return recipe, [str(path), "row 2", "column 'offset'", "-1e+20", "limit"]


@case("read", "every training weight zero (AUC 0.5 silently)")
def all_weights_zero(w, where):
    table = replace(rows(), "weight", pa.array(np.zeros(20), pa.float32()))
    parquet(where / "train" / "part-0.parquet", table)
    return w.recipe(where / "train"), ["every training row has weight 0"]


@case("read", "NaN in the offset column")
def nan_offset(w, where):
    table = replace(rows(), "offset", pa.array(np.zeros(20)))
    path = parquet(where / "train" / "part-0.parquet", set_value(table, "offset", 4, float("nan")))
    recipe = w.recipe(where / "train", columns=Columns(offset="offset"))
    return recipe, [str(path), "row 4", "column 'offset'", "NaN or infinite"]


@case("read", "Parquet feature index outside the metadata's bag dimension")
def parquet_index_outside_dim(w, where):
    table = set_value(rows(), "global_indices", 9, [0, DIM])
    path = parquet(where / "train" / "part-0.parquet", table)
    recipe = w.recipe(where / "train", metadata=str(w.metadata(where)))
    return recipe, [str(path), "row 9", "column 'global_indices'", f"index {DIM}", f"[0, {DIM})"]


@case("read", "duplicate uid within a file")
def duplicate_uid_in_file(w, where):
    path = parquet(where / "train" / "part-0.parquet", set_value(rows(), "uid", 11, 4))
    return w.recipe(where / "train"), [str(path), "row 11", "column 'uid'", "duplicate uid 4"]


@case("read", "duplicate uid across files")
def duplicate_uid_across_files(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    parquet(where / "train" / "part-1.parquet", set_value(rows(20, 20), "uid", 6, 3))
    return w.recipe(where / "train"), ["coordinate 'per-user'", "duplicate uid 3", "training"]
