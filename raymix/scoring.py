"""``raymix score``: apply a trained model (a fit's output directory) to data, in batch.

Each coordinate's rows are read and scored with Ray Data (``map_batches``); per-row scores
are then summed by uid in the recipe's order, exactly as the fit sums them, so scoring the
validation split reproduces the fit's validation scores bit for bit. Entities without a
model (unseen, or under ``min_samples``) contribute 0: they are scored by the other
coordinates alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from raymix import storage
from raymix.coordinates.base import RowIndex
from raymix.coordinates.inputs import build_source, feature_names
from raymix.coordinates.linear_models import LinearModels, load_linear_models
from raymix.data.avro.scores import write_scores_avro
from raymix.data.source import Source
from raymix.errors import DataError, RecipeError
from raymix.outputs import RUN_FILE
from raymix.recipe.spec import Data, DeepEffect, ExternalEffect, FixedEffect, RandomEffect, Recipe


def _score_batch(table: pa.Table, source: Source, models: LinearModels) -> pa.Table:
    from raymix.engine.reading import rows_of_block

    rows = rows_of_block(table, source)  # an error names the file and the row in it
    own = models.scores(rows.X, rows.entity)
    return pa.table({"uid": rows.uid, "score": own, "offset": rows.offset, "label": rows.label})


def score_command(
    model_dir, data: list[str], out, *, overwrite=False, address=None, progress=None
) -> Path:
    from raymix.outputs import (
        SCORE_FILE,
        check_apart,
        check_complete,
        load_run,
        output_location,
        output_transaction,
    )

    say = progress or (lambda message: None)
    model_dir = output_location(model_dir, field="model_dir")
    if not storage.is_file(model_dir / RUN_FILE):
        raise RecipeError(f"'{model_dir}' is not a raymix fit output (no {RUN_FILE})")
    check_complete(model_dir, "fit output")
    check_apart(out, model_dir)
    recipe: Recipe = load_run(model_dir)
    storage.use_endpoint(recipe.resources.s3_endpoint)
    inputs = _inputs(recipe, data)
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

            plans.append((spec, source, check_deep_model(model_dir / spec.name / "models", source)))
            continue
        names = feature_names(base, spec.feature_bag, source.schema.dim)
        models = load_linear_models(model_dir / spec.name / "models", names, source.schema.dim)
        if isinstance(spec, FixedEffect) and models.keys.size != 1:
            raise DataError(
                "a fixed effect has exactly one model", path=str(model_dir / spec.name / "models")
            )
        plans.append((spec, source, models))
    with output_transaction(out, overwrite, marker=SCORE_FILE) as out_dir:
        path = _score_into(out_dir, recipe, plans, address, say)
        what = {"model_dir": str(storage.shown(model_dir)), "data": list(data)}
        storage.write_text(storage.join(out_dir, SCORE_FILE), json.dumps(what, indent=2) + "\n")
        return path


def _score_into(out_dir, recipe: Recipe, plans: list, address, say) -> Path:
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
    for (spec, _, _), table in zip(plans, per_coordinate, strict=True):
        uid = table.column("uid").to_numpy()
        p = index.positions(uid, f"coordinate '{spec.name}'")
        index.check_covered([p], f"coordinate '{spec.name}'")
        own = np.zeros(len(index))
        own[p] = table.column("score").to_numpy()
        total = total + own
    has_label = not np.all(np.isnan(label))
    path = write_scores_avro(
        out_dir / "scores" / "part-00000.avro",
        index.uid,
        total,
        total - base,
        label if has_label else None,
        None,
        names=("uid", recipe.columns.label, None),
    )
    say(f"wrote {path}")
    return path


def _inputs(recipe: Recipe, data: list[str]) -> dict[str, Data]:
    """Data to score per coordinate: the fit's validation data, one path for all, or name=path."""
    inputs = {}
    named = dict(item.split("=", 1) for item in data if "=" in item)
    plain = [item for item in data if "=" not in item]
    if len(plain) > 1:
        raise RecipeError("give one data path for every coordinate, or name=path per coordinate")
    for spec in recipe.coordinates:
        base = recipe.data_for(spec)
        path: str | tuple[str, ...] | None = named.get(spec.name) or (plain[0] if plain else None)
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
