"""raymix from Python: :func:`fit` a recipe, :func:`load` a fit, and use the :class:`Model`.

::

    import raymix

    model = raymix.fit("recipes/movielens_lr.py", passes=3, output="out/ml")  # or a Recipe
    model.final["per-movie"]["auc"]
    scores = model.predict(frame)            # DataFrame, pyarrow Table, ray.data.Dataset, files
    model.coefficients("per-user", entity=42)
    model = raymix.load("out/ml")            # the same Model, from the output directory

:meth:`Model.predict` is ``raymix score``: the same readers, models and sums
(:func:`raymix.scoring.score`), so its scores equal the score files bit for bit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from raymix.errors import RecipeError
from raymix.recipe.memory import InMemory, held_rows, map_data, restore_rows, wrap_rows
from raymix.recipe.spec import Data, ExternalEffect, FixedEffect, RandomEffect, Recipe

__all__ = ["Model", "fit", "load"]

SUMMARY_FILE = "summary.json"


@dataclass
class Model:
    """A fitted mixed model: its output directory, recipe, metrics and timings.

    ``steps`` holds the metrics of every coordinate update (pass, coordinate, metrics,
    seconds); ``final`` the final metrics per coordinate; ``timings`` seconds per phase;
    ``files`` each coordinate's model and score files.
    """

    output: Path
    recipe: Recipe
    steps: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    best_pass: int = 1
    files: dict = field(default_factory=dict)

    def predict(self, data: Any, *, address: str | None = None, progress=None):
        """Scores of ``data`` as a pandas DataFrame, one row per uid in uid order.

        ``data``: a DataFrame, a pyarrow Table, a ``ray.data.Dataset``, a path (file,
        directory or glob) or list of paths, the same for every coordinate; or a mapping
        from coordinate name to any of those. Columns: ``uid``, the entity id of every
        random effect, ``score`` (the total logit, what ``raymix score`` writes as
        ``predictionScore``), ``score_<coordinate>`` per coordinate, ``probability``
        (logistic), and the label when the data have one.
        """
        import pandas as pd

        from raymix.scoring import score
        from raymix.solvers.loss import mean, task_code

        inputs = self._inputs(data)
        scores = score(self.output, self.recipe, inputs, address=address, progress=progress)
        columns: dict[str, Any] = {"uid": scores.uid, **scores.entity, "score": scores.total}
        for name, own in scores.own.items():
            columns[f"score_{name}"] = own
        task = _task(self.recipe)
        if task == "logistic":
            columns["probability"] = mean(task_code(task), scores.total)
        if scores.label is not None:
            columns[self.recipe.columns.label] = scores.label
        return pd.DataFrame(columns)

    def coefficients(self, coordinate: str, entity: Any = None):
        """The coefficients of ``coordinate`` as a DataFrame: ``name``, ``term``, ``value``
        and ``variance`` (NaN without variances), the intercept ``(INTERCEPT)`` first; a
        random effect's have an ``entity`` column (all its entities, or only ``entity``)."""
        import pandas as pd

        from raymix.data.avro.models import read_models

        spec = self._coordinate(coordinate)
        if isinstance(spec, ExternalEffect) or not isinstance(spec, FixedEffect | RandomEffect):
            raise RecipeError(f"coordinate '{coordinate}' has no linear models", field=coordinate)
        if entity is not None and isinstance(spec, FixedEffect):
            raise RecipeError(f"coordinate '{coordinate}' is a fixed effect: it has no entities")
        wanted = None if entity is None else str(entity)
        rows = []
        for record in read_models(self.output / coordinate / "models"):
            if wanted is not None and record["modelId"] != wanted:
                continue
            variances = {(v["name"], v["term"]): v["value"] for v in record["variances"] or ()}
            for mean in record["means"]:
                key = (mean["name"], mean["term"])
                rows.append(
                    {
                        "entity": record["modelId"],
                        "name": mean["name"],
                        "term": mean["term"],
                        "value": mean["value"],
                        "variance": variances.get(key, float("nan")),
                    }
                )
        if wanted is not None and not rows:
            raise RecipeError(f"coordinate '{coordinate}' has no model for entity {entity!r}")
        frame = pd.DataFrame(rows, columns=["entity", "name", "term", "value", "variance"])
        if isinstance(spec, FixedEffect):
            frame = frame.drop(columns="entity")
        return frame

    def summary(self):
        """The metrics of every coordinate update as a DataFrame: ``pass``, ``coordinate``,
        one column per metric, ``seconds``."""
        import pandas as pd

        rows = [
            {
                "pass": s["pass"],
                "coordinate": s["coordinate"],
                **s["metrics"],
                "seconds": s["seconds"],
            }
            for s in self.steps
        ]
        return pd.DataFrame(rows)

    def _coordinate(self, name: str):
        try:
            return self.recipe.coordinate(name)
        except KeyError:
            known = [c.name for c in self.recipe.coordinates]
            raise RecipeError(f"no coordinate '{name}' (known: {known})") from None

    def _inputs(self, data: Any) -> dict[str, Data]:
        """A Data per coordinate holding the rows to score as its ``train``."""
        named = data if isinstance(data, Mapping) else None
        if named is not None:
            unknown = set(named) - {c.name for c in self.recipe.coordinates}
            if unknown:
                raise RecipeError(f"unknown coordinates in predict's data: {sorted(unknown)}")
        inputs = {}
        cache: dict[int, Any] = {}
        for spec in self.recipe.coordinates:
            value = named.get(spec.name) if named is not None else data
            if value is None:
                raise RecipeError(f"predict: no data for coordinate '{spec.name}'")
            if id(value) not in cache:  # one table for every coordinate given the same rows
                cache[id(value)] = _rows_to_score(value)
            base = self.recipe.data_for(spec)
            inputs[spec.name] = base.model_copy(
                update={"train": cache[id(value)], "validation": None}
            )
        return inputs


