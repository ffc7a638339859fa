"""Avro models given to a fit: a coordinate's ``warm_start`` and its ``prior``, each failing
in one line naming the model file."""

from __future__ import annotations

import shutil

import fastavro
import numpy as np

from raymix import RecipeError
from raymix.data.avro.models import model_record, write_models
from raymix.recipe.spec import Prior

from .corpus import DIM, case

INDEX = np.arange(DIM)


def fitted(w, coordinate: str = "global"):
    """The previous fit's models directory of ``coordinate`` (under the good fit's copy)."""
    return w.root / "fitted" / coordinate / "models"


def models(where, *records, name: str = "part-00000.avro"):
    """A models directory holding one Avro file of ``records``."""
    return write_models(where / "models" / name, records).parent


def record(model_id: str = "global", value=None, variances=None, task: str = "logistic"):
    """A model of every feature of the bag (features named by index), intercept first."""
    value = np.linspace(-0.5, 0.5, DIM) if value is None else np.asarray(value, float)
    return model_record(model_id, 0.1, INDEX, value, None, task, variances)


def warm(w, path, coordinate: str = "fe"):
    return w.good_recipe(coordinate, warm_start=str(path))


def prior(w, path, coordinate: str = "fe"):
    return w.good_recipe(coordinate, prior=Prior(models=str(path)))


# --- warm starts -------------------------------------------------------------------


@case("plan", "warm start: an Avro model file cut short", cli=True)
def warm_start_truncated(w, where):
    path = where / "models" / "part-00000.avro"
    path.parent.mkdir()
    path.write_bytes((fitted(w) / "part-00000.avro").read_bytes()[:-20])
    return warm(w, path.parent), [str(path), "truncated"]


@case("plan", "warm start: a file of random bytes named .avro")
def warm_start_garbage(w, where):
    path = where / "models" / "part-00000.avro"
    path.parent.mkdir()
    path.write_bytes(np.random.default_rng(0).bytes(300))
    return warm(w, path.parent), [str(path), "not an Avro object container file"]


@case("plan", "warm start: model records without 'means'")
def warm_start_without_means(w, where):
    schema = {
        "type": "record",
        "name": "BayesianLinearModelAvro",
        "fields": [{"name": "modelId", "type": "string"}],
    }
    path = where / "models" / "part-00000.avro"
    path.parent.mkdir()
    with open(path, "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(schema), [{"modelId": "global"}])
    return warm(w, path.parent), [str(path), "not a model record", "'means'"]


@case("plan", "warm start: a directory with no Avro model file")
def warm_start_not_models(w, where):
    (where / "models").mkdir()
    (where / "models" / "notes.txt").write_text("the model is elsewhere")
    return warm(w, where / "models"), [str(where / "models"), "no *.avro files"]


@case("plan", "warm start: a path that does not exist")
def warm_start_missing(w, where):
    return warm(w, where / "nowhere"), [str(where / "nowhere"), "no such file or directory"]


@case("plan", "warm start sharing no feature with its bag (every coefficient dropped)")
def warm_start_no_shared_feature(w, where):
    names = [(f"word{k}", "") for k in range(DIM)]
    path = models(where, model_record("global", 0.0, INDEX, np.ones(DIM), names, "logistic"))
    return warm(w, path), [str(path), "shares none of its 5 features with bag 'global'"]


@case("plan", "warm start in a raymix output whose run did not finish", RecipeError)
def warm_start_incomplete_output(w, where):
    shutil.copytree(w.root / "fitted", where / "fit")
    (where / "fit" / "_SUCCESS").unlink()
    path = where / "fit" / "global" / "models"
    return warm(w, path), [str(path), "incomplete raymix output", "_SUCCESS"]


@case("read", "warm start: a fixed-effect model file of two records")
def warm_start_two_records(w, where):
    path = models(where, record("a"), record("b"))
    return warm(w, path), [str(path), "a fixed-effect model has one record, found 2"]


@case("read", "warm start: a fixed-effect feature index outside the bag")
def warm_start_index_outside_bag(w, where):
    wide = model_record("global", 0.0, np.array([1, DIM + 2]), np.ones(2), None, "logistic")
    path = models(where, wide)
    return warm(w, path), [str(path), f"model feature index {DIM + 2} outside the bag"]


@case("read", "warm start: a NaN coefficient (fixed effect)")
def warm_start_nan_coefficient(w, where):
    path = models(where, record(value=[0.1, float("nan"), 0.0, 0.2, 0.3]))
    return warm(w, path), [
        str(path / "part-00000.avro"),  # the file, not only its directory
        "model 'global'",
        "NaN or infinite coefficient (nan)",
    ]


@case("read", "warm start: an infinite coefficient (random effect)")
def warm_start_inf_coefficient_random_effect(w, where):
    value = [0.1, float("inf"), 0.0, 0.2, 0.3]
    path = models(where, *(record(str(u), value if u == 1 else None) for u in range(3)))
    return warm(w, path, "re"), [str(path), "model '1'", "NaN or infinite coefficient (inf)"]


# --- priors ------------------------------------------------------------------------


@case("read", "prior: models without variances (the previous fit kept none)", cli=True)
def prior_without_variances(w, where):
    return prior(w, w.root / "fitted"), [
        str(fitted(w)),
        "model 'global model' has no variances",
        "variance='full'",
    ]


@case("read", "prior: a variance of 0")
def prior_zero_variance(w, where):
    path = models(where, record(variances=[1.0, 1.0, 0.0, 1.0, 1.0, 1.0]))
    return prior(w, path), [str(path), "the variance of ('1', '') is 0.0", "finite and > 0"]


@case("read", "prior: a model of another task")
def prior_other_task(w, where):
    path = models(where, record(variances=np.ones(DIM + 1), task="linear"))
    return prior(w, path), [str(path), "LinearRegressionModel", "not a logistic model"]


@case("read", "prior: a directory without the coordinate's models")
def prior_without_coordinate(w, where):
    (where / "other" / "models").mkdir(parents=True)
    return prior(w, where), [str(where), "no models of coordinate 'global'"]


@case("read", "prior: a NaN mean")
def prior_nan_mean(w, where):
    value = [0.1, 0.2, float("nan"), 0.0, 0.3]
    path = models(where, record(value=value, variances=np.ones(DIM + 1)))
    return prior(w, path), [str(path), "model 'global'", "NaN or infinite coefficient"]


@case("read", "prior: a random effect's model file cut short")
def prior_truncated(w, where):
    good = models(where / "good", *(record(str(u), variances=np.ones(DIM + 1)) for u in range(3)))
    path = where / "models" / "part-00000.avro"
    path.parent.mkdir()
    path.write_bytes((good / "part-00000.avro").read_bytes()[:-15])
    return prior(w, path.parent, "re"), [str(path)]
