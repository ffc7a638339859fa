"""Random effects on the bucket-actor pool: invariance to actors/buckets, GDMix grouped fixtures."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.optimize

from raymix import Columns, Data, FixedEffect, RandomEffect, Recipe, Resources
from raymix.data.avro.models import read_models
from raymix.data.avro.scores import read_scores_avro
from raymix.run import fit

from ..conftest import FIXTURES

pytestmark = [pytest.mark.slow, pytest.mark.ray]
GROUPED = FIXTURES / "grouped_per_member_train"


def synthetic(directory: Path, n=6000, users=300, d=5, files=3, seed=0, string_ids=False) -> Data:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    size = rng.zipf(1.6, users).astype(float)
    user = rng.choice(users, size=n, p=size / size.sum())
    w_user = rng.normal(size=(users, d))
    for part, rows in enumerate(np.array_split(np.arange(n), files)):
        X = rng.normal(size=(rows.size, d))
        logit = np.einsum("ij,ij->i", X, w_user[user[rows]])
        y = (rng.uniform(size=rows.size) < 1 / (1 + np.exp(-logit))).astype(np.int64)
        ids = [f"user-{u}" for u in user[rows]] if string_ids else user[rows]
        table = pa.table(
            {
                "uid": rows.astype(np.int64),
                "response": y,
                "weight": rng.uniform(0.5, 2, rows.size).astype(np.float32),
                "user_id": ids,
                "g_indices": pa.array(
                    list(np.tile(np.arange(d), (rows.size, 1))), pa.list_(pa.int64())
                ),
                "g_values": pa.array(list(X.astype(np.float32)), pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, directory / f"part-{part}.parquet")
    return Data(train=str(directory))


def models(out: Path, name: str):
    return sorted((r["modelId"], r["means"]) for r in read_models(out / name / "models"))


def test_results_identical_whatever_actors_and_buckets(ray_session, tmp_path):
    data = synthetic(tmp_path / "data")
    results = []
    for actors, buckets in ((1, 1), (2, 8), (4, 5)):
        out = tmp_path / f"a{actors}b{buckets}"
        recipe = Recipe(
            data=data,
            coordinates=[
                FixedEffect(name="global", feature_bag="g"),
                RandomEffect(name="per_user", entity="user_id", feature_bag="g", min_samples=2),
            ],
            passes=2,
            output=str(out),
            resources=Resources(actors=actors, buckets=buckets),
        )
        fit(recipe)
        files = sorted(p.name for p in (out / "per_user" / "models").iterdir())
        results.append(
            (
                models(out, "per_user"),
                models(out, "global"),
                read_scores_avro(out / "per_user" / "training_scores"),
                len(files),
            )
        )
    base = results[0]
    for other in results[1:]:
        assert other[0] == base[0]  # every entity's coefficients, bit for bit
        assert other[1] == base[1]
        np.testing.assert_array_equal(other[2][0], base[2][0])
        np.testing.assert_array_equal(other[2][1], base[2][1])
    assert [r[3] for r in results] == [1, 8, 5]  # one model file per non-empty bucket


def scipy_entity_fit(X, y, w, o, l2):
    """GDMix's per-entity objective, intercept first, (1/n)-scaled, by scipy at tight tolerance.

    The intercept is regularized too: member 100 has a single positive row, so with a free
    intercept its optimum is at infinity and any two solvers stop at arbitrary points.
    """
    n = len(y)
    A = np.hstack([np.ones((n, 1)), X])

    def f(theta):
        z = A @ theta + o
        loss = np.sum(w * (np.logaddexp(0, z) - y * z)) + 0.5 * l2 * np.sum(theta**2)
        grad = A.T @ (w * (1 / (1 + np.exp(-z)) - y)) + l2 * theta
        return loss / n, grad / n

    return scipy.optimize.minimize(
        f,
        np.zeros(A.shape[1]),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000},
    ).x


@pytest.mark.parametrize("metadata", ["data.json", "data_intercept_only.json"])
def test_reads_gdmix_grouped_fixture(metadata, ray_session, tmp_path):
    bag = "per_member" if metadata == "data.json" else None
    recipe = Recipe(
        data=Data(
            train=str(GROUPED / "data.tfrecord"),
            metadata=str(GROUPED / metadata),
            grouped_by="memberId",
        ),
        columns=Columns(offset="offset"),
        coordinates=[
            RandomEffect(
                name="per_member",
                entity="memberId",
                feature_bag=bag,
                l2=1.0,
                regularize_intercept=True,
                sparsity_threshold=0.0,
            )
        ],
        output=str(tmp_path / "out"),
    )
    fit(recipe)
    got = {
        r["modelId"]: r["means"] for r in read_models(tmp_path / "out" / "per_member" / "models")
    }
    assert set(got) == {"100034", "100"}
    # member 100034: uids 10 and 20 (fixture values, decoded from the raw protos)
    rows = {
        "100034": (
            [[0, 7, 60, 80, 95], [34, 57]],
            [[1, 2, 3, 5, 6.6], [1, 2]],
            [0, 1],
            [1.0, 2.0],
            [0.5, 0.75],
        ),
        "100": ([[10, 11]], [[-3.5, 2.3]], [1], [1.0], [0.2]),
    }
    for member, (idx, val, y, w, o) in rows.items():
        if bag is None:
            X = np.zeros((len(y), 0))
            features = []
        else:
            features = sorted({j for row in idx for j in row})
            X = np.zeros((len(y), len(features)))
            for r, (ii, vv) in enumerate(zip(idx, val, strict=True)):
                for j, v in zip(ii, vv, strict=True):
                    X[r, features.index(j)] = np.float32(v)
        theta = scipy_entity_fit(
            X, np.array(y, float), np.array(w), np.array(o, np.float32).astype(float), 1.0
        )
        means = {m["name"]: m["value"] for m in got[member]}
        assert means["(INTERCEPT)"] == pytest.approx(theta[0], abs=1e-5)
        for k, j in enumerate(features):
            assert means.get(str(j), 0.0) == pytest.approx(theta[k + 1], abs=1e-5)


def test_string_entity_ids(ray_session, tmp_path):
    data = synthetic(tmp_path / "data", n=1500, users=40, string_ids=True)
    recipe = Recipe(
        data=data,
        coordinates=[RandomEffect(name="per_user", entity="user_id", feature_bag="g")],
        output=str(tmp_path / "out"),
    )
    fit(recipe)
    ids = {r["modelId"] for r in read_models(tmp_path / "out" / "per_user" / "models")}
    assert ids and all(i.startswith("user-") for i in ids)
