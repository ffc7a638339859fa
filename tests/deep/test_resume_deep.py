"""A deep run stopped after a pass and resumed restores the optimizer's state (its slots, its
counters, the fit number that seeds the shuffling) from the checkpoint: the resumed run's
network equals an uninterrupted run's bit for bit."""

import json

import numpy as np
import pytest

from raymix import Recipe
from raymix.deep.export import TRAINER_STATE, load_weights
from raymix.run import fit
from tests.deep.conftest import small_deep_recipe

pytestmark = [pytest.mark.slow, pytest.mark.ray]


class Interrupted(Exception):
    pass


def recipe(text_data, output) -> Recipe:
    return small_deep_recipe(str(text_data), str(output), steps=30, passes=3)


def test_a_resumed_deep_run_restores_its_optimizer_and_ends_as_an_uninterrupted_one(
    text_data, ray_session, tmp_path
):
    whole = tmp_path / "whole"
    fit(recipe(text_data, whole))

    stopped = tmp_path / "stopped"

    def stop_after_the_first_pass(message: str) -> None:
        if message.startswith("pass 1 deep"):
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(recipe(text_data, stopped), progress=stop_after_the_first_pass)
    models = json.loads((stopped / "checkpoint" / "state.json").read_text())["models"]
    saved = stopped / "checkpoint" / "models" / models["deep"] / TRAINER_STATE
    with np.load(saved) as state:
        assert int(state["fits"]) == 1
        assert np.abs(state["optimizer/m/embedding"]).max() > 0  # Adam's slots, not zeros
        assert int(state["optimizer/updates"]) == 30
    result = fit(recipe(text_data, stopped), resume=True)
    assert [s["pass"] for s in result.steps] == [1, 2, 3]

    _, expected = load_weights(whole / "deep" / "models")
    _, resumed = load_weights(stopped / "deep" / "models")
    for name, value in expected.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
