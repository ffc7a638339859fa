"""``Recipe(model_layout="photon")``: a fit also writes its models in Photon ML's GAME layout,
which reads back identically (every coefficient, name, term and variance) and serves as the
prior of the next run."""

from __future__ import annotations

from pathlib import Path

import pytest

from raymix.data.avro.models import read_models
from raymix.data.avro.photon_layout import read_id_info
from raymix.data.avro.priors import prior_models_dir
from raymix.recipe.spec import FixedEffect, RandomEffect, Recipe
from raymix.run import fit
from tests.test_every_layout_scores import write_parquet

pytestmark = pytest.mark.ray


def test_fit_writes_photon_layout(ray_session, tmp_path: Path):
    data = write_parquet(tmp_path / "data")
    coordinates = [
        FixedEffect(name="global", feature_bag="dense", l2=2.0, variance="full"),
        RandomEffect(name="per_user", entity="user", feature_bag="sparse", l2=0.5, variance="full"),
    ]
    out = tmp_path / "fit"
    recipe = Recipe(name="photon", data=data, coordinates=coordinates, output=str(out),
                    model_layout="photon")  # fmt: skip
    fit(recipe)
    for c in coordinates:
        photon = out / c.kind.replace("_", "-") / c.name / "coefficients"
        ours = list(read_models(out / c.name / "models"))
        assert ours and all(r["variances"] for r in ours)
        assert list(read_models(photon)) == ours
    assert read_id_info(out, "fixed_effect", "global") == ["dense"]
    assert read_id_info(out, "random_effect", "per_user") == ["user", "sparse"]
    assert (out / "model-spec").read_text().splitlines() == [
        "global -> regularizationWeight: 2.0\tregularizationType: L2",
        "per_user -> regularizationWeight: 0.5\tregularizationType: L2",
    ]
    # the Photon layout alone (raymix's own directories left out) is the next run's prior
    only_photon = tmp_path / "photon-only"
    only_photon.mkdir()
    for part in ("fixed-effect", "random-effect"):
        (out / part).rename(only_photon / part)
    for c in coordinates:
        assert prior_models_dir(only_photon, c.name, c.kind) == (
            only_photon / c.kind.replace("_", "-") / c.name / "coefficients"
        )
    # and a warm start from it is the warm start from raymix's own models directories
    runs = {}
    for source in ("raymix", "photon"):
        warm = []
        for c in coordinates:
            where = out / c.name / "models"
            if source == "photon":
                where = prior_models_dir(only_photon, c.name, c.kind)
            warm.append(c.model_copy(update={"warm_start": str(where)}))
        update = {
            "coordinates": tuple(warm),
            "output": str(tmp_path / source),
            "model_layout": "raymix",
        }
        fit(recipe.model_copy(update=update))
        runs[source] = [
            list(read_models(tmp_path / source / c.name / "models")) for c in coordinates
        ]
    assert runs["photon"] == runs["raymix"]
