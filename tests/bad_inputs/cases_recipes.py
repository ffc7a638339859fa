"""Recipe files (.py) and resolved recipes (run.json): each fails while loading, naming the
file and the field."""

from __future__ import annotations

from raymix import RecipeError

from .corpus import Load, case

PY_HEADER = "from raymix import Data, FixedEffect, RandomEffect, Recipe\n"


def py(where, body: str):
    path = where / "recipe.py"
    path.write_text(PY_HEADER + body)
    return path


def spoilt(w, where, change, coordinate: str = "re"):
    """The good recipe as run.json, after ``change(raw)``."""
    raw = w.raw(coordinate)
    change(raw)
    return w.run_json(where, raw)


@case("recipe", "recipe (.py) with a misspelt field", RecipeError, cli=True)
def misspelt_field_py(w, where):
    path = where / "recipe.py"
    path.write_text(
        "from raymix import Data, FixedEffect, Recipe\n"
        "recipe = Recipe(\n"
        "    data=Data(train='train'),\n"
        "    coordinates=[FixedEffect(name='global', feature_bagg='global')],\n"
        "    output='out',\n"
        ")\n"
    )
    return path, [f"{path} line 4", "FixedEffect.feature_bagg: unknown field"]


@case("recipe", "run.json with a misspelt field", RecipeError)
def misspelt_field_json(w, where):
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(l3=0.5))
    return path, [str(path), "coordinates.per-user.l3: unknown field"]


@case("recipe", "unknown coordinate kind", RecipeError)
def unknown_coordinate_kind(w, where):
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(kind="random_efect"))
    return path, [str(path), "coordinates.per-user", "'random_efect'", "'random_effect'"]


@case("recipe", "recipe (.py) with a syntax error", RecipeError)
def py_syntax_error(w, where):
    path = py(where, "recipe = Recipe(\n    data=Data(train='t'),,\n)\n")
    return Load(path), [str(path), "SyntaxError"]


@case("recipe", "recipe (.py) that raises while it runs", RecipeError)
def py_raises(w, where):
    path = py(where, "import json\nrecipe = json.loads('{not json')\n")
    return Load(path), [str(path), "error while running the recipe", "JSONDecodeError"]


@case("recipe", "recipe (.py) without a variable named 'recipe'", RecipeError)
def py_without_recipe(w, where):
    path = py(where, "my_recipe = None\n")
    return Load(path), [str(path), "must define a variable named 'recipe'"]


@case("recipe", "recipe (.py) whose 'recipe' is a dict, not a Recipe", RecipeError)
def py_recipe_is_a_dict(w, where):
    path = py(where, "recipe = {'data': {'train': 't'}}\n")
    return Load(path), [str(path), "coordinates: required field is missing"]


@case("recipe", "recipe (.py) importing a name raymix does not have", RecipeError)
def py_bad_import(w, where):
    path = where / "recipe.py"
    path.write_text("from raymix import FixedEfect\n")
    return Load(path), [str(path), "FixedEfect"]


@case("recipe", "recipe file that does not exist", RecipeError)
def recipe_missing(w, where):
    return Load(where / "nope.py"), [str(where / "nope.py"), "recipe file not found"]


@case("recipe", "recipe file with an unknown extension", RecipeError)
def recipe_extension(w, where):
    path = where / "recipe.txt"
    path.write_text("passes: 2\n")
    return Load(path), [str(path), ".py, .json or .yaml"]


@case("recipe", "run.json that is not JSON", RecipeError)
def json_invalid(w, where):
    path = w.run_json(where, '{"data": {"train": "x"},')
    return Load(path), [str(path), "cannot parse"]


@case("recipe", "run.json whose top level is a list", RecipeError)
def json_top_level_list(w, where):
    path = w.run_json(where, "[1, 2]")
    return Load(path), [str(path), "top level must be a mapping"]


@case("recipe", "run.json without data", RecipeError)
def json_without_data(w, where):
    path = spoilt(w, where, lambda raw: raw.pop("data"))
    return Load(path), [str(path), "data", "required"]


@case("recipe", "run.json with passes = 0", RecipeError)
def json_zero_passes(w, where):
    path = spoilt(w, where, lambda raw: raw.update(passes=0))
    return Load(path), [str(path), "passes", "greater than 0"]


@case("recipe", "run.json with passes as text", RecipeError)
def json_passes_text(w, where):
    path = spoilt(w, where, lambda raw: raw.update(passes="two"))
    return Load(path), [str(path), "passes", "integer"]


@case("recipe", "negative l2", RecipeError)
def json_negative_l2(w, where):
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(l2=-1))
    return Load(path), [str(path), "coordinates.per-user.l2", "-1"]


@case("recipe", "l2 = 'auto' for a fixed effect", RecipeError)
def json_fixed_effect_auto_l2(w, where):
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(l2="auto"), "fe")
    return Load(path), [str(path), "coordinates.global.l2"]


@case("recipe", "l1 = NaN", RecipeError)
def json_nan_l1(w, where):
    path = w.run_json(where, w.good_recipe().model_dump_json().replace('"l1":0.0', '"l1":NaN'))
    return Load(path), [str(path), "coordinates.per-user.l1"]


