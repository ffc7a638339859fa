"""Synthetic GLMix data: determinism, streamed parts, planted truth, skew, row convention, a fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from raymix.cli import main
from raymix.data.metadata import load_feature_list, load_metadata
from raymix.data.rows import rows_from_table
from raymix.data.source import read_table
from raymix.datasets.synthetic import LEVELS, generate_synthetic, load_truth
from raymix.errors import DataError
from raymix.metrics import auc
from raymix.recipe.load import load_recipe
from raymix.run import fit, plan

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "synthetic_glmix.py"
SMALL = {"rows": 2700, "users": 300, "items": 40, "rows_per_file": 1000}


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def read_split(root: Path, split: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((root / split).glob("*.parquet")))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("synthetic") / "small"
    generate_synthetic(dest, **SMALL, global_features=6, entity_features=3, seed=3)
    return dest


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> tuple[Path, dict]:
    """20k rows: enough to recover the planted model."""
    dest = tmp_path_factory.mktemp("synthetic") / "medium"
    summary = generate_synthetic(
        dest, rows=20_000, users=30, items=10, rows_per_file=8000, validation_fraction=0.25, seed=1
    )
    return dest, summary


def test_same_seed_gives_identical_files_and_another_seed_differs(small, tmp_path):
    generate_synthetic(tmp_path / "again", **SMALL, global_features=6, entity_features=3, seed=3)
    first, again = files_of(small), files_of(tmp_path / "again")
    assert first == again
    assert not any(name.startswith(".") for name in first)  # no temporary files left
    generate_synthetic(tmp_path / "other", **SMALL, global_features=6, entity_features=3, seed=4)
    other = files_of(tmp_path / "other")
    assert other.keys() == first.keys()
    assert other["train/part-00000.parquet"] != first["train/part-00000.parquet"]


def test_parts_respect_rows_per_file_and_uids_are_contiguous(small):
    summary = json.loads((small / "summary.json").read_text())
    counts = {
        split: [pq.ParquetFile(p).metadata.num_rows for p in sorted((small / split).iterdir())]
        for split in ("train", "validation")
    }
    assert counts == {"train": [1000, 1000, 430], "validation": [270]}
    assert summary["train_rows"] == 2430 and summary["files"] == {"train": 3, "validation": 1}
    train, val = read_split(small, "train"), read_split(small, "validation")
    assert np.array_equal(train.column("uid").to_numpy(), np.arange(2430))
    assert np.array_equal(val.column("uid").to_numpy(), np.arange(2430, 2700))
    meta = load_metadata(small / "metadata" / "tensor_metadata.json")
    assert train.schema == meta.arrow_schema()  # every column in the row convention
    assert train.schema.field("global").type == pa.list_(pa.float32(), 6)
    assert train.schema.field("per_user_indices").type == pa.list_(pa.int64())
    assert load_feature_list(small / "featureList" / "per_item") == [
        ("i0", ""),
        ("i1", ""),
        ("i2", ""),
    ]
    assert set(np.unique(train.column("response").to_numpy())) <= {0, 1}


def test_true_logit_is_the_planted_model_and_its_auc_is_the_summary(small):
    truth = load_truth(small / "truth.npz")
    summary = json.loads((small / "summary.json").read_text())
    table = pa.concat_tables([read_split(small, "train"), read_split(small, "validation")])
    n = table.num_rows
    x = np.asarray(table.column("global").combine_chunks().flatten()).reshape(n, 6)
    bags = {
        bag: np.asarray(table.column(f"{bag}_values").combine_chunks().flatten())
        for bag in ("per_user", "per_item")
    }
    assert set(np.unique(x)) <= set(LEVELS)
    z = truth.logit(
        x,
        table.column("user_id").to_numpy(),
        bags["per_user"].reshape(n, 3),
        table.column("item_id").to_numpy(),
        bags["per_item"].reshape(n, 3),
    )
    np.testing.assert_allclose(table.column("true_logit").to_numpy(), z, rtol=1e-6, atol=1e-6)
    val = read_split(small, "validation")
    expected = auc(val.column("true_logit").to_numpy(), val.column("response").to_numpy())
    assert summary["validation_true_auc"] == pytest.approx(expected, abs=1e-12)
    assert summary["positive_rate"] == pytest.approx(table.column("response").to_numpy().mean())


def test_a_global_logistic_regression_recovers_the_planted_beta(medium):
    from sklearn.linear_model import LogisticRegression

    dest, summary = medium
    train = read_split(dest, "train")
    x = (
        np.asarray(train.column("global").combine_chunks().flatten())
        .reshape(train.num_rows, 50)
        .astype(np.float64)
    )
    model = LogisticRegression(C=1e4).fit(x, train.column("response").to_numpy())
    beta = load_truth(dest / "truth.npz").beta
    assert np.corrcoef(model.coef_[0], beta)[0, 1] > 0.9
    assert 0.74 < summary["validation_true_auc"] < 0.82


def test_entity_sizes_are_skewed_and_every_entity_appears(tmp_path):
    summary = generate_synthetic(tmp_path / "a", rows=20_000, users=2000, items=100, seed=0)
    users = summary["entity_rows"]["users"]
    assert users["max"] >= 20 * users["p50"] and users["min"] >= 1
    truth = load_truth(tmp_path / "a" / "truth.npz")
    table = pa.concat_tables([read_split(tmp_path / "a", s) for s in ("train", "validation")])
    seen = np.bincount(table.column("user_id").to_numpy(), minlength=2000)
    assert np.array_equal(seen, truth.user_rows)  # the dealt rows match the planted sizes
    few = generate_synthetic(tmp_path / "b", rows=50, users=200, items=5, seed=0)
    assert few["entity_rows"]["users"]["with_rows"] < 50 and few["entity_rows"]["items"]["min"] >= 1


def test_rows_read_through_the_row_schema_a_recipe_builds(medium, monkeypatch, tmp_path):
    dest, _ = medium
    monkeypatch.setenv("RAYMIX_SYNTHETIC", str(dest))
    the_plan = plan(load_recipe(RECIPE, [f"output={tmp_path / 'out'}"]))
    shapes = {}
    for c in the_plan.coordinates:
        rows = rows_from_table(read_table(c.train, c.train.files[0]), c.train.schema)
        shapes[c.spec.name] = (type(rows.X), rows.X.shape, len(rows))
        if c.spec.name != "global":
            assert rows.X.nnz == 10 * len(rows) and rows.entity is not None
    assert shapes == {
        "global": (np.ndarray, (8000, 50), 8000),
        "per-user": (sp.csr_matrix, (8000, 10), 8000),
        "per-item": (sp.csr_matrix, (8000, 10), 8000),
    }


def test_tfrecord_holds_the_same_rows_as_parquet(tmp_path):
    from raymix.data.tfrecord.tables import read_tfrecord_file

    args = {"rows": 300, "users": 30, "items": 5, "global_features": 4, "entity_features": 2}
    generate_synthetic(tmp_path / "pq", **args)
    generate_synthetic(tmp_path / "tf", **args, fmt="tfrecord")
    meta = load_metadata(tmp_path / "tf" / "metadata" / "tensor_metadata.json")
    got = read_tfrecord_file(tmp_path / "tf" / "train" / "part-00000.tfrecord", meta)
    assert got.equals(pq.read_table(tmp_path / "pq" / "train" / "part-00000.parquet"))


def test_overwrite_rules(tmp_path):
    dest = tmp_path / "d"
    generate_synthetic(dest, rows=400, users=20, items=4, rows_per_file=100)
    with pytest.raises(DataError, match="not empty"):
        generate_synthetic(dest, rows=400, users=20, items=4)
    generate_synthetic(dest, rows=400, users=20, items=4, rows_per_file=200, overwrite=True)
    assert sorted(p.name for p in (dest / "train").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"refusing to overwrite: \['notes.txt'\]"):
        generate_synthetic(dest, rows=400, users=20, items=4, overwrite=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"rows": 0},
            "The 'rows' parameter of generate_synthetic must be an int in the range [1, inf). Got 0 instead.",
        ),
        (
            {"fmt": "csv"},
            "The 'fmt' parameter of generate_synthetic must be one of ['parquet', 'tfrecord']. Got 'csv' instead.",
        ),
        (
            {"validation_fraction": 1.0},
            "The 'validation_fraction' parameter of generate_synthetic must be a float in the range [0, 1). Got 1.0 instead.",
        ),
        (
            {"user_sigma": -1.0},
            "The 'user_sigma' parameter of generate_synthetic must be a float in the range [0, inf) or None. Got -1.0 instead.",
        ),
    ],
)
def test_bad_parameters_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as info:
        generate_synthetic(tmp_path, **{"rows": 10, "users": 2, "items": 2, **kwargs})
    assert str(info.value) == message
    assert not any(tmp_path.iterdir())


def test_cli_writes_the_layout(tmp_path, capsys):
    dest = tmp_path / "cli"
    argv = ["data", "synthetic", "--dest", str(dest), "--rows", "500", "--users", "50"]
    assert main([*argv, "--items", "8", "--global-features", "5", "--quiet"]) == 0
    assert "validation AUC of the planted model" in capsys.readouterr().out
    assert (dest / "truth.npz").is_file() and (dest / "featureList" / "global").is_file()
    assert json.loads((dest / "summary.json").read_text())["global_features"] == 5


@pytest.mark.ray
def test_glmix_fit_reaches_the_true_models_auc(medium, ray_session, monkeypatch, tmp_path):
    dest, summary = medium
    monkeypatch.setenv("RAYMIX_SYNTHETIC", str(dest))
    recipe = load_recipe(RECIPE, [f"output={tmp_path / 'out'}"])
    result = fit(recipe)
    fitted = result.final["per-item"]["auc"]
    assert fitted > result.final["global"]["auc"] + 0.01  # the random effects matter
    assert abs(fitted - summary["validation_true_auc"]) < 0.02
