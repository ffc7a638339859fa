"""GDMix feature lists (``featureList/<bag>``: one ``name,term`` line per feature index):
refused before the output is touched, naming the file and the line."""

from __future__ import annotations

import numpy as np

from raymix.data.avro.models import model_record, write_models

from .corpus import DIM, case, parquet, rows

NAMES = [f"f{k},t" for k in range(DIM)]


def listed(w, where, lines: list[str] | bytes, **update):
    """The good rows (Parquet, with metadata) and a featureList whose bag file holds ``lines``."""
    parquet(where / "train" / "part-0.parquet", rows())
    path = where / "featureList" / "global"
    path.parent.mkdir()
    path.write_bytes(
        lines if isinstance(lines, bytes) else "".join(f"{x}\n" for x in lines).encode()
    )
    recipe = w.recipe(
        where / "train",
        coordinate="fe",
        metadata=str(w.metadata(where)),
        feature_lists=str(path.parent),
    )
    if update:
        coordinates = tuple(c.model_copy(update=update) for c in recipe.coordinates)
        recipe = recipe.model_copy(update={"coordinates": coordinates})
    return recipe, path


@case("plan", "featureList file that is empty", cli=True)
def feature_list_empty(w, where):
    recipe, path = listed(w, where, [])
    return recipe, [str(path), "0 entries", f"dimension {DIM}"]


@case("plan", "featureList naming one feature twice")
def feature_list_duplicate_name(w, where):
    recipe, path = listed(w, where, [*NAMES[:3], NAMES[1], NAMES[4]])
    return recipe, [str(path), "line 4", "('f1', 't')", "line 2"]


@case("plan", "featureList with ';' instead of ','")
def feature_list_bad_separator(w, where):
    recipe, path = listed(w, where, [n.replace(",", ";") for n in NAMES])
    return recipe, [str(path), "line 1", "expected 2 CSV fields 'name,term', got 1"]


@case("plan", "featureList line with three fields")
def feature_list_three_fields(w, where):
    recipe, path = listed(w, where, [*NAMES[:2], "f2,t,extra", *NAMES[3:]])
    return recipe, [str(path), "line 3", "got 3"]


@case("plan", "featureList that is not UTF-8 text")
def feature_list_not_utf8(w, where):
    recipe, path = listed(w, where, b"f0,t\n\xff\xfe,t\n" * 2 + b"f4,t\n")
    return recipe, [str(path), "cannot read feature list", "utf-8"]


@case("plan", "featureList whose names match none of the warm start's features")
def feature_list_matches_no_model(w, where):
    model = model_record("global", 0.0, np.arange(DIM), np.ones(DIM), None, "logistic")
    models = write_models(where / "models" / "part-00000.avro", [model]).parent
    recipe, path = listed(w, where, NAMES, warm_start=str(models))
    return recipe, [str(models), "shares none of its 5 features", "f0|t"]


@case("plan", "feature_lists path that does not exist")
def feature_list_path_missing(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    path = where / "nowhere"
    recipe = w.recipe(where / "train", metadata=str(w.metadata(where)), feature_lists=str(path))
    return recipe, [str(path), "no feature list for bag 'global'"]


@case("plan", "featureList with an unterminated quote")
def feature_list_open_quote(w, where):
    recipe, path = listed(w, where, [*NAMES[:2], '"f2,t', *NAMES[3:]])
    return recipe, [str(path), "line 3", "got 1"]
