"""Avro (and Parquet) score files given to a fit as an external model's per-row offsets
(an ``ExternalEffect``), each failing in one line naming the score file."""

from __future__ import annotations

import fastavro
import numpy as np
import pyarrow as pa

from raymix import RecipeError
from raymix.data.avro.scores import write_scores_avro
from raymix.recipe.spec import ExternalEffect

from .corpus import case, parquet

N_TRAIN = 40  # the good training rows: uids 0..39 (validation: 1000..1019)


def external(w, train, validation=None, **fields):
    """The good fixed effect after an external coordinate reading ``train`` (and the good
    validation scores unless ``validation`` is given)."""
    recipe = w.good_recipe("fe")
    validation = validation or w.good / "scores" / "validation"
    spec = ExternalEffect(
        name="offsets", train_scores=str(train), validation_scores=str(validation), **fields
    )
    return recipe.model_copy(update={"coordinates": (*recipe.coordinates, spec)})


def scores(where, uid, score, name: str = "train") -> object:
    """A score file of ``uid`` and ``score`` (a directory of one part, as GDMix writes)."""
    path = where / name / "part-00000.avro"
    uid, score = np.asarray(uid, np.int64), np.asarray(score, np.float64)
    return write_scores_avro(path, uid, score, score, None, None)


def records(path, fields: list[dict], rows: list[dict]):
    """An Avro file of ``rows`` with a record schema of ``fields``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = {"type": "record", "name": "validation_result", "fields": fields}
    with open(path, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), rows)
    return path


@case("read", "score file whose uids are strings", cli=True)
def scores_uid_strings(w, where):
    fields = [{"name": "uid", "type": "string"}, {"name": "predictionScore", "type": "float"}]
    rows = [{"uid": f"u{k}", "predictionScore": 0.5} for k in range(N_TRAIN)]
    path = records(where / "train" / "part-00000.avro", fields, rows)
    return external(w, path.parent), [str(path), "column 'uid'", "'u0'", "integer"]


@case("read", "score records without a uid")
def scores_without_uid(w, where):
    fields = [{"name": "predictionScore", "type": "float"}]
    path = records(where / "train" / "part-00000.avro", fields, [{"predictionScore": 0.5}] * 3)
    return external(w, path.parent), [str(path), "score record lacks a field", "column 'uid'"]


@case("read", "score records without the recipe's score_column")
def scores_without_score_column(w, where):
    path = scores(where, np.arange(N_TRAIN), np.zeros(N_TRAIN))
    recipe = external(w, path.parent, score_column="logit")
    return recipe, [str(path), "score record lacks a field", "column 'logit'"]


@case("read", "a NaN score")
def scores_nan(w, where):
    score = np.zeros(N_TRAIN)
    score[7] = np.nan
    path = scores(where, np.arange(N_TRAIN), score)
    return external(w, path.parent), [str(path), "row 7", "column 'predictionScore'", "NaN"]


@case("read", "a score beyond the limit")
def scores_huge(w, where):
    fields = [{"name": "uid", "type": "long"}, {"name": "predictionScore", "type": "double"}]
    rows = [{"uid": k, "predictionScore": 1e30 if k == 3 else 0.0} for k in range(N_TRAIN)]
    path = records(where / "train" / "part-00000.avro", fields, rows)
    return external(w, path.parent), [str(path), "row 3", "column 'predictionScore'", "limit"]


@case("read", "a uid scored twice (another row left unscored)")
def scores_duplicate_uid(w, where):
    uid = np.arange(N_TRAIN)
    uid[9] = 8
    path = scores(where, uid, np.zeros(N_TRAIN))
    return external(w, path.parent), [str(path), "row 9", "column 'uid'", "duplicate uid 8"]


@case("read", "score uids that match none of the rows")
def scores_other_rows(w, where):
    path = scores(where, np.arange(5000, 5000 + N_TRAIN), np.zeros(N_TRAIN))
    return external(w, path.parent), [str(path.parent), "uid 5000", "training data lacks"]


@case("read", "scores of only some of the training rows")
def scores_some_rows(w, where):
    path = scores(where, np.arange(N_TRAIN - 5), np.zeros(N_TRAIN - 5))
    return external(w, path.parent), [str(path.parent), "35 training rows", "40"]


@case("read", "validation scores of the training rows")
def scores_validation_of_train(w, where):
    path = scores(where, np.arange(N_TRAIN), np.zeros(N_TRAIN), "validation")
    recipe = external(w, w.good / "scores" / "train", path.parent)
    return recipe, [str(path.parent), "uid 0", "validation data lacks"]


@case("read", "score file cut short")
def scores_truncated(w, where):
    path = scores(where, np.arange(N_TRAIN), np.zeros(N_TRAIN))
    path.write_bytes(path.read_bytes()[:-25])
    return external(w, path.parent), [str(path), "cannot read Avro score file"]


@case("read", "score file of random bytes")
def scores_garbage(w, where):
    path = where / "train" / "part-00000.avro"
    path.parent.mkdir()
    path.write_bytes(np.random.default_rng(1).bytes(200))
    return external(w, path.parent), [str(path), "cannot read Avro score file"]


@case("plan", "score directory that does not exist", RecipeError)
def scores_missing(w, where):
    recipe = external(w, where / "nowhere")
    return recipe, [str(where / "nowhere"), "no such file or directory", "coordinates.offsets"]


@case("read", "Parquet scores without the uid column")
def scores_parquet_without_uid(w, where):
    table = pa.table({"predictionScore": pa.array(np.zeros(N_TRAIN))})
    path = parquet(where / "train" / "part-0.parquet", table)
    return external(w, path.parent), [str(path), "column 'uid'", "missing column"]