@case("recipe", "coordinate name with a slash", RecipeError)
def json_bad_coordinate_name(w, where):
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(name="per/user"))
    return Load(path), [str(path), "name", "pattern"]


@case("recipe", "two coordinates with the same name", RecipeError)
def json_duplicate_coordinate_names(w, where):
    def same(raw):
        raw["coordinates"][1]["name"] = raw["coordinates"][0]["name"]

    path = spoilt(w, where, same, "both")
    return Load(path), [str(path), "coordinate names must be unique", "['global']"]


@case("recipe", "a recipe without coordinates", RecipeError)
def json_no_coordinates(w, where):
    path = spoilt(w, where, lambda raw: raw.update(coordinates=[]))
    return Load(path), [str(path), "coordinates", "at least one"]


@case("recipe", "unknown validation metric", RecipeError)
def json_unknown_metric(w, where):
    path = spoilt(w, where, lambda raw: raw.update(metric="accuracy"))
    return Load(path), [str(path), "metric: Input should be 'auc', 'logloss' or 'rmse'"]


@case("recipe", "unknown task", RecipeError)
def json_unknown_task(w, where):
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(task="probit"))
    return Load(path), [str(path), "coordinates.per-user.task", "'logistic'"]


@case("recipe", "regularize_intercept without fit_intercept", RecipeError)
def json_regularize_without_intercept(w, where):
    change = {"regularize_intercept": True, "fit_intercept": False}
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(change))
    return Load(path), [str(path), "coordinates.per-user", "regularize_intercept=True needs"]


@case("recipe", "a locked coordinate without warm_start", RecipeError)
def json_locked_without_model(w, where):
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(locked=True))
    return Load(path), [str(path), "coordinates.per-user", "give warm_start"]


@case("recipe", "max_samples below min_samples", RecipeError)
def json_max_below_min_samples(w, where):
    change = {"min_samples": 10, "max_samples": 5}
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(change))
    return Load(path), [str(path), "coordinates.per-user", "max_samples must be >= min_samples"]


@case("recipe", "min_workers above workers", RecipeError)
def json_min_workers(w, where):
    change = {"workers": 1, "min_workers": 2}
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(change), "fe")
    return Load(path), [str(path), "coordinates.global", "min_workers needs"]


@case("recipe", "unknown fixed-effect solver name", RecipeError)
def json_unknown_solver(w, where):
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].update(solver="adam"), "fe")
    return Load(path), [str(path), "coordinates.global.solver", "['lbfgs']", "'adam'"]


@case("recipe", "random effect without an entity", RecipeError)
def json_random_effect_without_entity(w, where):
    path = spoilt(w, where, lambda raw: raw["coordinates"][0].pop("entity"))
    return Load(path), [str(path), "coordinates.per-user.entity", "required"]


@case("recipe", "unknown data format", RecipeError)
def json_unknown_format(w, where):
    path = spoilt(w, where, lambda raw: raw["data"].update(format="csv"))
    return Load(path), [str(path), "data.format", "'parquet'"]


@case("recipe", "negative number of actors", RecipeError)
def json_negative_actors(w, where):
    path = spoilt(w, where, lambda raw: raw["resources"].update(actors=-1))
    return Load(path), [str(path), "resources.actors", "greater than or equal to 0"]


@case("recipe", "S3 endpoint with credentials in it", RecipeError)
def json_endpoint_with_credentials(w, where):
    endpoint = "http://key:secret@minio:9000"
    path = spoilt(w, where, lambda raw: raw["resources"].update(s3_endpoint=endpoint))
    return Load(path), [str(path), "resources.s3_endpoint"]


@case("recipe", "early stopping with patience 0", RecipeError)
def json_patience_zero(w, where):
    path = spoilt(w, where, lambda raw: raw.update(early_stopping={"patience": 0}))
    return Load(path), [str(path), "early_stopping.patience", "greater than 0"]


@case("recipe", "recipe name with spaces", RecipeError)
def json_name_with_spaces(w, where):
    path = spoilt(w, where, lambda raw: raw.update(name="my run"))
    return Load(path), [str(path), "name", "pattern"]


@case("recipe", "--set without '='", RecipeError)
def set_without_equals(w, where):
    path = w.run_json(where, w.raw())
    return Load(path, ["passes"]), ["--set expects path=value", "'passes'"]


@case("recipe", "--set of an unknown coordinate", RecipeError)
def set_unknown_coordinate(w, where):
    path = w.run_json(where, w.raw())
    return Load(path, ["coordinates.per-item.l2=2"]), ["--set", "'per-item'", "per-user"]


@case("recipe", "--set of an unknown field", RecipeError)
def set_unknown_field(w, where):
    path = w.run_json(where, w.raw())
    return Load(path, ["coordinates.per-user.l22=2"]), ["coordinates.per-user.l22", "unknown field"]


@case("recipe", "--set with a value of the wrong type", RecipeError)
def set_wrong_type(w, where):
    path = w.run_json(where, w.raw())
    return Load(path, ["passes=many"]), ["passes", "integer"]