def fit(
    recipe: Recipe | str | os.PathLike,
    *,
    overwrite: bool = False,
    resume: bool = False,
    address: str | None = None,
    progress: Callable[[str], None] | None = None,
    mlflow: str | None = None,
    **overrides: Any,
) -> Model:
    """Fit ``recipe`` (a :class:`~raymix.Recipe`, or a recipe ``.py``, ``run.json`` or GDMix
    config file, as ``raymix fit`` takes) and return the :class:`Model`.

    ``overrides`` set recipe fields by dotted path, as ``--set`` does but with Python values:
    ``passes=3``, ``output="out/x"``, ``**{"coordinates.per-user.l2": 0.5}`` (or
    ``coordinates__per_user__l2`` where a name allows it: ``__`` stands for a dot). A
    ``ray.data.Dataset`` in the recipe's data is read into memory first (on the driver).
    ``mlflow``: a tracking URI to log the fit to (:mod:`raymix.tracking`).
    """
    from raymix.outputs import absolute_paths
    from raymix.recipe.load import load_recipe
    from raymix.run import fit as run_fit

    if isinstance(recipe, Recipe):
        given = _overridden(recipe, overrides)
    else:
        given = load_recipe(Path(recipe), [_override(k, v) for k, v in overrides.items()])
    resolved: Recipe = absolute_paths(_datasets_read(given))
    result = run_fit(
        resolved, overwrite=overwrite, resume=resume, address=address, progress=progress
    )
    if mlflow is not None:
        from raymix.tracking import log_fit

        log_fit(mlflow, resolved, result)
    return Model(
        output=result.output,
        recipe=resolved,
        steps=result.steps,
        final=result.final,
        timings=result.timings,
        best_pass=result.best_pass,
        files=result.files,
    )


def load(output: str | os.PathLike) -> Model:
    """The :class:`Model` of a finished fit's output directory (a path or an object-store
    URI): its ``run.json`` and ``summary.json``."""
    from raymix import storage
    from raymix.scoring import fit_output

    out, recipe = fit_output(output)
    summary_path = storage.join(out, SUMMARY_FILE)
    if not storage.is_file(summary_path):
        raise RecipeError(f"'{storage.shown(out)}' holds no {SUMMARY_FILE}: the fit did not finish")
    summary = json.loads(storage.read_text(summary_path))
    return Model(
        output=out,
        recipe=recipe,
        steps=summary.get("steps", []),
        final=summary.get("final", {}),
        timings=summary.get("timings_seconds", {}),
        best_pass=summary.get("best_pass", 1),
        files=summary.get("files", {}),
    )


