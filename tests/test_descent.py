"""The coordinate-descent loop with in-memory coordinates (no Ray), and on movieLens."""

import json
from pathlib import Path

import numpy as np
import pytest

from raymix import EarlyStopping
from raymix.coordinates.base import HolderRows, Outcome
from raymix.data.avro.models import read_models
from raymix.descent import descend, load
from raymix.recipe.load import load_recipe
from raymix.run import fit

REPO = Path(__file__).resolve().parents[1]


class Recorder:
    """A coordinate whose score is a fixed multiple of its offset plus a constant; records offsets."""

    kind = "fake"

    def __init__(self, name, uid, label, base, gain, shift, holders=2):
        self.name, self.uid, self.label, self.base = name, uid, label, base
        self.gain, self.shift, self.n = gain, shift, holders
        self.seen = []

    def start(self):
        pass

    def holders(self):
        parts = np.array_split(np.arange(self.uid.size)[::-1], self.n)  # any order, any split
        rows = [
            HolderRows(self.uid[p], self.label[p], np.ones(p.size), self.base[p]) for p in parts
        ]
        return rows, [HolderRows(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))]

    def bind(self, train, validation):
        self.order = np.argsort(self.uid)

    def fit(self, train_offsets, val_offsets, refit=True):
        self.seen.append(train_offsets.copy())
        return Outcome(train=self.gain * train_offsets + self.shift, validation=val_offsets[:0])

    def snapshot(self):
        return None

    def restore(self, saved):
        pass


def test_each_coordinate_gets_base_plus_the_others_scores():
    rng = np.random.default_rng(0)
    uid = rng.permutation(50).astype(np.int64)
    label = rng.integers(0, 2, 50).astype(float)
    base = rng.normal(size=50)
    a = Recorder("a", uid, label, base, gain=0.5, shift=1.0)
    b = Recorder("b", uid, label, base, gain=-0.25, shift=2.0)
    state = load([a, b])
    descend([a, b], state, passes=2)
    order = np.argsort(uid)
    base_sorted = base[order]
    s_a = s_b = np.zeros(50)
    expected_a, expected_b = [], []
    for _ in range(2):
        expected_a.append(base_sorted + s_b)
        s_a = 0.5 * expected_a[-1] + 1.0
        expected_b.append(base_sorted + s_a)
        s_b = -0.25 * expected_b[-1] + 2.0
    for got, want in zip(a.seen + b.seen, expected_a + expected_b, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(state.train.total(), base_sorted + s_a + s_b, atol=1e-12)


def test_a_run_resumed_after_its_last_step_reports_its_best_pass():
    """The checkpoint of the last step is written before that pass is judged, so it names the
    pass before as the best: a resume with nothing left to fit must judge the passes again
    (it reported pass 2 of 3 as the best, the uninterrupted run pass 3)."""
    rng = np.random.default_rng(1)
    uid = rng.permutation(30).astype(np.int64)
    label = rng.integers(0, 2, 30).astype(float)
    base = rng.normal(size=30)

    def pair():
        return [Recorder(n, uid, label, base, gain=0.5, shift=s) for n, s in (("a", 1), ("b", 2))]

    whole, saved = load(pair()), []
    descend(pair(), whole, passes=3, after_step=lambda state, step: saved.append(state.best_pass))
    assert whole.best_pass == 2 and saved[-1] == 1  # what the last checkpoint holds
    coordinates = pair()
    resumed = load(coordinates)
    resumed.steps, resumed.best_pass = list(whole.steps), saved[-1]  # Checkpoint.restore
    descend(coordinates, resumed, passes=3, start=(2, 2))  # after the last step: nothing to fit
    assert [c.seen for c in coordinates] == [[], []]
    assert resumed.best_pass == whole.best_pass


@pytest.fixture(scope="module")
def first_run(movielens, ray_session, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYMIX_MOVIELENS", str(movielens))
        out = tmp_path_factory.mktemp("descent") / "first"
        recipe = load_recipe(REPO / "recipes" / "movielens_lr.py", [f"output={out}"])
    fit(recipe)
    return recipe, out


def models_of(out, name):
    return sorted((r["modelId"], r["means"]) for r in read_models(out / name / "models"))


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("n_locked", [1, 2], ids=["global", "global+per-user"])
def test_locked_coordinate_keeps_its_model(first_run, tmp_path, n_locked):
    """Locked coordinates score with their warm-start models (a random effect's read by the
    compiled Avro reader in every actor); the rest refit to the very same models."""
    recipe, out = first_run
    raw = recipe.model_dump(mode="json")
    raw["output"] = str(tmp_path / "locked")
    for spec in raw["coordinates"][:n_locked]:
        spec.update(locked=True, warm_start=str(out / spec["name"] / "models"))
    result = fit(type(recipe).model_validate(raw))
    assert [s["coordinate"] for s in result.steps] == ["global", "per-user", "per-movie"]
    for name in ("global", "per-user", "per-movie"):
        assert models_of(tmp_path / "locked", name) == models_of(out, name)


@pytest.mark.slow
@pytest.mark.ray
def test_early_stopping_keeps_the_best_pass(first_run, tmp_path):
    recipe, _ = first_run
    stopped = recipe.model_copy(
        update={
            "output": str(tmp_path / "stopped"),
            "passes": 6,
            "early_stopping": EarlyStopping(patience=1, min_delta=1e-3),
        }
    )
    result = fit(stopped)
    per_pass = {}
    for s in result.steps:
        per_pass[s["pass"]] = s["metrics"]["auc"]  # the last coordinate's AUC in each pass
    passes = sorted(per_pass)
    assert passes[-1] < 6, "a 1e-3 improvement cannot last 6 passes on movieLens"
    best, best_value = None, -1.0
    for p in passes:  # the rule: better by more than min_delta
        if per_pass[p] > best_value + 1e-3:
            best, best_value = p, per_pass[p]
    assert passes[-1] == best + 1  # stopped after the first pass that was not better
    assert result.best_pass == best
    summary = json.loads((tmp_path / "stopped" / "summary.json").read_text())
    assert summary["final"]["per-movie"]["auc"] == pytest.approx(per_pass[best], abs=1e-12)


@pytest.mark.slow
@pytest.mark.ray
def test_external_fixed_effect_scores_as_offsets(first_run, tmp_path):
    """GDMix's third mode: the global model comes from elsewhere, as per-row score files."""
    recipe, out = first_run
    raw = recipe.model_dump(mode="json")
    raw["output"] = str(tmp_path / "external")
    raw["coordinates"][0] = {
        "kind": "external",
        "name": "global",
        "train_scores": str(out / "global" / "training_scores"),
        "validation_scores": str(out / "global" / "validation_scores"),
    }
    raw["data"] = raw["coordinates"][1][
        "data"
    ]  # rows and labels come from the first trained coordinate
    result = fit(type(recipe).model_validate(raw))
    first = json.loads((out / "summary.json").read_text())["final"]
    # the score files hold float32 logits (as GDMix's do): the same model up to that rounding
    for name in ("global", "per-user", "per-movie"):
        assert result.final[name]["auc"] == pytest.approx(first[name]["auc"], abs=2e-4)
    assert [s["coordinate"] for s in result.steps] == ["global", "per-user", "per-movie"]
