"""The product's main job, end to end on real data: GDMix's movieLens LR pipeline.

Bands: GDMix's README (0.6237 / 0.7058 / 0.7599) within the spread of random 80/20 splits
(gdmix-reference.md §6.5).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from raymix.data.avro.models import read_models
from raymix.data.avro.scores import read_scores_avro
from raymix.errors import RecipeError
from raymix.recipe.load import load_recipe
from raymix.run import fit
from raymix.scoring import score_command

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def movielens_run(movielens, ray_session, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("RAYMIX_MOVIELENS", str(movielens))
    out = tmp_path_factory.mktemp("runs") / "movielens-lr"
    recipe = load_recipe(REPO / "recipes" / "movielens_lr.py", [f"output={out}"])
    return fit(recipe), out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_validation_aucs_are_inside_gdmix_band(movielens_run):
    result, out = movielens_run
    final = result.final
    assert 0.623 <= final["global"]["auc"] <= 0.633
    assert 0.701 <= final["per-user"]["auc"] <= 0.708
    assert 0.754 <= final["per-movie"]["auc"] <= 0.763
    assert final["per-user"]["per_entity_auc"] > 0.5
    for name in ("global", "per-user", "per-movie"):
        assert (out / name / "metric" / "evalSummary.json").is_file()
        assert (out / name / "training_scores" / "part-00000.avro").is_file()
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()


def test_models_are_written_in_the_gdmix_layout(movielens_run):
    _, out = movielens_run
    (fe,) = list(read_models(out / "global" / "models" / "part-00000.avro"))
    assert fe["modelId"] == "global model"
    assert fe["means"][0]["name"] == "(INTERCEPT)"
    names = {m["name"] for m in fe["means"]}
    assert "age" in names and "Drama" in names
    users = list(read_models(out / "per-user" / "models"))
    assert len(users) == 943
    assert len({u["modelId"] for u in users}) == 943


def models_of(out: Path, name: str):
    return sorted(
        (
            (r["modelId"], [(m["name"], m["term"], m["value"]) for m in r["means"]])
            for r in read_models(out / name / "models")
        ),
    )


def test_rerun_of_run_json_reproduces_models_bit_for_bit(movielens_run, tmp_path):
    _, out = movielens_run
    again = tmp_path / "again"
    recipe = load_recipe(out / "run.json", [f"output={again}"])
    fit(recipe)
    for name in ("global", "per-user", "per-movie"):
        assert models_of(out, name) == models_of(again, name)


def test_score_reproduces_the_fit_validation_scores_exactly(movielens_run, tmp_path):
    _, out = movielens_run
    path = score_command(out, [], tmp_path / "scores")
    uid, scores = read_scores_avro(path)
    fit_uid, fit_scores = read_scores_avro(out / "per-movie" / "validation_scores")
    np.testing.assert_array_equal(uid, fit_uid)
    np.testing.assert_array_equal(scores, fit_scores)


def test_gdmix_config_gives_the_same_models(movielens_run, movielens, tmp_path, monkeypatch):
    _, out = movielens_run
    text = (
        (REPO / "recipes" / "lr-movieLens.yaml")
        .read_text()
        .replace("data/movielens", str(movielens))
    )
    config = tmp_path / "lr-movieLens.yaml"
    config.write_text(text)
    recipe = load_recipe(config, [f"output={tmp_path / 'gdmix'}"])
    fit(recipe)
    for name in ("global", "per-user", "per-movie"):
        assert models_of(out, name) == models_of(tmp_path / "gdmix", name)


def test_cli_fit_in_a_fresh_process_never_imports_tensorflow(movielens, tmp_path):
    """The local LR fit reads TFRecords with the compiled decoder and runs the fixed effect
    in-process without the TensorFlow backend: importing TensorFlow (~4 s here) in the driver
    or any reading task would be most of the run's wall time again."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    probe = (
        "import json, sys\n"
        "from raymix.cli import main\n"
        f"code = main(['fit', {str(REPO / 'recipes' / 'movielens_lr.py')!r}, "
        f"'--set', 'output={out}', '--quiet'])\n"
        "print(json.dumps({'code': code, 'tensorflow': 'tensorflow' in sys.modules}))\n"
    )
    env = {**os.environ, "RAYMIX_MOVIELENS": str(movielens)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "tensorflow": False}
    summary = json.loads((out / "summary.json").read_text())
    assert abs(summary["final"]["per-movie"]["auc"] - 0.7543) < 5e-4


def test_score_refuses_an_output_that_overlaps_the_fit_and_replaces_its_own(
    movielens_run, tmp_path
):
    """``raymix score OUT --out OUT --overwrite`` once deleted the models (exit 0); a score
    output could never be replaced ("not a raymix output")."""
    out = movielens_run[1]
    before = models_of(out, "per-user")
    for target in (out, out / "scores", out / "per-user", out.parent):
        with pytest.raises(RecipeError, match="overlaps the fit output"):
            score_command(out, [], target, overwrite=True)
    assert models_of(out, "per-user") == before
    first = score_command(out, [], tmp_path / "scores")
    again = score_command(out, [], tmp_path / "scores", overwrite=True)
    assert first == again and read_scores_avro(again)[0].size > 0
    assert json.loads((tmp_path / "scores" / "score.json").read_text())["model_dir"] == str(out)
    with pytest.raises(RecipeError, match="not a raymix score output"):
        (tmp_path / "fit-copy").mkdir()
        (tmp_path / "fit-copy" / "run.json").write_text("{}")
        score_command(out, [], tmp_path / "fit-copy", overwrite=True)
