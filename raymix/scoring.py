"""``raymix score``: apply a trained model (a fit's output directory) to data, in batch.

Each coordinate's rows are read and scored with Ray Data (``map_batches``); per-row scores
are then summed by uid in the recipe's order, exactly as the fit sums them, so scoring the
validation split reproduces the fit's validation scores bit for bit. Entities without a
model (unseen, or under ``min_samples``) contribute 0: they are scored by the other
coordinates alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from raymix import storage
from raymix.coordinates.base import RowIndex
from raymix.coordinates.inputs import build_source, feature_names
from raymix.coordinates.linear_models import LinearModels, load_linear_models
from raymix.data.avro.photon_layout import is_game_model
from raymix.data.avro.scores import write_scores_avro
from raymix.data.source import Source
from raymix.errors import DataError, RecipeError
from raymix.outputs import RUN_FILE
from raymix.recipe.memory import InMemory
from raymix.recipe.spec import Data, DeepEffect, ExternalEffect, FixedEffect, RandomEffect, Recipe


def _score_batch(table: pa.Table, source: Source, models: LinearModels) -> pa.Table:
    from raymix.engine.reading import rows_of_block

    rows = rows_of_block(table, source)  # an error names the file and the row in it
    own = models.scores(rows.X, rows.entity)
    columns = {"uid": rows.uid, "score": own, "offset": rows.offset, "label": rows.label}
    if rows.entity is not None:
        columns["entity"] = rows.entity
    return pa.table(columns)


@dataclass(frozen=True)
class Scores:
    """A fit's model applied to rows, in uid order: ``total`` (the logit: the data's
    ``offset`` plus every coordinate's own score, summed in the recipe's order, as the fit
    sums them), each coordinate's ``own`` score, the ``entity`` ids of each random effect's
    column, and the ``label`` (None when the rows have none)."""

    uid: np.ndarray
    total: np.ndarray
    offset: np.ndarray
    own: dict[str, np.ndarray]
    entity: dict[str, np.ndarray]
    label: np.ndarray | None


def score_command(
    model_dir,
    data: list[str],
    out,
    *,
    overwrite=False,
    address=None,
    progress=None,
    feature_shards: tuple[str, ...] | list[str] = (),
) -> Path:
    """Score ``data`` with a fit's output directory, or with a Photon ML GAME model directory
    (no ``run.json``: :mod:`raymix.photon_scoring`, its shards mapped to input bags by
    ``feature_shards``, ``SHARD=BAG[,BAG...]``); write ``out/scores``."""
    from raymix.outputs import SCORE_FILE, check_apart, output_location, output_transaction

    say = progress or (lambda message: None)
    where = output_location(model_dir, field="model_dir")
    if not storage.is_file(where / RUN_FILE):
        if not is_game_model(where):
            raise RecipeError(
                f"'{where}' is not a raymix fit output (no {RUN_FILE}), nor a Photon ML "
                "model (no fixed-effect/ or random-effect/)"
            )
        from raymix.photon_scoring import photon_model_recipe

        check_apart(out, where)
        recipe, models = photon_model_recipe(where, data, list(feature_shards), out)
        inputs = {spec.name: recipe.data for spec in recipe.coordinates}
    else:
        if feature_shards:
            raise RecipeError(
                f"--feature-shard maps a Photon ML model's shards to bags: '{where}' is not one"
            )
        where, recipe = fit_output(where, before_loading=lambda at: check_apart(out, at))
        models = model_dirs(where, recipe)
        inputs = _inputs(recipe, data)
    plans = _plans(models, recipe, inputs)
    with output_transaction(out, overwrite, marker=SCORE_FILE) as out_dir:
        scores = _scores(recipe, plans, address, say)
        path = write_scores_avro(
            out_dir / "scores" / "part-00000.avro",
            scores.uid,
            scores.total,
            scores.total - scores.offset,
            scores.label,
            None,
            names=("uid", recipe.columns.label, None),
        )
        say(f"wrote {path}")
        what = {"model_dir": str(storage.shown(where)), "data": list(data)}
        if feature_shards:
            what["feature_shards"] = list(feature_shards)
        storage.write_text(storage.join(out_dir, SCORE_FILE), json.dumps(what, indent=2) + "\n")
        return path


def model_dirs(model_dir, recipe: Recipe) -> dict[str, Any]:
    """Each coordinate's models directory in a fit's output directory."""
    return {spec.name: model_dir / spec.name / "models" for spec in recipe.coordinates}


def fit_output(model_dir, before_loading=None) -> tuple[Any, Recipe]:
    """A finished fit's output directory (a local path or a :class:`~raymix.storage.Location`)
    and its recipe (its ``run.json``); ``before_loading`` checks the directory first."""
    from raymix.outputs import check_complete, load_run, output_location

    where = output_location(model_dir, field="model_dir")
    if not storage.is_file(where / RUN_FILE):
        raise RecipeError(f"'{where}' is not a raymix fit output (no {RUN_FILE})")
    check_complete(where, "fit output")
    if before_loading is not None:
        before_loading(where)
    recipe: Recipe = load_run(where)
    storage.use_endpoint(recipe.resources.s3_endpoint)
    return where, recipe


def score(model_dir, recipe: Recipe, inputs: dict[str, Data], *, address=None, progress=None):
    """:class:`Scores` of the rows of ``inputs`` (a Data per coordinate name, its ``train``
    the rows to score) under the fit in ``model_dir``: what ``raymix score`` writes."""
    plans = _plans(model_dirs(model_dir, recipe), recipe, inputs)
    return _scores(recipe, plans, address, progress or (lambda message: None))


def _plans(models_of: dict[str, Any], recipe: Recipe, inputs: dict[str, Data]) -> list[tuple]:
    """Per coordinate: its spec, its rows' source and its models (from ``models_of``, its
    models directory by coordinate name); a coordinate without ``fit_intercept`` scores
    without its models' intercepts."""
    plans: list[tuple] = []
    for spec in recipe.coordinates:
        if isinstance(spec, ExternalEffect):
            raise RecipeError(
                f"coordinate '{spec.name}' is external: score it with the model that made it"
            )
        entity = spec.entity if isinstance(spec, RandomEffect) else None
        base = recipe.data_for(spec)
        source = build_source(
            inputs[spec.name],
            recipe.columns,
            split="train",
            bag=spec.feature_bag,
            entity=entity,
            label_optional=True,
        )
        if isinstance(spec, DeepEffect):  # a SavedModel, scored from raw rows
            from raymix.deep.export import check_deep_model

            plans.append((spec, source, check_deep_model(models_of[spec.name], source)))
            continue
        names = feature_names(base, spec.feature_bag, source.schema.dim)
        models = load_linear_models(models_of[spec.name], names, source.schema.dim)
        if isinstance(spec, FixedEffect) and models.keys.size != 1:
            raise DataError("a fixed effect has exactly one model", path=str(models_of[spec.name]))
        if not spec.fit_intercept:  # e.g. a Photon shard's later bags: its intercept counts once
            models = dataclasses.replace(models, intercepts=np.zeros_like(models.intercepts))
        plans.append((spec, source, models))
    return plans


