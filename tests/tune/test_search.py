"""A small search on ml-100k: interrupted, resumed, and its best recipe refitted exactly."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from ray import tune

from raymix.recipe.load import load_recipe
from raymix.run import fit
from raymix.tune import SearchSpace, TuneResult, search

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def searched(movielens, ray_session, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYMIX_MOVIELENS", str(movielens))
        runs = tmp_path_factory.mktemp("tune")
        recipe = load_recipe(REPO / "recipes" / "movielens_lr.py", [f"output={runs / 'lr'}"])
    space = SearchSpace(
        {
            # GDMix's defaults (l2 = 1, one pass) are one of the four points
            "coordinates.per-user.l2": tune.choice([1.0, "auto"]),
            "passes": tune.choice([1, 2]),
        },
        num_samples=1,
        searcher="grid",
        scheduler="asha",
        max_concurrent=1,
    )
    out = runs / "search"
    lines = []
    first = search(recipe, space, out=out, stop_after=2, progress=lines.append)
    resumed = search(recipe, space, out=out, resume=True, progress=lines.append)
    return recipe, first, resumed, out, lines


def test_an_interrupted_search_resumes_to_all_trials(searched):
    _, first, resumed, out, lines = searched
    assert first.interrupted and 2 <= len([t for t in first.trials if t["passes_run"]]) < 4
    assert not resumed.interrupted
    assert len(resumed.trials) == 4
    assert all(not t["error"] and t["passes_run"] >= 1 for t in resumed.trials)
    done_before = {t["trial"]: t["auc"] for t in first.trials if t["passes_run"]}
    for t in resumed.trials:  # finished trials are kept as they were, not re-run
        if t["trial"] in done_before:
            assert t["auc"] == done_before[t["trial"]]
    assert any("resuming the search" in line for line in lines)
    assert first.stats["trials_this_run"] + resumed.stats["trials_this_run"] == 4


def test_trials_after_the_first_reuse_the_prepared_data(searched):
    _, _, resumed, _, _ = searched
    assert resumed.stats["data_loads"] <= 2  # one per trial actor: before and after the resume
    reused = [t for t in resumed.trials if t["reused_data"]]
    assert reused and all(t["prepare_seconds"] == 0 for t in reused)
    assert resumed.stats["reset_seconds_mean"] < 1.0


def test_outputs_table_csv_plot_and_best_recipe(searched):
    _, _, resumed, out, _ = searched
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {"coordinates.per-user.l2", "passes", "auc"} <= set(rows[0])
    if importlib.util.find_spec("matplotlib"):  # raymix[tune]; the plot is skipped without it
        assert (out / "search.png").stat().st_size > 1000
    summary = json.loads((out / "result.json").read_text())
    assert len(summary["trials"]) == 4 and 0 < summary["stats"]["prepare_share"] < 1
    assert "4 trials; " in resumed.table()
    again = TuneResult.load(out)
    assert again.best == resumed.best and again.best_recipe == resumed.best_recipe
    assert again.table() == resumed.table()


def test_best_json_refits_to_the_best_trial_and_beats_the_worst(searched):
    _, _, resumed, out, _ = searched
    best = load_recipe(out / "best.json")
    assert best.coordinate("per-user").l2 == resumed.best["coordinates.per-user.l2"] == "auto"
    result = fit(best)
    auc = result.final["per-movie"]["auc"]
    # l2="auto" chose a finite l2 from the data, the same in the trial and in the refit
    chosen = [s["l2"] for s in result.steps if s["coordinate"] == "per-user"]
    assert chosen and all(0 < v < 1e3 for v in chosen)
    assert auc == pytest.approx(resumed.best_metric, abs=1e-9)
    assert auc >= max(t["auc"] for t in resumed.trials if not t["stopped_early"]) - 1e-12
    assert auc >= min(t["auc"] for t in resumed.trials)


def test_every_trial_is_an_mlflow_run(movielens, ray_session, tmp_path, monkeypatch):
    """Ray Tune's MLflow callback, against a local SQLite store: one run per trial with its
    sampled field as a param and its objective as a metric."""
    import mlflow

    monkeypatch.setenv("RAYMIX_MOVIELENS", str(movielens))
    recipe = load_recipe(REPO / "recipes" / "movielens_lr.py", [f"output={tmp_path / 'lr'}"])
    space = SearchSpace(
        {"coordinates.per-user.l2": tune.grid_search([0.5, 2.0])},
        num_samples=1,
        searcher="grid",
        max_concurrent=1,
    )
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = search(recipe, space, out=tmp_path / "search", mlflow=store)
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=[f"{recipe.name}-tune"])
    assert len(runs) == 2
    assert sorted(runs["params.coordinates.per-user.l2"].astype(float)) == [0.5, 2.0]
    logged = sorted(runs["metrics.auc"])
    assert logged == pytest.approx(sorted(t["auc"] for t in result.trials), abs=1e-12)
    experiment = mlflow.get_experiment_by_name(f"{recipe.name}-tune")
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()  # not the cwd
