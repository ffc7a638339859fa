"""The ``deep`` coordinate kind in recipes: fields, validation messages, plan-time checks."""

import json

import pytest

from raymix import AdamW, DeepEffect, Recipe
from raymix.errors import DataError, RecipeError
from raymix.recipe.load import validate_recipe
from raymix.run import plan


def recipe_dict(text_data, **fields):
    deep = {"kind": "deep", "name": "global", "vocab": str(text_data / "vocab.txt"), **fields}
    return {
        "data": {"train": str(text_data / "train"), "validation": str(text_data / "validation")},
        "coordinates": [deep],
        "output": "unused",
    }


def test_defaults_are_detext_on_movielens(text_data):
    spec = validate_recipe(recipe_dict(text_data)).coordinates[0]
    assert isinstance(spec, DeepEffect)
    assert (spec.embedding_size, spec.filters, spec.window_sizes, spec.hidden) == (64, 50, (3,), ())
    assert (spec.steps, spec.batch_size, spec.learning_rate) == (1000, 64, 0.002)
    assert spec.optimizer == AdamW() and spec.optimizer.weight_decay == 0.01
    assert (spec.max_len, spec.min_len, spec.workers, spec.backend) == (16, 3, 0, "tensorflow")


def test_optimizer_is_a_string_or_an_object_and_the_learning_rate_lives_once(text_data):
    sgd = validate_recipe(recipe_dict(text_data, optimizer="sgd")).coordinates[0]
    assert sgd.optimizer.kind == "sgd"
    moved = validate_recipe(
        recipe_dict(
            text_data, optimizer={"kind": "adamw", "learning_rate": 0.01, "weight_decay": 0}
        )
    ).coordinates[0]
    assert moved.learning_rate == 0.01 and moved.optimizer.learning_rate is None
    same = DeepEffect(
        name="g", vocab="v.txt", optimizer=AdamW(learning_rate=0.01), learning_rate=0.01
    )
    assert same.learning_rate == 0.01


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"optimizer": "lbfgs"},
            "coordinates.global.optimizer: Value error, must be one of ['adam', 'adamw', 'sgd']",
        ),
        (
            {"backend": "mpi"},
            "coordinates.global.backend: Input should be 'tensorflow' or 'horovod'",
        ),
        (
            {"window_sizes": []},
            "coordinates.global.window_sizes: Tuple should have at least 1 item",
        ),
        ({"filters": 0}, "coordinates.global.filters: Input should be greater than 0"),
        ({"hidden": [8, -1]}, "coordinates.global.hidden.1: Input should be greater than 0"),
        ({"learning_rate": 0}, "coordinates.global.learning_rate: Input should be greater than 0"),
        ({"workers": 4, "batch_size": 2}, "batch_size (2) must be >= workers (4)"),
        ({"l2": 1.0}, "coordinates.global.l2: unknown field"),
        (
            {"learning_rate": 0.1, "optimizer": {"kind": "sgd", "learning_rate": 0.2}},
            "learning_rate is 0.1 but optimizer.learning_rate is 0.2: give it once",
        ),
    ],
)
def test_invalid_fields_name_their_path(text_data, fields, message):
    with pytest.raises(RecipeError) as caught:
        validate_recipe(recipe_dict(text_data, **fields))
    assert message in str(caught.value)


def test_recipe_round_trips_through_json(text_data):
    recipe = validate_recipe(recipe_dict(text_data, hidden=[16], optimizer="adam", workers=2))
    again = Recipe.model_validate(json.loads(recipe.model_dump_json()))
    assert again == recipe


def test_plan_checks_vocabulary_and_text_column(text_data, tmp_path):
    good = validate_recipe(recipe_dict(text_data, feature_bag="wide"))
    described = plan(good).describe()
    assert (
        "1. global [deep workers=in-process] text 'title', bag 'wide' (dim 6), 1000 steps x 64"
        in described
    )
    missing_vocab = validate_recipe(recipe_dict(text_data, vocab=str(tmp_path / "nope.txt")))
    with pytest.raises(RecipeError, match="coordinates.global.vocab: no such vocabulary file"):
        plan(missing_vocab)
    with pytest.raises(DataError, match="column 'headline': missing text column"):
        plan(validate_recipe(recipe_dict(text_data, text_column="headline")))
    with pytest.raises(DataError, match="the text column must hold strings, got int64"):
        plan(validate_recipe(recipe_dict(text_data, text_column="uid")))


def test_movielens_recipe_plans(movielens, monkeypatch):
    from pathlib import Path

    from raymix.recipe.load import load_recipe

    monkeypatch.setenv("RAYMIX_MOVIELENS", str(movielens))
    recipe = load_recipe(
        Path(__file__).parents[2] / "recipes" / "movielens_detext.py", ["output=x"]
    )
    lines = plan(recipe).describe().splitlines()
    assert "global [deep workers=in-process] text 'title', bag 'global' (dim 44)" in lines[3]
    assert [c.kind for c in recipe.coordinates] == ["deep", "random_effect", "random_effect"]
    assert isinstance(recipe.coordinates[0], DeepEffect)
