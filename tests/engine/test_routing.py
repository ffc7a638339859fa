"""The group-by-entity on Ray Data's hash shuffle gives the bucket actors the very rows of
Ray core's routing: the same models and scores, bit for bit."""

import numpy as np
import pytest

from raymix import Data, FixedEffect, RandomEffect, Recipe, Resources
from raymix.data.avro.scores import read_scores_avro
from raymix.engine import routing
from raymix.engine.routing import grouping
from raymix.run import fit

from .test_random_effect_actors import models, synthetic


def test_grouping_is_routing_unless_chosen(monkeypatch):
    monkeypatch.delenv("RAYMIX_GROUPING", raising=False)
    assert grouping() == "routing"
    monkeypatch.setenv("RAYMIX_GROUPING", "ray_data")
    assert grouping() == "ray_data"
    monkeypatch.setenv("RAYMIX_GROUPING", "spark")
    with pytest.raises(ValueError, match="'RAYMIX_GROUPING' must be one of"):
        grouping()


@pytest.mark.slow
@pytest.mark.ray
def test_ray_data_shuffle_gives_the_same_models(ray_session, tmp_path, monkeypatch):
    data = synthetic(tmp_path / "data", string_ids=True)
    validation = synthetic(tmp_path / "validation", n=1500, files=2, seed=1, string_ids=True)
    shuffles = []  # the sources Ray Data shuffled
    shuffle = routing.route_on_ray_data

    def counted(source, n_actors, n_buckets):
        shuffles.append(len(source.files))
        return shuffle(source, n_actors, n_buckets)

    monkeypatch.setattr(routing, "route_on_ray_data", counted)
    results = []
    for how in ("routing", "ray_data"):
        monkeypatch.setenv("RAYMIX_GROUPING", how)
        out = tmp_path / how
        recipe = Recipe(
            data=Data(train=data.train, validation=validation.train),
            coordinates=[
                FixedEffect(name="global", feature_bag="g"),
                RandomEffect(name="per_user", entity="user_id", feature_bag="g", min_samples=2),
            ],
            passes=2,
            output=str(out),
            resources=Resources(actors=3, buckets=7),
        )
        result = fit(recipe)
        results.append(
            (
                models(out, "per_user"),
                models(out, "global"),
                read_scores_avro(out / "per_user" / "training_scores"),
                read_scores_avro(out / "per_user" / "validation_scores"),
                [s["metrics"] for s in result.steps],
            )
        )
    assert shuffles == [3, 2]  # the ray_data fit's training and validation files, once each
    routed, shuffled = results
    assert shuffled[0] == routed[0]  # every entity's coefficients, bit for bit
    assert shuffled[1] == routed[1]
    for split in (2, 3):
        np.testing.assert_array_equal(shuffled[split][0], routed[split][0])
        np.testing.assert_array_equal(shuffled[split][1], routed[split][1])
    assert shuffled[4] == routed[4]
