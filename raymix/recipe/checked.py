"""Specs built by code rather than read from a recipe file, checked on construction.

A :class:`CheckedSpec` is frozen, forbids unknown fields and takes no type coercion
(``workers=True`` or ``cpus="2"`` are refused, not converted); a value it refuses raises
:class:`~raymix.errors.RecipeError` naming the field, in one template::

    ClusterShape.workers: must be greater than or equal to 0. Got -1 instead.

Allowed values are declared on the fields (pydantic constraints, :func:`one_of`,
:func:`checked`), not checked by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict

from raymix.errors import RecipeError


def first_problem(exc: pydantic.ValidationError) -> tuple[str, str]:
    """The dotted field and the message of the first problem in ``exc``:
    ``("workers", "must be greater than or equal to 0. Got -1 instead.")``."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return field, "unknown field"
    if error["type"] == "missing":
        return field, "required field is missing"
    if error["type"] == "value_error":
        text = str(error["ctx"]["error"])
    else:
        text = error["msg"]
        if text.startswith("Input should be "):
            text = "must be " + text.removeprefix("Input should be ")
    return field, f"{text}. Got {error['input']!r} instead."


def checked(rule: Callable[[Any], bool], expected: str) -> AfterValidator:
    """A field validator: ``rule(value)`` holds, else the message says the value ``must be
    {expected}``."""

    def check(value):
        if not rule(value):
            raise ValueError(f"must be {expected}")
        return value

    return AfterValidator(check)


def one_of(*choices) -> AfterValidator:
    """A field validator: the value is one of ``choices`` (the message lists them)."""
    return checked(lambda value: value in choices, f"one of {list(choices)}")


class CheckedSpec(BaseModel):
    """A frozen spec that raises :class:`RecipeError` (not pydantic's error) when a field is
    wrong: ``field`` is ``ClassName.field`` (see :meth:`problem` to phrase it otherwise)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, strict=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise self.problem(*first_problem(exc), data) from None

    @classmethod
    def problem(cls, field: str, message: str, data: dict[str, Any]) -> RecipeError:
        """The error for a wrong ``field`` of ``data`` (the arguments given)."""
        return RecipeError(message, field=f"{cls.__name__}.{field}" if field else cls.__name__)