def _override(path: str, value: Any) -> str:
    """A ``--set`` string for a keyword override (``__`` in a keyword is a dot)."""
    return f"{path.replace('__', '.')}={json.dumps(value)}"


def _overridden(recipe: Recipe, overrides: Mapping[str, Any]) -> Recipe:
    """``recipe`` with ``overrides`` applied and validated again; rows held in memory are put
    back where the overrides left them (JSON keeps only their descriptions)."""
    if not overrides:
        return recipe
    from raymix.recipe.load import apply_override, validate_recipe

    raw = recipe.model_dump(mode="json")
    for path, value in overrides.items():
        raw = apply_override(raw, _override(path, value))
    return restore_rows(validate_recipe(raw), held_rows(recipe))


def _datasets_read(recipe: Recipe) -> Recipe:
    """The recipe with every ray.data.Dataset of its data read into an Arrow table."""

    def read(where: str, data):
        if data is None:
            return None
        update = {}
        for split in ("train", "validation"):
            value = getattr(data, split)
            if isinstance(value, InMemory) and value.dataset is not None:
                update[split] = InMemory.of_table(_dataset_table(value.dataset), "ray.data.Dataset")
        return data.model_copy(update=update) if update else data

    return map_data(recipe, read)


def _dataset_table(dataset) -> pa.Table:
    import ray

    tables = ray.get(dataset.to_arrow_refs())
    if not tables:
        raise RecipeError("the ray.data.Dataset holds no rows")
    table = pa.concat_tables(tables, promote_options="default")
    return _without_tensor_types(table.replace_schema_metadata(None))


def _without_tensor_types(table: pa.Table) -> pa.Table:
    """Ray Data's tensor columns (what ``ray.data.from_pandas`` makes of a column of numpy
    arrays) as the plain Arrow lists of the row convention: one-dimensional ones only."""
    import pyarrow.compute as pc

    for index, column_field in enumerate(table.schema):
        kind = column_field.type
        if not isinstance(kind, pa.ExtensionType) or not kind.extension_name.startswith(
            "ray.data."
        ):
            continue
        shape = getattr(kind, "shape", None)
        ndim = getattr(kind, "ndim", None if shape is None else len(shape))
        if ndim != 1:
            raise RecipeError(
                f"column '{column_field.name}' of the ray.data.Dataset holds {ndim}-dimensional "
                "tensors: a feature bag's lists must be one-dimensional"
            )
        storage = table.column(index).combine_chunks().storage
        if pa.types.is_struct(storage.type) or shape is None:  # variable shaped: values, shape
            plain = storage.field("data")
        else:
            plain = pa.FixedSizeListArray.from_arrays(pc.list_flatten(storage), shape[0])
        table = table.set_column(index, column_field.name, plain)
    return table


def _rows_to_score(value: Any) -> str | tuple[str, ...] | InMemory:
    """Rows to score as a Data's ``train``: in memory (a Dataset read), or paths."""
    held = wrap_rows(value)
    if isinstance(held, InMemory):
        if held.dataset is not None:
            return InMemory.of_table(_dataset_table(held.dataset), "ray.data.Dataset")
        return held
    if isinstance(held, str | os.PathLike):
        return str(held)
    if isinstance(held, list | tuple) and all(isinstance(v, str | os.PathLike) for v in held):
        return tuple(str(v) for v in held)
    raise RecipeError(
        "predict takes a DataFrame, a pyarrow Table, a ray.data.Dataset, paths, or a mapping "
        f"from coordinate name to one of those; got {type(value).__name__}"
    )


def _task(recipe: Recipe) -> str | None:
    tasks = [getattr(c, "task", None) for c in recipe.coordinates]
    return next((t for t in tasks if t is not None), None)
