"""DeText's movieLens pipeline end to end: the wide-and-deep global model, then per-user and
per-movie random effects on its logit (GDMix: 0.7090 / 0.7665 / 0.7680), on ml-100k.

Then each data-parallel backend, with 1 and 2 workers, trains the same global model to the
same validation AUC (within 0.005), and the exported SavedModel scores as the fit did.
"""

from pathlib import Path

import numpy as np
import pytest

from raymix import metrics as M
from raymix.coordinates.base import RowIndex
from raymix.coordinates.deep import DeepCoordinate
from raymix.coordinates.inputs import build_source
from raymix.data.avro.models import read_models
from raymix.data.avro.scores import read_scores_avro
from raymix.engine.deep_service import DeepService
from raymix.recipe.load import load_recipe
from raymix.run import fit
from raymix.scoring import score_command

from .test_data_parallel import require

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def detext_run(movielens, ray_session, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYMIX_MOVIELENS", str(movielens))
        out = tmp_path_factory.mktemp("runs") / "movielens-detext"
        recipe = load_recipe(REPO / "recipes" / "movielens_detext.py", [f"output={out}"])
        return recipe, fit(recipe), out


def test_aucs_reach_gdmix_detext_numbers(detext_run):
    _, result, out = detext_run
    final = result.final
    assert final["global"]["auc"] >= 0.70
    assert final["per-user"]["auc"] >= 0.755
    assert final["per-movie"]["auc"] >= 0.760
    step = next(s for s in result.steps if s["coordinate"] == "global")
    assert step["steps"] == 1000 and step["examples"] == 64_000


def test_outputs_hold_a_saved_model_and_the_random_effects(detext_run):
    _, _, out = detext_run
    models = out / "global" / "models"
    assert (models / "saved_model.pb").is_file() and (models / "raymix_deep.json").is_file()
    assert len(list(read_models(out / "per-user" / "models"))) == 943
    for name in ("global", "per-user", "per-movie"):
        assert (out / name / "validation_scores" / "part-00000.avro").is_file()


def test_score_from_the_saved_model_reproduces_the_fit(detext_run, tmp_path):
    _, _, out = detext_run
    uid, scores = read_scores_avro(score_command(out, [], tmp_path / "scores"))
    fit_uid, fit_scores = read_scores_avro(out / "per-movie" / "validation_scores")
    np.testing.assert_array_equal(uid, fit_uid)
    np.testing.assert_allclose(scores, fit_scores, rtol=0, atol=1e-6)


def global_model(recipe, **fields):
    spec = recipe.coordinates[0].model_copy(update=fields)
    data = recipe.data_for(spec)
    train = build_source(data, recipe.columns, split="train", bag=spec.feature_bag)
    validation = build_source(data, recipe.columns, split="validation", bag=spec.feature_bag)
    coordinate = DeepCoordinate(spec, train, validation, DeepService())
    coordinate.start()
    try:
        train_rows, val_rows = coordinate.holders()
        train_index = RowIndex([h.uid for h in train_rows], "training")
        val_index = RowIndex([h.uid for h in val_rows], "validation")
        coordinate.bind(train_index, val_index)
        label = np.zeros(len(val_index))
        for h in val_rows:
            label[val_index.positions(h.uid, "validation")] = h.label
        outcome = coordinate.fit(np.zeros(len(train_index)), np.zeros(len(val_index)))
    finally:
        coordinate.close()
    return M.evaluate("auc", outcome.validation, label, np.ones(label.size)), outcome


def test_warm_start_from_the_saved_model_scores_as_the_fit(detext_run):
    recipe, result, out = detext_run
    spec = recipe.coordinates[0].model_copy(update={"warm_start": str(out / "global" / "models")})
    data = recipe.data_for(spec)
    coordinate = DeepCoordinate(
        spec,
        build_source(data, recipe.columns, split="train", bag=spec.feature_bag),
        build_source(data, recipe.columns, split="validation", bag=spec.feature_bag),
        DeepService(),
    )
    coordinate.start()
    try:
        train_rows, val_rows = coordinate.holders()
        val_index = RowIndex([h.uid for h in val_rows], "validation")
        coordinate.bind(RowIndex([h.uid for h in train_rows], "training"), val_index)
        outcome = coordinate.fit(np.zeros(79_959), np.zeros(len(val_index)), refit=False)
    finally:
        coordinate.close()
    uid, own = read_scores_avro(
        out / "global" / "validation_scores", score="predictionScorePerCoordinate"
    )
    np.testing.assert_array_equal(uid, val_index.uid)
    np.testing.assert_allclose(outcome.validation, own, atol=1e-6)


@pytest.mark.parametrize("backend", ["tensorflow", "horovod"])
def test_one_and_two_workers_reach_the_same_auc(detext_run, backend):
    require(backend)
    recipe, result, _ = detext_run
    one, _ = global_model(recipe, workers=1, backend=backend)
    two, info = global_model(recipe, workers=2, backend=backend)
    assert info.info["workers"] == 2 and info.info["backend"] == backend
    assert one >= 0.70 and two >= 0.70
    assert abs(one - two) <= 0.005
    # one worker is the in-process run, step for step
    assert abs(one - result.final["global"]["auc"]) <= 1e-6


def test_gdmix_detext_yaml_through_the_cli_reaches_the_deep_recipe(detext_run, movielens, tmp_path):
    """GDMix's detext-movieLens.yaml (recipes/), run by ``raymix fit`` in a fresh process from
    a directory holding ``data/movielens``, trains to the deep recipe's AUCs (±0.003)."""
    import json
    import os
    import subprocess
    import sys

    _, result, _ = detext_run
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "movielens").symlink_to(movielens)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYMIX_MOVIELENS")}
    done = subprocess.run(
        [sys.executable, "-m", "raymix", "fit", str(REPO / "recipes" / "detext-movieLens.yaml")]
        + ["--set", f"output={out}", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads((out / "summary.json").read_text())["final"]
    assert list(final) == ["global", "per-user", "per-movie"]
    for name in final:
        assert abs(final[name]["auc"] - result.final[name]["auc"]) <= 0.003, name
    assert (out / "global" / "models").is_dir()
