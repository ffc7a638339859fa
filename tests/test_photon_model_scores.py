"""``raymix score`` of a bare Photon ML GAME model directory (no run.json), as Photon ML's
GameScoringDriver scores it: the fixture's fixed effect (one record: 14,941 numbered features,
20 ``u`` and 20 ``s`` terms and an intercept) on the fixture's 9,195 rows, every row's score
against a dot product computed here from the files read with fastavro (name + term -> value),
for ``globalShard`` mapped to ``features`` alone and to the three bags Photon's globalShard
combined; random effects found by their id-info and by their ``<entityType>-<shard>`` names;
bad mappings refused in one line (exit 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import fastavro
import numpy as np
import pytest

from raymix.cli import main
from raymix.data.avro.models import MODEL_SCHEMA
from raymix.data.avro.scores import read_scores_avro
from raymix.scoring import score_command
from tests.photon_files import reference_model_records

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photon-fixtures"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/data/photon-fixtures")
MODEL_DIR = FIXTURES / "gameModel"
GLOBAL = MODEL_DIR / "fixed-effect" / "globalShard" / "coefficients" / "part-00000.avro"
RATINGS = FIXTURES / "input" / "yahoo-music-test.avro"
BAGS = ("features", "userFeatures", "songFeatures")
INTERCEPT = ("(INTERCEPT)", "")  # Photon ML's name for it

pytestmark = pytest.mark.skipif(not RATINGS.is_file(), reason="Photon ML fixtures not present")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with RATINGS.open("rb") as f:
        return list(fastavro.reader(f))


def coefficients(record: dict) -> dict[tuple[str, str], float]:
    return {(m["name"], m["term"] or ""): m["value"] for m in record["means"]}


def reference(rows: list[dict], coordinates) -> np.ndarray:
    """Per row: the sum over ``coordinates`` (entity field or None, models by entity id, bags)
    of the row's model's intercept plus its bags' ``value * coefficient`` (0 without a model)."""
    out = np.zeros(len(rows))
    for i, row in enumerate(rows):
        for entity, models, bags in coordinates:
            coef = models.get(None if entity is None else row[entity])
            if coef is None:
                continue
            out[i] += coef.get(INTERCEPT, 0.0)
            for bag in bags:
                for f in row[bag]:
                    out[i] += f["value"] * coef.get((f["name"], f["term"] or ""), 0.0)
    return out


def scored(model_dir: Path, shards: list[str], out: Path) -> np.ndarray:
    path = score_command(model_dir, [str(RATINGS)], out, feature_shards=shards)
    uid, score = read_scores_avro(path)
    np.testing.assert_array_equal(uid, np.arange(uid.size))  # rows numbered in file order
    return np.asarray(score)


def test_the_fixture_model_is_what_the_test_assumes():
    (record,) = reference_model_records(GLOBAL)
    coef = coefficients(record)
    assert INTERCEPT in coef
    assert sum(name.isdigit() and term == "" for name, term in coef) == 14_941
    assert sum(name == "u" for name, _ in coef) == 20
    assert sum(name == "s" for name, _ in coef) == 20
    assert len(coef) == 14_941 + 40 + 1


@pytest.mark.ray
def test_a_photon_model_scores_every_row_as_its_dot_product(ray_session, rows, tmp_path):
    (record,) = reference_model_records(GLOBAL)
    models = {None: coefficients(record)}
    alone = scored(MODEL_DIR, ["globalShard=features"], tmp_path / "alone")
    np.testing.assert_allclose(alone, reference(rows, [(None, models, BAGS[:1])]), atol=1e-9)
    three = scored(MODEL_DIR, [f"globalShard={','.join(BAGS)}"], tmp_path / "three")
    np.testing.assert_allclose(three, reference(rows, [(None, models, BAGS)]), atol=1e-9)
    assert np.abs(three - alone).max() > 1e-3  # the user and song factors do count


def write_entity_models(where: Path, models: dict[int, dict], info: str | None) -> None:
    """Random-effect coefficients (``BayesianLinearModelAvro`` records), with ``info`` as
    its id-info when given."""
    (where / "coefficients").mkdir(parents=True)
    if info is not None:
        (where / "id-info").write_text(info)
    records = [
        {
            "modelId": str(entity),
            "modelClass": None,
            "means": [{"name": n, "term": t, "value": v} for (n, t), v in coef.items()],
            "variances": None,
            "lossFunction": None,
        }
        for entity, coef in models.items()
    ]
    with (where / "coefficients" / "part-00000.avro").open("wb") as f:
        fastavro.writer(f, MODEL_SCHEMA, records)


def entity_models(rows, entity: str, name: str, seed: int) -> dict[int, dict]:
    """Models for 40 of the rows' entities: an intercept and 12 of 30 ``name`` terms each."""
    rng = np.random.default_rng(seed)
    ids = sorted({row[entity] for row in rows})[:40]
    return {
        e: {
            INTERCEPT: rng.normal(),
            **{(name, str(t)): rng.normal() for t in rng.choice(30, 12, replace=False)},
        }
        for e in ids
    }


@pytest.mark.ray
def test_random_effects_by_id_info_and_by_directory_name(ray_session, rows, tmp_path):
    model_dir = tmp_path / "gameModel"
    shutil.copytree(MODEL_DIR, model_dir)
    users = entity_models(rows, "userId", "u", seed=1)
    songs = entity_models(rows, "songId", "s", seed=2)
    write_entity_models(model_dir / "random-effect" / "per-user", users, "userId\nuserShard\n")
    write_entity_models(model_dir / "random-effect" / "songId-songShard", songs, None)
    shards = [f"globalShard={','.join(BAGS)}", "userShard=userFeatures", "songShard=songFeatures"]
    got = scored(model_dir, shards, tmp_path / "out")
    (record,) = reference_model_records(GLOBAL)
    expected = reference(
        rows,
        [
            (None, {None: coefficients(record)}, BAGS),
            ("userId", users, ("userFeatures",)),
            ("songId", songs, ("songFeatures",)),
        ],
    )
    np.testing.assert_allclose(got, expected, atol=1e-9)
    with_models = np.isin([row["userId"] for row in rows], list(users))
    assert 0 < with_models.sum() < len(rows)  # rows with and without a user model


@pytest.mark.parametrize(
    ("shards", "said"),
    [
        ([], "coordinate 'globalShard' has feature shard 'globalShard': map it to input bags "
         "with --feature-shard globalShard=BAG[,BAG...]"),
        (["globalShard=features,likes"], "shard 'globalShard': the input has no bag 'likes' "
         "(its bags: features, songFeatures, userFeatures)"),
        (["globalShard=features", "userShard=userFeatures"],
         "the model has no feature shard 'userShard' (its shards: globalShard)"),
        (["globalShard"], "expected SHARD=BAG[,BAG...], got 'globalShard'"),
    ],
)  # fmt: skip
def test_a_bad_shard_mapping_is_one_line(shards, said, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["score", str(MODEL_DIR), str(RATINGS), "--out", str(out)]
    code = main(args + [arg for shard in shards for arg in ("--feature-shard", shard)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert said in err
    assert not out.exists()


def test_a_directory_that_is_no_model_is_one_line(tmp_path, capsys):
    code = main(["score", str(tmp_path), str(RATINGS), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "is not a raymix fit output (no run.json), nor a Photon ML model" in err
