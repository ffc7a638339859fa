"""MLflow logging of a fit, against a local file tracking store, without Ray: the flattened
recipe as params, every coordinate update's metrics by step, the final metrics and timings,
and the summary, report, recipe and models as artifacts."""

from __future__ import annotations

import json
from pathlib import Path

from raymix import Data, FixedEffect, RandomEffect, Recipe
from raymix.result import FitResult
from raymix.tracking import flatten, log_fit, step_metrics

RECIPE = Recipe(
    name="tracked",
    data=Data(train="/data/train", validation="/data/validation"),
    coordinates=[
        FixedEffect(name="global", feature_bag="global"),
        RandomEffect(name="per-user", entity="user_id", l2=0.5),
    ],
    passes=2,
    output="/unused",
)
STEPS = [
    {"pass": p, "coordinate": c, "metrics": {"auc": a}, "seconds": 0.5}
    for p, c, a in ((1, "global", 0.62), (1, "per-user", 0.70), (2, "global", 0.75), (2, "per-user", 0.76))
]  # fmt: skip


def test_flatten_keys_coordinates_by_name():
    params = flatten(json.loads(RECIPE.model_dump_json()))
    assert params["coordinates.per-user.l2"] == "0.5"
    assert params["coordinates.global.feature_bag"] == "global"
    assert params["passes"] == "2" and params["data.train"] == "/data/train"
    assert flatten({"a": "x" * 900})["a"] == "x" * 500  # MLflow's limit


def test_step_metrics_follow_the_descent():
    logged = step_metrics(STEPS)
    assert [index for index, _ in logged] == [0, 1, 2, 3]
    assert logged[3][1] == {"per-user.auc": 0.76, "pass": 2.0, "per-user.seconds": 0.5}


def test_a_fit_is_logged_to_a_local_tracking_store(tmp_path):
    import mlflow  # the optional extra raymix[mlflow], in the test extra too

    out = tmp_path / "out"
    (out / "per-user" / "models").mkdir(parents=True)
    (out / "per-user" / "models" / "part-00000.avro").write_bytes(b"models")
    for name in ("summary.json", "report.html", "run.json"):
        (out / name).write_text("{}")
    result = FitResult(
        output=out,
        steps=STEPS,
        final={"global": {"auc": 0.61}, "per-user": {"auc": 0.76, "per_entity_auc": 0.6}},
        timings={"read": 1.5},
        best_pass=2,
        files={},
    )
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_fit(store, RECIPE, result)

    client = mlflow.tracking.MlflowClient(store)
    run = client.get_run(run_id)
    assert run.data.params["coordinates.per-user.l2"] == "0.5"
    assert run.data.metrics["final.per-user.per_entity_auc"] == 0.6
    assert run.data.metrics["seconds.read"] == 1.5
    history = client.get_metric_history(run_id, "per-user.auc")
    assert [(m.step, m.value) for m in history] == [(1, 0.70), (3, 0.76)]
    assert client.get_experiment(run.info.experiment_id).name == "tracked"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"summary.json", "report.html", "run.json", "models"} <= artifacts
    models = [Path(a.path).name for a in client.list_artifacts(run_id, "models/per-user")]
    assert models == ["part-00000.avro"]
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not in the cwd
    again = log_fit(store, RECIPE, result)  # a second fit: a second run, same experiment
    assert client.get_run(again).info.experiment_id == run.info.experiment_id