def _scores(recipe: Recipe, plans: list, address, say) -> Scores:
    from raymix.engine.cluster import ray_session
    from raymix.engine.reading import read_dataset

    with ray_session(recipe.resources, address):
        per_coordinate: list[pa.Table] = []
        for spec, source, models in plans:
            if isinstance(spec, DeepEffect):
                from raymix.engine.reading import deep_score_dataset

                dataset = deep_score_dataset(source, models)
            else:
                dataset = read_dataset(source).map_batches(
                    _score_batch,
                    fn_kwargs={"source": source, "models": models},
                    batch_size=None,
                    batch_format="pyarrow",
                )
            tables = list(dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
            if not tables:  # build_source refuses files without rows: not expected
                raise DataError(f"coordinate '{spec.name}': no rows to score")
            table = pa.concat_tables(tables)
            per_coordinate.append(table)
            say(f"scored {table.num_rows} rows with '{spec.name}'")
    first = per_coordinate[0]
    index = RowIndex([first.column("uid").to_numpy()], "scoring")
    total = np.zeros(len(index))
    base = np.zeros(len(index))
    label = np.full(len(index), np.nan)
    pos = index.positions(first.column("uid").to_numpy(), plans[0][0].name)
    base[pos] = first.column("offset").to_numpy()
    label[pos] = first.column("label").to_numpy()
    total += base
    owns, entities = {}, {}
    for (spec, _, _), table in zip(plans, per_coordinate, strict=True):
        uid = table.column("uid").to_numpy()
        p = index.positions(uid, f"coordinate '{spec.name}'")
        index.check_covered([p], f"coordinate '{spec.name}'")
        own = np.zeros(len(index))
        own[p] = table.column("score").to_numpy()
        total = total + own
        owns[spec.name] = own
        if "entity" in table.column_names and spec.entity not in entities:
            ids = table.column("entity").to_numpy(zero_copy_only=False)
            entities[spec.entity] = np.empty(len(index), ids.dtype)
            entities[spec.entity][p] = ids
    has_label = not np.all(np.isnan(label))
    return Scores(index.uid, total, base, owns, entities, label if has_label else None)


def _inputs(recipe: Recipe, data: list[str]) -> dict[str, Data]:
    """Data to score per coordinate: the fit's validation data, one path for all, or name=path."""
    inputs = {}
    named = dict(item.split("=", 1) for item in data if "=" in item)
    plain = [item for item in data if "=" not in item]
    if len(plain) > 1:
        raise RecipeError("give one data path for every coordinate, or name=path per coordinate")
    for spec in recipe.coordinates:
        base = recipe.data_for(spec)
        path: str | tuple[str, ...] | InMemory | None = named.get(spec.name) or (
            plain[0] if plain else None
        )
        if path is None:
            if base.validation is None:
                raise RecipeError(
                    f"coordinate '{spec.name}': no data given and the recipe has no validation data"
                )
            path = base.validation
        inputs[spec.name] = base.model_copy(update={"train": path, "validation": None})
    unknown = set(named) - {c.name for c in recipe.coordinates}
    if unknown:
        raise RecipeError(f"unknown coordinates in data arguments: {sorted(unknown)}")
    return inputs
