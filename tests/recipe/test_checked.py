"""Specs checked on construction: one message template naming the field (no Ray)."""

from __future__ import annotations

import pickle
from typing import Annotated, Any

import pytest
from pydantic import Field

from raymix.errors import RecipeError
from raymix.recipe.checked import CheckedSpec, checked, one_of


class Shape(CheckedSpec):
    workers: Annotated[int, Field(ge=0)] = 2
    cpus: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.5
    color: Annotated[str, one_of("red", "blue")] = "red"
    name: Annotated[str, checked(lambda v: v.islower(), "lowercase")] = "a"


class Named(CheckedSpec):
    needed: int
    source: str | None = None

    @classmethod
    def problem(cls, field: str, message: str, data: dict[str, Any]) -> RecipeError:
        return RecipeError(f"{data.get('source')}: {field}: {message}")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"workers": -1}, "Shape.workers: must be greater than or equal to 0. Got -1 instead."),
        ({"workers": True}, "Shape.workers: must be a valid integer. Got True instead."),
        ({"workers": 2.0}, "Shape.workers: must be a valid integer. Got 2.0 instead."),
        ({"cpus": "2"}, "Shape.cpus: must be a valid number. Got '2' instead."),
        ({"cpus": float("inf")}, "Shape.cpus: must be a finite number. Got inf instead."),
        ({"color": "green"}, "Shape.color: must be one of ['red', 'blue']. Got 'green' instead."),
        ({"name": "A"}, "Shape.name: must be lowercase. Got 'A' instead."),
        ({"colour": "red"}, "Shape.colour: unknown field"),
    ],
)
def test_a_wrong_field_is_one_recipe_error_naming_it(given, message):
    with pytest.raises(RecipeError) as info:
        Shape(**given)
    assert str(info.value) == message
    assert info.value.field == message.split(":")[0]


def test_valid_values_are_kept_exactly_and_the_spec_is_frozen_and_picklable():
    shape = Shape(workers=0, cpus=2, color="blue")
    assert (shape.workers, shape.cpus, shape.color) == (0, 2.0, "blue")
    assert isinstance(shape.cpus, float)
    assert pickle.loads(pickle.dumps(shape)) == shape
    with pytest.raises(Exception, match="frozen"):
        shape.workers = 3


def test_a_spec_may_phrase_its_errors_from_the_arguments_given():
    with pytest.raises(RecipeError, match=r"^x.py: needed: required field is missing$"):
        Named(source="x.py")
    assert Named(needed=1).needed == 1
