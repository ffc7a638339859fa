"""The fixed effect on 1 (in-process) and 2 TensorflowTrainer workers gives the same model.

With 2 workers each holds a different shard; the loss and gradient are all-reduced with
TensorFlow's collective ops and both step the same L-BFGS. L-BFGS alone stops where rounding
lets it (the sums differ in the last bits between 1 and 2 shards), ~1e-7 apart; the Newton
polish on the all-reduced Hessian takes both to the optimum, where they agree to 1e-8.
"""

import json
from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix import LBFGS, Data, FixedEffect, Recipe
from raymix.data.avro.models import read_models
from raymix.run import fit

from ..conftest import FIXTURES

pytestmark = [pytest.mark.slow, pytest.mark.ray]
TIGHT = LBFGS(max_iter=2000)  # GDMix defaults but enough iterations to converge; then polished


def synthetic_parquet(directory: Path, n=3003, d=20, files=3, seed=0) -> Data:
    rng = np.random.default_rng(seed)
    beta = rng.normal(size=d)
    directory.mkdir(parents=True)
    uid = 0
    for part in range(files):
        X = rng.normal(size=(n // files, d)) * rng.uniform(0.1, 10, size=d)
        y = (rng.uniform(size=n // files) < 1 / (1 + np.exp(-(X @ beta) / 5))).astype(np.int64)
        idx = np.tile(np.arange(d), (len(y), 1))
        table = pa.table(
            {
                "uid": np.arange(uid, uid + len(y)),
                "response": y,
                "weight": rng.uniform(0.5, 2, len(y)).astype(np.float32),
                "global_indices": pa.array(list(idx), pa.list_(pa.int64())),
                "global_values": pa.array(list(X.astype(np.float32)), pa.list_(pa.float32())),
            }
        )
        uid += len(y)
        pq.write_table(table, directory / f"part-{part}.parquet")
    return Data(train=str(directory))


def global_model(out: Path) -> dict:
    (record,) = list(read_models(out / "global" / "models"))
    return {(m["name"], m["term"]): m["value"] for m in record["means"]}


def run(data: Data, out: Path, workers: int, **kwargs):
    recipe = Recipe(
        data=data,
        coordinates=[
            FixedEffect(
                name="global", feature_bag="global", solver=TIGHT, workers=workers, **kwargs
            )
        ],
        output=str(out),
    )
    return fit(recipe)


@pytest.mark.parametrize("source", ["fe_lbfgs", "synthetic"])
def test_one_and_two_workers_agree(source, ray_session, tmp_path):
    if source == "fe_lbfgs":
        root = FIXTURES / "fe_lbfgs"
        data = Data(
            train=str(root / "training_data"),
            metadata=str(root / "metadata" / "tensor_metadata.json"),
            feature_lists=str(root / "featureList"),
        )
    else:
        data = synthetic_parquet(tmp_path / "data")
    one = run(data, tmp_path / "one", workers=0)
    two = run(data, tmp_path / "two", workers=2)
    rows = two.steps[0]["rows_per_worker"]
    assert len(rows) == 2 and min(rows) > 0, rows  # both workers really held a shard
    assert sum(rows) == one.steps[0]["rows_per_worker"][0]  # no row lost (3003 is odd)
    a, b = global_model(tmp_path / "one"), global_model(tmp_path / "two")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-8), key
    assert one.steps[0]["converged"] and two.steps[0]["converged"]


def test_model_file_reads_back_against_gdmix_schema(ray_session, tmp_path):
    root = FIXTURES / "fe_lbfgs"
    data = Data(
        train=str(root / "training_data"),
        metadata=str(root / "metadata" / "tensor_metadata.json"),
        feature_lists=str(root / "featureList"),
    )
    run(data, tmp_path / "out", workers=0)
    text = (FIXTURES / "avro-schema" / "lr_model.avsc").read_text()
    decoder = json.JSONDecoder()
    ntv, end = decoder.raw_decode(text)
    model, _ = decoder.raw_decode(text[end:].lstrip())
    named: dict = {}
    fastavro.parse_schema(ntv, named_schemas=named)
    schema = fastavro.parse_schema(model, named_schemas=named)
    with open(tmp_path / "out" / "global" / "models" / "part-00000.avro", "rb") as handle:
        (record,) = list(fastavro.reader(handle, reader_schema=schema))
    assert record["modelId"] == "global model"
    assert record["means"][0] == {
        "name": "(INTERCEPT)",
        "term": "",
        "value": record["means"][0]["value"],
    }
    assert all(m["name"].startswith("n") for m in record["means"][1:])  # names from featureList
    assert all(abs(m["value"]) > 1e-4 for m in record["means"][1:])  # GDMix's sparsity threshold


def test_warm_start_from_a_model_converges_at_once(ray_session, tmp_path):
    data = synthetic_parquet(tmp_path / "data")
    first = run(data, tmp_path / "first", workers=0)
    again = run(
        data,
        tmp_path / "again",
        workers=0,
        warm_start=str(tmp_path / "first" / "global" / "models"),
    )
    assert again.steps[0]["iterations"] <= 2 < first.steps[0]["iterations"]
    a, b = global_model(tmp_path / "first"), global_model(tmp_path / "again")
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-7)
