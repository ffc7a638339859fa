"""Load a recipe from a Python file, a resolved ``run.json`` or a GDMix YAML/JSON config.

* ``recipe.py``: a Python file that defines ``recipe`` (a :class:`Recipe`).
* ``run.json``: the resolved recipe saved beside every run (``Recipe.model_dump_json``).
* ``*.yaml``/``*.yml``/``*.json`` with a ``fixed_effect_config`` key: a GDMix workflow config,
  translated by :mod:`raymix.recipe.gdmix_config` into a raw recipe.

Whatever the file, its raw recipe gets the overrides and is then validated once.

``--set path=value`` overrides address fields by dotted path; a coordinate may be addressed
by its name (``coordinates.per_user.l2=0.5``) or its position (``coordinates.1.l2=0.5``).
Values are parsed as JSON when they parse, else taken as strings.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Iterable
from pathlib import Path

import pydantic

from raymix import storage
from raymix.errors import RecipeError
from raymix.recipe.gdmix_config import translate_gdmix_config
from raymix.recipe.spec import Recipe

_UNION_TAGS = {"fixed_effect", "random_effect", "external", "deep"}


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read the recipe at ``path``, apply ``overrides`` and validate the result."""
    name = storage.normal(path)
    if not storage.is_file(name):
        raise RecipeError(f"recipe file not found: {name}")
    with storage.local_copy(name) as local:  # a recipe in an object store: read from a copy
        raw = _read_raw(Path(local), name)
    for override in overrides:
        raw = apply_override(raw, override)
    return validate_recipe(raw, source=name)


def load_gdmix_config(config: dict, source: str = "gdmix config") -> Recipe:
    """The Recipe of a parsed GDMix config (:mod:`raymix.recipe.gdmix_config`), validated."""
    return validate_recipe(translate_gdmix_config(config, source=source), source=source)


def validate_recipe(raw, source: str | None = None) -> Recipe:
    """Validate a plain dict (or a Recipe) and turn pydantic's errors into one RecipeError.

    ``source`` (the recipe file) prefixes the message.
    """
    if isinstance(raw, Recipe):
        raw = raw.model_dump(mode="json")
    try:
        return Recipe.model_validate(raw)
    except pydantic.ValidationError as exc:
        where = f"{source}: " if source else ""
        raise RecipeError(where + _describe(exc, raw), field=None) from None


def _read_raw(path: Path, name: str) -> dict:
    """The raw recipe in the local file ``path``; messages name it ``name``."""
    suffix = path.suffix.lower()
    if suffix == ".py":
        try:
            namespace = runpy.run_path(str(path))
        except pydantic.ValidationError as exc:
            where = f"{name} line {_line_in(exc, path)}"
            raise RecipeError(f"{where}: {exc.title}.{_describe(exc, None)}") from None
        except RecipeError:
            raise
        except Exception as exc:  # the user's code failed: say where
            raise RecipeError(f"{name}: error while running the recipe: {exc!r}") from None
        recipe = namespace.get("recipe")
        if recipe is None:
            raise RecipeError(f"{name}: the file must define a variable named 'recipe'")
        if isinstance(recipe, Recipe):
            return recipe.model_dump(mode="json")
        if isinstance(recipe, dict):
            return recipe
        raise RecipeError(f"{name}: 'recipe' must be a raymix.Recipe, got {type(recipe).__name__}")
    if suffix in (".json", ".yaml", ".yml"):
        text = path.read_text()
        try:
            if suffix == ".json":
                raw = json.loads(text)
            else:
                import yaml

                raw = yaml.safe_load(text)
        except Exception as exc:  # a YAML error spans lines: one line, its place first
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            reason = getattr(exc, "problem", None) or exc
            raise RecipeError(f"{name}{where}: cannot parse: {reason}") from None
        if not isinstance(raw, dict):
            raise RecipeError(f"{name}: the top level must be a mapping")
        if "fixed_effect_config" in raw or "random_effect_config" in raw:
            return translate_gdmix_config(raw, source=name)
        return raw
    raise RecipeError(f"{name}: a recipe is a .py, .json or .yaml file")


def _line_in(exc: BaseException, path: Path) -> int | str:
    """The line of the recipe file where ``exc`` was raised."""
    line: int | str = "?"
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def apply_override(raw: dict, override: str, what: str = "--set") -> dict:
    """Return a copy of ``raw`` with ``path=value`` applied; ``what`` begins a message
    about the path (a search space says its own)."""
    said = f"{what} " if what else ""
    if "=" not in override:
        raise RecipeError(f"--set expects path=value, got '{override}'")
    dotted, text = override.split("=", 1)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    keys = dotted.strip().split(".")
    node = raw
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            index = _list_index(node, key, where, said)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = {}
                node = node[key]
        else:
            raise RecipeError(f"{said}{dotted}: '{where}' is not a mapping or a list")
    return raw


def _list_index(items: list, key: str, where: str, said: str) -> int:
    if key.isdigit() and int(key) < len(items):
        return int(key)
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == key:
            return index
    names = [item.get("name") for item in items if isinstance(item, dict)]
    raise RecipeError(
        f"{said.strip() + ': ' if said else ''}no entry '{key}' at '{where}' (known: {names})"
    )


def _describe(exc: pydantic.ValidationError, raw) -> str:
    messages = []
    for error in exc.errors():
        path = _field_path(error["loc"], raw)
        text = error["msg"]
        if error["type"] == "extra_forbidden":
            text = "unknown field"
        elif error["type"] == "missing":
            text = "required field is missing"
        messages.append(f"{path}: {text}" if path else text)
    return "; ".join(messages)


def _field_path(loc, raw) -> str:
    """A dotted path where coordinates are named, e.g. ``coordinates.per_user.l2``."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, str) and item in _UNION_TAGS:
            continue
        if isinstance(item, str) and item.startswith("function-"):
            continue
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            entry = node[item]
            name = entry.get("name") if isinstance(entry, dict) else None
            parts.append(str(name) if name else str(item))
            node = entry
            continue
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)
