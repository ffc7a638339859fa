"""Experiment tracking: a finished fit logged to MLflow (``raymix fit --mlflow URI``,
``raymix.fit(..., mlflow=URI)``) and a search's trials (``raymix tune --mlflow URI``: Ray
Tune's MLflow callback, :func:`tune_callback`), the optional ``mlflow`` extra.

One MLflow run per fit, in the experiment named after the recipe: the params are the
flattened recipe (``coordinates.per-user.l2``, ...), the metrics every coordinate update's
(``per-user.auc`` at step 0, 1, ... in the descent's order, the pass as ``pass``), the final
metrics (``final.per-user.auc``) and the timings (``seconds.read``); the artifacts
``summary.json``, ``report.html``, ``run.json`` and each coordinate's models. ``URI`` is any
MLflow tracking URI: a local store (``sqlite:///path/mlflow.db``, whose new experiments keep
their artifacts in ``mlartifacts/`` beside the database, or MLflow's older file store
``file:///path/mlruns``), a server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: MLflow's limits: params per batch, characters of a param's value
PARAMS_PER_BATCH = 100
PARAM_LENGTH = 500


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Dotted keys to text values; a list of named objects (coordinates) is keyed by name."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(v, dict) and "name" in v for v in value)
    ):
        for item in value:
            out.update(flatten(item, f"{prefix}{item['name']}."))
    else:
        text = "None" if value is None else str(value)
        out[prefix.rstrip(".")] = text[:PARAM_LENGTH]
    return out


def step_metrics(steps: list[dict]) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) per coordinate update: ``<coordinate>.<metric>`` and ``pass``."""
    logged = []
    for index, step in enumerate(steps):
        values = {
            f"{step['coordinate']}.{name}": float(v)
            for name, v in step["metrics"].items()
            if isinstance(v, int | float) and v is not None
        }
        values["pass"] = float(step["pass"])
        values[f"{step['coordinate']}.seconds"] = float(step["seconds"])
        logged.append((index, values))
    return logged


def _experiment(mlflow, name: str, uri: str) -> str:
    """The id of the experiment ``name``, created when new (a local SQLite store's artifacts
    beside its database, not in the current directory)."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def _mlflow():
    try:
        import mlflow
    except ImportError:
        from raymix.errors import RecipeError

        raise RecipeError(
            "--mlflow needs MLflow: pip install 'raymix[mlflow]'", field="mlflow"
        ) from None
    import logging

    for name in ("mlflow.store", "alembic"):  # its database set-up lines: not for the console
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def _connect(uri: str):
    mlflow = _mlflow()
    if uri.startswith("file:") or "://" not in uri:  # MLflow 3 keeps its file store behind a flag
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    return mlflow


def tune_callback(uri: str, experiment: str):
    """Ray Tune's MLflow callback for a search (``raymix tune --mlflow URI``): one MLflow run
    per trial in the experiment ``experiment``, its params the trial's sampled fields and
    its metrics every reported step (each coordinate update's metrics, the trial's
    objective). The experiment is created here, with a local store's artifacts beside its
    database, before Tune's callback looks it up."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    mlflow = _connect(uri)
    _experiment(mlflow, experiment, uri)
    return MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment, save_artifact=False)


def log_fit(uri: str, recipe, result) -> str:
    """Log a finished fit (``result``: its :class:`~raymix.result.FitResult`) to the MLflow
    tracking store at ``uri``; returns the MLflow run id."""
    import json

    mlflow = _connect(uri)
    mlflow.set_experiment(experiment_id=_experiment(mlflow, recipe.name, uri))
    out = Path(result.output)
    with mlflow.start_run(run_name=f"{recipe.name}: {out.name}") as run:
        params = flatten(json.loads(recipe.model_dump_json()))
        items = sorted(params.items())
        for start in range(0, len(items), PARAMS_PER_BATCH):
            mlflow.log_params(dict(items[start : start + PARAMS_PER_BATCH]))
        for index, values in step_metrics(result.steps):
            mlflow.log_metrics(values, step=index)
        final = {
            f"final.{coordinate}.{name}": float(v)
            for coordinate, metrics in result.final.items()
            for name, v in metrics.items()
            if isinstance(v, int | float)
        }
        final.update({f"seconds.{k}": float(v) for k, v in result.timings.items()})
        final["best_pass"] = float(result.best_pass)
        mlflow.log_metrics(final)
        for name in ("summary.json", "report.html", "run.json"):
            if (out / name).is_file():
                mlflow.log_artifact(str(out / name))
        for spec in recipe.coordinates:
            models = out / spec.name / "models"
            if models.is_dir():
                mlflow.log_artifacts(str(models), artifact_path=f"models/{spec.name}")
        return run.info.run_id
