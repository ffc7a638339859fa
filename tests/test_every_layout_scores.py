"""Every bag layout fits and then scores: ``raymix score`` on a fitted run gives the fit's own
validation scores (to 1e-9) for dense, sparse and intercept-only bags, on a fixed effect and on
a random effect, from every input format in ``FORMATS`` (add a writer there for a new format):
Parquet, GDMix's TFRecord (per-record ``tf.train.Example``, with its tensor metadata) and
Photon ML's Avro input (whose bags are sparse records: a "dense" bag there names
every feature in every row).

The deep coordinate is left out here: it needs a vocabulary and text columns, and its
fit-then-score path is covered by tests/serving (movieLens DeText)."""

from __future__ import annotations

from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix.data.avro.scores import read_scores_avro
from raymix.data.metadata import Metadata, TensorSpec
from raymix.data.tfrecord.tables import write_tfrecord_file
from raymix.recipe.spec import Data, FixedEffect, RandomEffect, Recipe
from raymix.run import fit
from raymix.scoring import score_command
from tests.photon_files import FEATURE

pytestmark = pytest.mark.ray

ROWS, USERS, DIM = 600, 20, 3


def table(seed: int) -> pa.Table:
    """Rows with a dense bag ``dense`` (3 floats each), a sparse bag ``sparse`` (indices and
    values, 1-2 of 3 features per row) and a user id."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(ROWS, DIM))
    user = rng.integers(0, USERS, ROWS)
    idx = [np.sort(rng.choice(DIM, rng.integers(1, 3), replace=False)) for _ in range(ROWS)]
    vals = [rng.normal(size=len(i)) for i in idx]
    logit = dense @ [0.8, -0.5, 0.3] + rng.normal(size=USERS)[user]
    return pa.table(
        {
            "uid": np.arange(ROWS, dtype=np.int64) + seed * ROWS,
            "response": (rng.uniform(size=ROWS) < 1 / (1 + np.exp(-logit))).astype(np.int64),
            "user": user.astype(np.int64),
            "dense": pa.array([list(r) for r in dense], pa.list_(pa.float64())),
            "sparse_indices": pa.array([i.tolist() for i in idx], pa.list_(pa.int64())),
            "sparse_values": pa.array([v.tolist() for v in vals], pa.list_(pa.float64())),
        }
    )


def write_parquet(root: Path) -> Data:
    for split, seed in (("train", 1), ("validation", 2)):
        (root / split).mkdir(parents=True)
        pq.write_table(table(seed), root / split / "part-0.parquet")
    return Data(train=str(root / "train"), validation=str(root / "validation"))


PHOTON_SCHEMA = {
    "type": "record",
    "name": "Rating",
    "fields": [
        {"name": "user", "type": "long"},
        {"name": "response", "type": "double"},
        *(
            {"name": bag, "type": {"type": "array", "items": "Feature" if bag == "sparse" else FEATURE}}
            for bag in ("dense", "sparse")
        ),
    ],
}  # fmt: skip


def write_photon(root: Path) -> Data:
    """The same rows as Photon ML's GAME Avro input: each bag an array of {name, term, value}
    records (the dense bag names all 3 features, the sparse one 1-2), indexed from the data."""
    root.mkdir(parents=True, exist_ok=True)
    for split, seed in (("train", 1), ("validation", 2)):
        rows = table(seed).to_pylist()
        records = [
            {
                "user": r["user"],
                "response": float(r["response"]),
                "dense": [
                    {"name": str(j), "term": None, "value": v} for j, v in enumerate(r["dense"])
                ],
                "sparse": [
                    {"name": str(j), "term": "", "value": v}
                    for j, v in zip(r["sparse_indices"], r["sparse_values"], strict=True)
                ],
            }
            for r in rows
        ]
        with (root / f"{split}.avro").open("wb") as out:
            fastavro.writer(out, fastavro.parse_schema(PHOTON_SCHEMA), records)
    return Data(train=str(root / "train.avro"), validation=str(root / "validation.avro"))


def write_tfrecord(root: Path) -> Data:
    """The same rows as GDMix's TFRecord layout: a sparse bag as ``sparse_indices`` /
    ``sparse_values``, the dense one as a fixed-length float tensor, and the metadata."""
    features = (
        TensorSpec("uid", "long"),
        TensorSpec("user", "long"),
        TensorSpec("dense", "float", (DIM,), False),
        TensorSpec("sparse", "float", (DIM,), True),
    )
    metadata = Metadata(features, (TensorSpec("response", "int"),))
    (root / "metadata").mkdir(parents=True)
    metadata.write(root / "metadata" / "tensor_metadata.json")
    for split, seed in (("train", 1), ("validation", 2)):
        (root / split).mkdir()
        write_tfrecord_file(table(seed), root / split / "part-0.tfrecord", metadata)
    return Data(
        train=str(root / "train"),
        validation=str(root / "validation"),
        metadata=str(root / "metadata" / "tensor_metadata.json"),
    )


FORMATS = {"parquet": write_parquet, "photon": write_photon, "tfrecord": write_tfrecord}
BAGS = {"dense": "dense", "sparse": "sparse", "intercept": None}


@pytest.fixture(scope="module", params=sorted(FORMATS))
def data(request, tmp_path_factory) -> Data:
    return FORMATS[request.param](tmp_path_factory.mktemp(f"layouts-{request.param}"))


@pytest.mark.parametrize("kind", ["fixed", "random"])
@pytest.mark.parametrize("bag", sorted(BAGS))
def test_score_equals_the_fits_validation_scores(data, kind, bag, ray_session, tmp_path):
    feature_bag = BAGS[bag]
    if kind == "fixed":
        coordinates = [FixedEffect(name="c", feature_bag=feature_bag, l2=1.0)]
    else:  # a random effect needs a fixed effect beside it only to be a GLMix; keep it alone
        coordinates = [RandomEffect(name="c", entity="user", feature_bag=feature_bag, l2=1.0)]
    out = tmp_path / "fit"
    fit(Recipe(name="layouts", data=data, coordinates=coordinates, output=str(out)))
    uid, fitted = read_scores_avro(out / "c" / "validation_scores" / "part-00000.avro")
    s_uid, scored = read_scores_avro(score_command(out, [], tmp_path / "scores"))
    order = np.argsort(s_uid)
    assert np.array_equal(s_uid[order], np.sort(uid))
    np.testing.assert_allclose(scored[order], fitted[np.argsort(uid)], rtol=0, atol=1e-9)
    assert np.abs(fitted).max() > 0  # the model scores something (an intercept at least)
