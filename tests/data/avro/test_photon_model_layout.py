"""Photon ML's model layout: the fixture's 2016 model file (a ``null`` default on a ``string``
field, which strict Avro parsers reject) reads back with the names and terms it was written
with, through every reader of model files."""

from __future__ import annotations

from pathlib import Path

import fastavro
import numpy as np
import pytest

from raymix.data.avro.container import lenient_schema, read_records
from raymix.data.avro.model_reader import model_features, read_avro_model_table
from raymix.data.avro.models import INTERCEPT, read_models
from raymix.errors import DataError
from tests.photon_files import reference_model_records

FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "photon-fixtures"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/data/photon-fixtures")
MODEL = FIXTURES / "gameModel" / "fixed-effect" / "globalShard" / "coefficients" / "part-00000.avro"
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="Photon ML fixtures not present")


def test_strict_parsers_reject_the_fixture():
    """The premise: fastavro's own reader cannot read this file."""
    with open(MODEL, "rb") as handle, pytest.raises(Exception, match="Default value"):
        list(fastavro.reader(handle))


def test_fixture_reads_back_with_its_names_and_terms():
    (expected,) = reference_model_records(MODEL)
    triples = [(m["name"], m["term"], m["value"]) for m in expected["means"]]
    assert len(triples) > 1000 and any(t[1] for t in triples)  # terms are really there

    (record,) = list(read_models(MODEL))
    assert record == expected
    assert read_records(MODEL) == [expected]

    pairs = {(n, t) for n, t, _ in triples} - {INTERCEPT}
    assert model_features(MODEL) == pairs
    assert model_features(MODEL.parent) == pairs

    names = sorted(pairs)
    table = read_avro_model_table(MODEL, names).to_pylist()
    assert [row["entity"] for row in table] == [expected["modelId"]]
    value = dict(((n, t), v) for n, t, v in triples)
    (row,) = table
    assert row["intercept"] == value[INTERCEPT]
    assert [names[j] for j in row["index"]] == names  # every feature, ascending
    np.testing.assert_array_equal(row["value"], [value[k] for k in names])


def test_lenient_schema_only_forgives_defaults(tmp_path: Path):
    broken = tmp_path / "part-00000.avro"
    raw = MODEL.read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="part-00000.avro"):
        read_records(broken)
    with pytest.raises(Exception, match="nope"):
        lenient_schema('{"type": "record", "name": "r", "fields": [{"name": "a", "type": "nope"}]}')


def _write_raymix_models(root: Path) -> dict[str, Path]:
    """A fixed effect (one model, with terms and variances) and a random effect (25 users in
    two files), as raymix writes them under ``<coordinate>/models``."""
    from raymix.data.avro.models import model_record, write_models

    rng = np.random.default_rng(3)
    names = [(f"f{j}", t) for j in range(6) for t in ("", "a", "b")]
    fixed = root / "global" / "models"
    index = np.arange(len(names))
    write_models(
        fixed / "part-00000.avro",
        [
            model_record(
                "global",
                rng.normal(),
                index,
                rng.normal(size=index.size),
                names,
                "linear",
                rng.uniform(0.1, 1, index.size + 1),
            )
        ],  # fmt: skip
    )
    users = root / "per_user" / "models"
    for part in range(2):
        records = []
        for u in range(part * 12, part * 12 + 12 + part):
            idx = np.sort(rng.choice(len(names), 4, replace=False))
            records.append(model_record(f"user{u}", rng.normal(), idx, rng.normal(size=4),
                                        names, "linear", rng.uniform(0.1, 1, 5)))  # fmt: skip
        write_models(users / f"part-{part:05d}.avro", records)
    return {"global": fixed, "per_user": users}


def test_raymix_models_round_trip_through_photon_layout(tmp_path: Path):
    from raymix.data.avro.photon_layout import PhotonCoordinate, read_id_info, write_photon_layout
    from raymix.data.avro.priors import prior_models_dir

    models = _write_raymix_models(tmp_path / "fit")
    out = tmp_path / "photon"
    coordinates = [
        PhotonCoordinate("global", "fixed_effect", models["global"], "globalShard",
                         settings={"regularizationWeight": 10.0, "regularizationType": "L2"}),
        PhotonCoordinate("per_user", "random_effect", models["per_user"], "userShard", "userId",
                         {"regularizationWeight": 1.0, "regularizationType": "L2"}),
    ]  # fmt: skip
    write_photon_layout(out, coordinates)

    for c in coordinates:
        photon_dir = prior_models_dir(out, c.name, c.kind)
        assert photon_dir == out / c.kind.replace("_", "-") / c.name / "coefficients"
        assert list(read_models(photon_dir)) == list(read_models(c.models))  # every field
        assert model_features(photon_dir) == model_features(c.models)
        names = sorted(model_features(c.models))
        assert read_avro_model_table(photon_dir, names) == read_avro_model_table(c.models, names)
    assert read_id_info(out, "fixed_effect", "global") == ["globalShard"]
    assert read_id_info(out, "random_effect", "per_user") == ["userId", "userShard"]
    assert (out / "model-spec").read_text().splitlines() == [
        "global -> regularizationWeight: 10.0\tregularizationType: L2",
        "per_user -> regularizationWeight: 1.0\tregularizationType: L2",
    ]


def test_photon_fixture_written_again_reads_back_identically(tmp_path: Path):
    from raymix.data.avro.photon_layout import PhotonCoordinate, write_photon_layout

    c = PhotonCoordinate("globalShard", "fixed_effect", MODEL.parent, "globalShard")
    write_photon_layout(tmp_path, [c])
    again = tmp_path / "fixed-effect" / "globalShard" / "coefficients"
    assert list(read_models(again)) == reference_model_records(MODEL)


def test_a_photon_model_directory_reads_its_coordinates(tmp_path: Path):
    """Shards and entity types from id-info, else from the directory names; model-spec's
    order first (with its settings), then fixed effects, then random effects, by name."""
    from raymix.data.avro.photon_layout import is_game_model, read_game_model

    assert not is_game_model(tmp_path)
    for folder, info in [
        ("fixed-effect/zeta", "zShard\n"),
        ("fixed-effect/alpha", None),
        ("random-effect/userId-user-shard", None),
        ("random-effect/per-song", "songId\nsongShard\n"),
    ]:
        (tmp_path / folder / "coefficients").mkdir(parents=True)
        if info is not None:
            (tmp_path / folder / "id-info").write_text(info)
    (tmp_path / "model-spec").write_text("per-song -> a: 1\tb: x\nzeta -> c: 2\n")
    assert is_game_model(tmp_path)
    found = read_game_model(tmp_path)
    assert [(c.name, c.kind, c.shard, c.entity, c.settings) for c in found] == [
        ("per-song", "random_effect", "songShard", "songId", {"a": "1", "b": "x"}),
        ("zeta", "fixed_effect", "zShard", None, {"c": "2"}),
        ("alpha", "fixed_effect", "alpha", None, {}),
        ("userId-user-shard", "random_effect", "user-shard", "userId", {}),
    ]
    assert found[0].models == str(tmp_path / "random-effect" / "per-song" / "coefficients")

    (tmp_path / "random-effect" / "nameless" / "coefficients").mkdir(parents=True)
    with pytest.raises(DataError, match="<entityType>-<shard>") as caught:
        read_game_model(tmp_path)
    assert "random-effect/nameless/id-info" in str(caught.value)
    (tmp_path / "random-effect" / "nameless" / "coefficients").rmdir()
    with pytest.raises(DataError, match="no coefficients directory"):
        read_game_model(tmp_path)
