"""A Photon ML GAME model directory (no ``run.json``) as ``raymix score`` scores it, as Photon
ML's ``GameScoringDriver`` does: an in-memory recipe and each coordinate's models directory.

The directory's coordinates and their feature shards are read by
:func:`raymix.data.avro.photon_layout.read_game_model`; the user says which input bags each
shard combines (``--feature-shard globalShard=features,userFeatures,songFeatures``, Photon's
``--feature-shard-configurations``). A coordinate becomes one recipe coordinate per bag of its
shard (``<coordinate>.<bag>``; just ``<coordinate>`` for a one-bag shard), all reading its one
``coefficients`` directory. Coefficients are matched to a bag's features by ``(name, term)``,
so the bags' scores add up to the shard's ``x . w`` (a feature in two bags counts with each
value) and the intercept is counted once, with the shard's first bag (the others score with
``fit_intercept=False``). A bag is indexed by the distinct ``(name, term)`` pairs of the rows
scored, so every coefficient whose feature appears in a row counts, and no other does.
"""

from __future__ import annotations

import re

from raymix import storage
from raymix.data.avro.photon_layout import read_game_model
from raymix.data.avro.photon_source import photon_fields
from raymix.data.source import list_files
from raymix.errors import DataError, RecipeError
from raymix.recipe.spec import Data, FixedEffect, RandomEffect, Recipe

OPTION = "--feature-shard"


def feature_shards(items: list[str]) -> dict[str, tuple[str, ...]]:
    """``SHARD=BAG[,BAG...]`` items as the bags of each shard."""
    shards: dict[str, tuple[str, ...]] = {}
    for item in items:
        shard, sep, listed = item.partition("=")
        bags = tuple(bag.strip() for bag in listed.split(","))
        if not sep or not shard.strip() or not all(bags):
            raise RecipeError(f"expected SHARD=BAG[,BAG...], got {item!r}", field=OPTION)
        if shard in shards:
            raise RecipeError(f"shard '{shard}' is mapped twice", field=OPTION)
        if len(set(bags)) != len(bags):
            raise RecipeError(f"shard '{shard}' lists a bag twice: {listed}", field=OPTION)
        shards[shard] = bags
    return shards


def photon_model_recipe(model_dir, data: list[str], shards: list[str], out) -> tuple[Recipe, dict]:
    """The recipe that scores the Photon ML model directory ``model_dir`` on the Photon ML
    input ``data`` (files or directories, for every coordinate) with ``shards``
    (``SHARD=BAG[,BAG...]`` items), and each of its coordinates' models directory."""
    coordinates = read_game_model(model_dir)
    if not coordinates:
        raise DataError("a Photon ML model without coordinates", path=storage.shown(model_dir))
    bags_of = feature_shards(shards)
    known = sorted({c.shard for c in coordinates})
    for shard in bags_of:
        if shard not in known:
            raise RecipeError(
                f"the model has no feature shard '{shard}' (its shards: {', '.join(known)})",
                field=OPTION,
            )
    if not data:
        raise RecipeError("a Photon ML model has no recipe to name its data: give the input files")
    if any("=" in item for item in data):
        raise RecipeError("a Photon ML model's coordinates all score the same rows: give paths")
    files = list_files(tuple(data), "data")
    fields = photon_fields(files[0])
    bags = sorted(name for name, kind in fields.items() if _is_array(kind))
    specs: list[FixedEffect | RandomEffect] = []
    models = {}
    for c in coordinates:
        if c.shard not in bags_of:
            raise RecipeError(
                f"coordinate '{c.name}' has feature shard '{c.shard}': map it to input bags "
                f"with {OPTION} {c.shard}=BAG[,BAG...]",
                field=OPTION,
            )
        for bag in bags_of[c.shard]:
            if bag not in bags:
                raise RecipeError(
                    f"shard '{c.shard}': the input has no bag '{bag}' (its bags: "
                    f"{', '.join(bags)})",
                    field=OPTION,
                )
        if c.entity is not None and c.entity not in fields:
            raise DataError(
                f"coordinate '{c.name}' has entity type '{c.entity}', a field the input has "
                f"not (its fields: {', '.join(fields)})",
                path=storage.shown(files[0]),
            )
        for k, bag in enumerate(bags_of[c.shard]):
            name = _spec_name(c.name if len(bags_of[c.shard]) == 1 else f"{c.name}.{bag}")
            spec = (
                FixedEffect(name=name, feature_bag=bag, fit_intercept=k == 0)
                if c.entity is None
                else RandomEffect(name=name, entity=c.entity, feature_bag=bag, fit_intercept=k == 0)
            )
            specs.append(spec)
            models[name] = c.models
    data_spec = Data(train=files, format="photon")
    recipe = Recipe(name="photon-model", data=data_spec, coordinates=tuple(specs), output=str(out))
    return recipe, models


def _is_array(kind) -> bool:
    return isinstance(kind, dict) and kind.get("type") == "array"


def _spec_name(name: str) -> str:
    """A coordinate's name as a recipe takes it (letters, digits, ``_.-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
