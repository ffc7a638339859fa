"""Inputs that once gave silent wrong results or a traceback, run as a user runs them
(``python -m raymix fit`` / ``score``): each ends in one ``raymix: error:`` line naming what
is wrong, exit 2, or (a partial match) says what it did (issue 16 items 3 and 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raymix.data.avro.models import model_record, write_models
from raymix.data.metadata import load_feature_list

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    environment = dict(os.environ, **(env or {}))
    environment.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "raymix", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The one ``raymix: error:`` line of a failed command, asserting exit 2 and no other output."""
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("raymix: error: "), done.stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------ warm starts (item 3)


def global_model(path: Path, names: list[tuple[str, str]], seed: int = 0) -> Path:
    """A fixed-effect model over ``names`` (non-zero coefficients), as GDMix writes one."""
    values = np.random.default_rng(seed).normal(size=len(names))
    write_models(
        path / "part-00000.avro",
        [model_record("global model", 0.5, np.arange(len(names)), values, names, "logistic")],
    )
    return path


def warm_start_fit(movielens: Path, model: Path, *more: str) -> subprocess.CompletedProcess:
    return cli(
        "fit",
        str(REPO / "recipes" / "movielens_lr.py"),
        "--set",
        f"coordinates.global.warm_start={model}",
        *more,
        env={"RAYMIX_MOVIELENS": str(movielens)},
    )


def test_a_warm_start_sharing_no_feature_with_its_bag_is_refused(movielens, tmp_path):
    """Every feature of such a model was silently dropped (AUC 0.54 instead of 0.70)."""
    names = load_feature_list(movielens / "featureList" / "global")
    model = global_model(tmp_path / "other", [(f"other-{n}", t) for n, t in names])
    out = tmp_path / "out"
    line = one_error_line(warm_start_fit(movielens, model, "--set", f"output={out}"))
    assert str(model / "part-00000.avro") in line or str(model) in line, line
    assert "bag 'global'" in line and "shares none" in line, line
    assert f"{len(names)} features" in line, line
    assert not out.exists()  # refused before the output was touched


def test_a_warm_start_matching_some_features_says_how_many(movielens, tmp_path):
    names = load_feature_list(movielens / "featureList" / "global")
    half = len(names) // 2
    mixed = names[:half] + [(f"other-{n}", t) for n, t in names[half:]]
    model = global_model(tmp_path / "mixed", mixed)
    done = warm_start_fit(movielens, model, "--set", f"output={tmp_path / 'out'}", "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        f"warm start '{model}' matches {half} of its {len(names)} features in bag 'global'"
        in done.stdout
    ), done.stdout


def test_a_warm_start_matching_every_feature_says_nothing(movielens, tmp_path):
    names = load_feature_list(movielens / "featureList" / "global")
    model = global_model(tmp_path / "same", names)
    done = warm_start_fit(movielens, model, "--set", f"output={tmp_path / 'out'}", "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warm start" not in done.stdout, done.stdout


@pytest.mark.slow
def test_a_partial_warm_start_is_reported_while_fitting(movielens, tmp_path):
    names = load_feature_list(movielens / "featureList" / "global")
    mixed = names[:3] + [(f"other-{n}", t) for n, t in names[3:]]
    model = global_model(tmp_path / "mixed", mixed)
    done = warm_start_fit(movielens, model, "--set", f"output={tmp_path / 'out'}")
    assert done.returncode == 0, done.stderr[-3000:]
    told = [line for line in done.stderr.splitlines() if "warm start" in line]
    assert len(told) == 1 and f"matches 3 of its {len(names)} features" in told[0], done.stderr


# ------------------------------------------------------------ entity id types (item 6)


def parquet_split(path: Path, n: int, uid0: int, users) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(uid0)
    table = pa.table(
        {
            "uid": pa.array(np.arange(uid0, uid0 + n), pa.int64()),
            "response": pa.array(np.arange(n) % 2, pa.int64()),
            "weight": pa.array(np.ones(n), pa.float32()),
            "user_id": users,
            "global_indices": pa.array([[0, 1]] * n, pa.list_(pa.int64())),
            "global_values": pa.array(rng.normal(size=(n, 2)).tolist(), pa.list_(pa.float32())),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_entity_ids_of_another_type_in_validation_are_refused_at_plan_time(tmp_path):
    """They failed inside an actor with a raw TypeError, exit 1."""
    import pyarrow as pa

    from raymix import Data, RandomEffect, Recipe, Resources

    train = parquet_split(
        tmp_path / "train" / "part-0.parquet", 20, 0, pa.array([str(k % 3) for k in range(20)])
    )
    validation = parquet_split(
        tmp_path / "validation" / "part-0.parquet", 20, 100, pa.array(np.arange(20) % 3)
    )
    recipe = Recipe(
        data=Data(train=str(train.parent), validation=str(validation.parent)),
        coordinates=[RandomEffect(name="per-user", entity="user_id", feature_bag="global")],
        output=str(tmp_path / "out"),
        resources=Resources(actors=1, buckets=1),
    )
    path = tmp_path / "recipe.json"
    path.write_text(recipe.model_dump_json())
    line = one_error_line(cli("fit", str(path), "--quiet"))
    assert line == (
        f"raymix: error: {validation}, column 'user_id': entity ids are integers here but "
        f"strings in the training data ({train}); both splits must use one type"
    ), line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_score_names_the_file_row_and_column_of_a_nan(tmp_path):
    """``raymix score``'s message named no file ('input, row 3, ...')."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raymix import Data, FixedEffect, RandomEffect, Recipe, Resources

    users = pa.array(np.arange(40) % 3)
    train = parquet_split(tmp_path / "train" / "part-0.parquet", 40, 0, users)
    recipe = Recipe(
        data=Data(train=str(train.parent)),
        coordinates=[
            FixedEffect(name="global", feature_bag="global"),
            RandomEffect(name="per-user", entity="user_id", feature_bag="global"),
        ],
        output=str(tmp_path / "fit"),
        resources=Resources(actors=1, buckets=1),
    )
    path = tmp_path / "recipe.json"
    path.write_text(recipe.model_dump_json())
    done = cli("fit", str(path), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    bad = parquet_split(tmp_path / "new" / "part-0.parquet", 20, 500, pa.array(np.arange(20) % 3))
    table = pq.read_table(bad)
    values = table.column("global_values").to_pylist()
    values[7][1] = float("nan")
    table = table.set_column(
        table.column_names.index("global_values"),
        "global_values",
        pa.array(values, pa.list_(pa.float32())),
    )
    pq.write_table(table, bad)
    line = one_error_line(
        cli("score", str(tmp_path / "fit"), str(bad.parent), "--out", str(tmp_path / "scores"))
    )
    assert line.startswith(
        f"raymix: error: {bad}, row 7, column 'global_values': feature value is NaN"
    ), line
