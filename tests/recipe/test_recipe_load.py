import json
import textwrap

import pydantic
import pytest

from raymix import FixedEffect, RandomEffect, Recipe, RecipeError
from raymix.recipe.load import apply_override, load_recipe, validate_recipe

RECIPE = """
from raymix import Data, FixedEffect, RandomEffect, Recipe
recipe = Recipe(
    data=Data(train="train", validation="val", metadata="m.json"),
    coordinates=[
        FixedEffect(name="global", feature_bag="global"),
        RandomEffect(name="per_user", entity="user_id", feature_bag="per_user", {extra}),
    ],
    output="out",
)
"""


def write(tmp_path, text, name="recipe.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_python_recipe_loads_and_round_trips_through_json(tmp_path):
    recipe = load_recipe(write(tmp_path, RECIPE.format(extra="l2=0.5")))
    assert recipe.coordinate("per_user").l2 == 0.5
    assert recipe.coordinate("global").solver.max_iter == 100  # GDMix's default
    again = load_recipe(write(tmp_path, recipe.model_dump_json(), "run.json"))
    assert again == recipe


def test_misspelt_field_names_its_path(tmp_path):
    with pytest.raises(RecipeError, match=r"recipe.py line 7: RandomEffect.l3: unknown field"):
        load_recipe(write(tmp_path, RECIPE.format(extra="l3=0.5")))


def test_misspelt_field_in_json_names_coordinate_by_name(tmp_path):
    raw = load_recipe(write(tmp_path, RECIPE.format(extra="l2=1.0"))).model_dump(mode="json")
    raw["coordinates"][1]["min_sample"] = 3
    with pytest.raises(RecipeError) as err:
        validate_recipe(raw)
    assert "coordinates.per_user.min_sample: unknown field" in str(err.value)


def test_set_overrides_by_name_and_position(tmp_path):
    path = write(tmp_path, RECIPE.format(extra="l2=1.0"))
    recipe = load_recipe(path, ["passes=3", "coordinates.per_user.l2=0.25", "coordinates.0.l2=2"])
    assert recipe.passes == 3
    assert recipe.coordinate("per_user").l2 == 0.25
    assert recipe.coordinate("global").l2 == 2.0
    with pytest.raises(RecipeError, match="no entry 'nobody'"):
        load_recipe(path, ["coordinates.nobody.l2=1"])
    with pytest.raises(RecipeError, match="passes"):
        load_recipe(path, ["passes=0"])


def test_bad_values_are_rejected_with_the_field():
    with pytest.raises(Exception, match="l2"):
        FixedEffect(name="g", feature_bag="b", l2=-1.0)
    with pytest.raises(Exception, match="regularize_intercept"):
        FixedEffect(name="g", feature_bag="b", fit_intercept=False, regularize_intercept=True)
    with pytest.raises(Exception, match="max_samples"):
        RandomEffect(name="r", entity="e", min_samples=5, max_samples=2)


def test_solver_by_short_string_or_object_and_unknown_string_lists_choices():
    assert FixedEffect(name="g", solver="lbfgs").solver.kind == "lbfgs"
    with pytest.raises(Exception, match=r"\['lbfgs'\]"):
        FixedEffect(name="g", solver="adam")


def test_recipe_level_rules():
    data = {"train": "t"}
    with pytest.raises(RecipeError, match="unique"):
        validate_recipe(
            {
                "data": data,
                "output": "o",
                "coordinates": [
                    {"kind": "fixed_effect", "name": "a"},
                    {"kind": "fixed_effect", "name": "a"},
                ],
            }
        )
    with pytest.raises(RecipeError, match="output: required"):
        validate_recipe({"data": data, "coordinates": [{"kind": "fixed_effect", "name": "a"}]})


def test_recipe_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.py")
    with pytest.raises(RecipeError, match="variable named 'recipe'"):
        load_recipe(write(tmp_path, "x = 1\n"))
    with pytest.raises(RecipeError, match="ZeroDivisionError"):
        load_recipe(write(tmp_path, "recipe = 1 / 0\n"))


def test_override_parsing():
    raw = apply_override({"a": {"b": 1}}, "a.b=[1, 2]")
    assert raw == {"a": {"b": [1, 2]}}
    assert apply_override({}, "name=hello")["name"] == "hello"
    with pytest.raises(RecipeError):
        apply_override({}, "no-equals-sign")


def test_recipe_is_frozen():
    recipe = Recipe(data={"train": "t"}, coordinates=[FixedEffect(name="g")], output="o")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        recipe.passes = 2
    assert json.loads(recipe.model_dump_json())["coordinates"][0]["kind"] == "fixed_effect"
