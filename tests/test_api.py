"""The Python API as a user runs it: a plain script fits movieLens from DataFrames, predicts a
DataFrame and a ray.data.Dataset, and its scores equal ``raymix score``'s bit for bit; a
pandas-shaped recipe (a bag of scalar columns, categorical ids, no uid, no weight) fits and
keeps the columns' names in its models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import raymix
from raymix import Data, FixedEffect, RandomEffect, Recipe
from raymix.data.avro.scores import read_scores_avro
from raymix.datasets.movielens import convert_movielens
from tests.conftest import ML100K

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SCRIPT = '''
import sys
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import raymix
from raymix import Data, FixedEffect, RandomEffect, Recipe

root, out, predictions = sys.argv[1:4]


def frame(split):
    """One DataFrame of every bag's columns, joined by uid."""
    bags = [pq.read_table(f"{root}/{b}/{split}").to_pandas() for b in ("global", "per_user", "per_movie")]
    df = bags[0]
    for more in bags[1:]:
        df = df.merge(more.drop(columns=["response", "weight", "user_id", "movie_id"]), on="uid")
    return df


train, validation = frame("trainingData"), frame("validationData")
recipe = Recipe(
    name="movielens-from-pandas",
    data=Data(train=train, validation=validation, feature_lists=f"{root}/featureList"),
    coordinates=[
        FixedEffect(name="global", feature_bag="global"),
        RandomEffect(name="per-user", entity="user_id", feature_bag="per_user"),
        RandomEffect(name="per-movie", entity="movie_id", feature_bag="per_movie"),
    ],
    output="unused",
)
model = raymix.fit(recipe, output=out, passes=1)
print("AUC", model.final["per-movie"]["auc"])
model.predict(validation).to_parquet(f"{predictions}/frame.parquet")
loaded = raymix.load(out)
loaded.predict(ray.data.from_pandas(validation)).to_parquet(f"{predictions}/dataset.parquet")
loaded.predict(pa.Table.from_pandas(validation)).to_parquet(f"{predictions}/table.parquet")
files = {n: f"{root}/{b}/validationData" for n, b in (("global", "global"), ("per-user", "per_user"), ("per-movie", "per_movie"))}
loaded.predict(files).to_parquet(f"{predictions}/files.parquet")
loaded.coefficients("per-user", entity=1).to_parquet(f"{predictions}/user-1.parquet")
'''


@pytest.fixture(scope="module")
def movielens_parquet(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("movielens-parquet")
    convert_movielens(ML100K, dest, seed=0, fmt="parquet")
    return dest


def test_a_python_script_fits_dataframes_and_predicts_what_raymix_score_writes(
    movielens_parquet, tmp_path
):
    script = tmp_path / "fit_movielens.py"
    script.write_text(SCRIPT)
    out, predictions = tmp_path / "out", tmp_path / "predictions"
    predictions.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script), str(movielens_parquet), str(out), str(predictions)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    auc = float(done.stdout.split("AUC")[1].split()[0])
    assert 0.754 <= auc <= 0.763  # GDMix's band, as from files (tests/test_movielens_end_to_end)
    run = json.loads((out / "run.json").read_text())
    assert "pandas DataFrame: 79959 rows" in run["data"]["train"]["in_memory"]

    scored = tmp_path / "scored"
    paths = [
        f"{name}={movielens_parquet / bag / 'validationData'}"
        for name, bag in (
            ("global", "global"),
            ("per-user", "per_user"),
            ("per-movie", "per_movie"),
        )
    ]
    done = subprocess.run(
        [sys.executable, "-m", "raymix", "score", str(out), *paths, "--out", str(scored)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    uids, totals = read_scores_avro(scored / "scores" / "part-00000.avro")
    own_in_fit = {  # each coordinate's own validation scores as the fit wrote them (1 pass)
        c: read_scores_avro(out / c / "validation_scores", score="predictionScorePerCoordinate")
        for c in ("global", "per-user", "per-movie")
    }
    for name in ("frame", "dataset", "table", "files"):
        predicted = pd.read_parquet(predictions / f"{name}.parquet")
        assert list(predicted.columns) == [
            "uid", "user_id", "movie_id", "score", "score_global", "score_per-user",
            "score_per-movie", "probability", "response",
        ]  # fmt: skip
        np.testing.assert_array_equal(predicted["uid"].to_numpy(), uids)
        # score files hold float32 (as GDMix writes them): the same number, rounded once
        np.testing.assert_array_equal(predicted["score"].to_numpy(np.float32), totals)
        for c, (fit_uids, fit_own) in own_in_fit.items():
            np.testing.assert_array_equal(fit_uids, uids)
            np.testing.assert_array_equal(predicted[f"score_{c}"].to_numpy(np.float32), fit_own)
        own = predicted[["score_global", "score_per-user", "score_per-movie"]].sum(axis=1)
        np.testing.assert_allclose(own, predicted["score"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            predicted["probability"], 1 / (1 + np.exp(-predicted["score"])), rtol=1e-12
        )
    user = pd.read_parquet(predictions / "user-1.parquet")
    assert user["entity"].eq("1").all() and user["name"].iloc[0] == "(INTERCEPT)"
    assert {"Drama", "Comedy", "release_date"} <= set(user["name"])


@pytest.fixture(scope="module")
def shaped(ray_session, tmp_path_factory):
    """A pandas-shaped data set: scalar feature columns, a categorical user, no uid/weight."""
    rng = np.random.default_rng(3)
    n = 3000
    users = rng.integers(0, 40, n)
    age, price = rng.normal(size=n), rng.normal(size=n)
    bias = rng.normal(scale=0.8, size=40)
    logit = 0.8 * age - 0.5 * price + bias[users]
    df = pd.DataFrame(
        {
            "age": age,
            "price": price,
            "user": pd.Categorical([f"u{u}" for u in users]),
            "response": (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )
    train, validation = df.iloc[:2400], df.iloc[2400:].reset_index(drop=True)
    out = tmp_path_factory.mktemp("shaped") / "out"
    recipe = Recipe(
        name="shaped",
        data=Data(train=train, validation=validation),
        coordinates=[
            FixedEffect(name="global", feature_bag=["age", "price"]),
            RandomEffect(name="per-user", entity="user", variance="simple"),
        ],
        output=str(out),
    )
    return raymix.fit(recipe), train, validation


def test_scalar_feature_columns_keep_their_names(shaped):
    model, _, _ = shaped
    coefficients = model.coefficients("global")
    assert list(coefficients["name"]) == ["(INTERCEPT)", "age", "price"]
    age, price = coefficients["value"].iloc[1:]
    assert age > 0.5 and price < -0.3  # the planted 0.8 and -0.5
    users = model.coefficients("per-user")
    assert set(users["entity"]) == {f"u{u}" for u in range(40)}
    assert coefficients["variance"].isna().all()  # the fixed effect was fitted without
    assert (users["variance"] > 0).all() and np.isfinite(users["variance"]).all()
    one = model.coefficients("per-user", entity="u3")
    assert list(one["name"]) == ["(INTERCEPT)"] and one["entity"].eq("u3").all()
    with pytest.raises(raymix.RecipeError, match="no model for entity 'nobody'"):
        model.coefficients("per-user", entity="nobody")
    assert model.final["per-user"]["auc"] > 0.7
    assert list(model.summary()["coordinate"]) == ["global", "per-user"]


def test_predict_equals_the_fit_validation_scores(shaped):
    model, _, validation = shaped
    predicted = model.predict(validation)
    uids, totals = read_scores_avro(model.output / "per-user" / "validation_scores")
    np.testing.assert_array_equal(predicted["uid"], np.arange(len(validation)))  # row numbers
    np.testing.assert_array_equal(predicted["uid"], uids)
    np.testing.assert_array_equal(predicted["score"].to_numpy(np.float32), totals)
    assert list(predicted["user"]) == list(validation["user"].astype(str))


def test_overrides_and_errors_of_the_python_api(shaped, tmp_path):
    model, train, _ = shaped
    with pytest.raises(raymix.RecipeError, match="data.train was in memory"):
        raymix.fit(model.output / "run.json", output=str(tmp_path / "again"))
    with pytest.raises(raymix.RecipeError, match="no coordinate 'nope'"):
        model.coefficients("nope")
    with pytest.raises(raymix.RecipeError, match="predict takes a DataFrame"):
        model.predict(42)
    refit = raymix.fit(
        model.recipe, output=str(tmp_path / "refit"), **{"coordinates.per-user.l2": 4.0}
    )
    assert refit.recipe.coordinate("per-user").l2 == 4.0
    assert refit.recipe.data.train.table is model.recipe.data.train.table  # rows kept
