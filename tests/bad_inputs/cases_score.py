"""``raymix score`` (:func:`raymix.scoring.score_command`) of bad models, data and output
directories: refused before it writes anything, naming the directory or the file."""

from __future__ import annotations

import shutil

import numpy as np

from raymix import RecipeError
from raymix.data.avro.models import model_record, write_models
from raymix.scoring import score_command

from .corpus import DIM, Call, Cli, case, parquet, rows


def scoring(model_dir, out, data=(), **options) -> Call:
    return Call(lambda: score_command(model_dir, [str(d) for d in data], out, **options))


def photon_model(where):
    """A Photon ML GAME model directory: one fixed effect of feature shard 'globalShard'."""
    record = model_record("global", 0.0, np.arange(DIM), np.ones(DIM), None, "logistic")
    write_models(
        where / "photon" / "fixed-effect" / "globalShard" / "coefficients" / "part-00000.avro",
        [record],
    )
    return where / "photon"


@case("plan", "score OUT --out OUT: the scores would replace the models", RecipeError, cli=True)
def score_out_is_the_fit(w, where):
    return Cli(["score", w.out, "--out", w.out]), [f"--out '{w.out}' overlaps the fit output"]


@case("plan", "score --out inside the fit's output", RecipeError)
def score_out_inside_the_fit(w, where):
    out = w.root / "fitted" / "scores"
    return scoring(w.root / "fitted", out), [str(out), "overlaps the fit output", "choose another"]


@case("plan", "score --out around the fit's output", RecipeError)
def score_out_around_the_fit(w, where):
    return scoring(w.root / "fitted", w.root), [f"--out '{w.root}' overlaps the fit output"]


@case("plan", "score of a directory that is neither a fit nor a Photon ML model", RecipeError)
def score_not_a_model(w, where):
    (where / "mine").mkdir()
    (where / "mine" / "notes.txt").write_text("not a model")
    return scoring(where / "mine", where / "out"), [
        str(where / "mine"),
        "not a raymix fit output (no run.json), nor a Photon ML model",
    ]


@case("plan", "score of a fit that did not finish (no _SUCCESS)", RecipeError)
def score_incomplete_fit(w, where):
    shutil.copytree(w.root / "fitted", where / "fit")
    (where / "fit" / "_SUCCESS").unlink()
    return scoring(where / "fit", where / "out"), [
        str(where / "fit"),
        "incomplete raymix fit output",
    ]


@case("plan", "score of a raymix fit with --feature-shard", RecipeError)
def score_feature_shard_of_a_fit(w, where):
    call = scoring(w.root / "fitted", where / "out", feature_shards=["global=global"])
    return call, ["--feature-shard", str(w.root / "fitted"), "is not one"]


@case("plan", "score naming a coordinate the fit lacks", RecipeError)
def score_unknown_coordinate(w, where):
    call = scoring(w.root / "fitted", where / "out", [f"per-item={w.good / 'validation'}"])
    return call, ["unknown coordinates in data arguments", "per-item"]


@case("plan", "score data without the entity column")
def score_data_without_entity(w, where):
    path = parquet(where / "data" / "part-0.parquet", rows().drop_columns(["user_id"]))
    return scoring(w.root / "fitted", where / "out", [path.parent]), [
        str(path),
        "column 'user_id'",
        "missing column",
    ]


@case("plan", "score data that do not exist")
def score_data_missing(w, where):
    call = scoring(w.root / "fitted", where / "out", [where / "nowhere"])
    return call, [str(where / "nowhere"), "no such file or directory"]


@case("plan", "--feature-shard without '='", RecipeError)
def score_feature_shard_syntax(w, where):
    call = scoring(
        photon_model(where), where / "out", [w.good / "train"], feature_shards=["globalShard"]
    )
    return call, ["--feature-shard", "expected SHARD=BAG[,BAG...]", "'globalShard'"]


@case("plan", "--feature-shard of a shard the Photon ML model lacks", RecipeError)
def score_feature_shard_unknown(w, where):
    call = scoring(
        photon_model(where), where / "out", [w.good / "train"], feature_shards=["userShard=global"]
    )
    return call, ["no feature shard 'userShard'", "globalShard"]


@case("plan", "score of a Photon ML model without data", RecipeError)
def score_photon_without_data(w, where):
    call = scoring(photon_model(where), where / "out", feature_shards=["globalShard=global"])
    return call, ["a Photon ML model has no recipe to name its data"]
