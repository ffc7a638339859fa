"""Search spaces: keys are dotted recipe paths, checked before anything starts (no Ray)."""

from pathlib import Path

import pytest
from ray import tune

from raymix import Data, FixedEffect, RandomEffect, Recipe
from raymix.cli import main
from raymix.errors import RecipeError
from raymix.tune.space import (
    SearchSpace,
    apply_config,
    check_searcher,
    check_space,
    load_space,
    needs_new_data,
)

REPO = Path(__file__).resolve().parents[2]


def recipe() -> Recipe:
    return Recipe(
        data=Data(train="train", validation="validation"),
        coordinates=[
            FixedEffect(name="global", feature_bag="global"),
            RandomEffect(name="per-user", entity="user_id", feature_bag="per_user"),
        ],
        output="out",
    )


def test_apply_config_sets_fields_by_dotted_path_and_coordinate_name():
    r = apply_config(recipe(), {"coordinates.per-user.l2": 3.5, "passes": 2})
    assert r.coordinate("per-user").l2 == 3.5 and r.passes == 2
    assert r.coordinate("global").l2 == 1.0


def test_unknown_key_or_bad_value_fails_naming_the_key():
    with pytest.raises(RecipeError, match="coordinates.per-user.l3"):
        check_space(recipe(), SearchSpace({"coordinates.per-user.l3": tune.uniform(0, 1)}))
    with pytest.raises(RecipeError, match="no entry 'per-item'"):
        check_space(recipe(), SearchSpace({"coordinates.per-item.l2": tune.uniform(0, 1)}))
    with pytest.raises(RecipeError, match="'coordinates.global.l2' = -1"):
        check_space(recipe(), SearchSpace({"coordinates.global.l2": tune.choice([-1, 1])}))


def test_settings_are_validated_with_the_valid_choices():
    with pytest.raises(
        RecipeError, match=r"searcher must be one of \['random', 'grid', 'optuna'\]"
    ):
        SearchSpace({"passes": 1}, searcher="bayes")
    with pytest.raises(RecipeError, match="metric must be one of"):
        SearchSpace({"passes": 1}, metric="accuracy")


def test_hyper_parameters_reuse_the_data_but_data_fields_do_not():
    base = recipe()
    hot = apply_config(
        base,
        {
            "coordinates.global.l2": 10.0,
            "coordinates.per-user.regularize_intercept": True,
            "coordinates.per-user.solver": {"kind": "newton", "max_iter": 5},
            "passes": 3,
        },
    )
    assert needs_new_data(base, hot) is None
    for key, value in [
        ("coordinates.per-user.min_samples", 3),
        ("coordinates.per-user.feature_bag", "other"),
        ("coordinates.global.fit_intercept", False),
        ("data.train", "elsewhere"),
        ("seed", 1),
    ]:
        assert needs_new_data(base, apply_config(base, {key: value})) == key


def test_the_movielens_space_file_loads():
    space = load_space(REPO / "tune" / "movielens_l2.py")
    assert "coordinates.per-movie.l2" in space.space
    assert space.searcher == "optuna" and space.scheduler == "asha"


def test_cli_tune_with_a_missing_space_file_is_a_one_line_error(tmp_path, capsys):
    code = main(["tune", str(REPO / "recipes" / "movielens_lr.py"), "--search", "nope.py"])
    assert code == 2
    assert "search space file not found: nope.py" in capsys.readouterr().err


def test_resume_needs_the_same_recipe_and_space_and_a_new_search_an_empty_output(tmp_path):
    from raymix.tune.search import _prepare_out

    def space(values):
        return SearchSpace({"passes": tune.choice(values), "coordinates.global.l2": 2.0})

    _prepare_out(tmp_path, recipe(), space([1, 2]), resume=False, overwrite=False)
    (tmp_path / "experiment").mkdir()
    # equal domains built anew (a new process) are the same space
    _prepare_out(tmp_path, recipe(), space([1, 2]), resume=True, overwrite=False)
    with pytest.raises(RecipeError, match="the space differs"):
        _prepare_out(tmp_path, recipe(), space([1, 3]), resume=True, overwrite=False)
    other = recipe().model_copy(update={"seed": 3})
    with pytest.raises(RecipeError, match="the recipe differs"):
        _prepare_out(tmp_path, other, space([1, 2]), resume=True, overwrite=False)
    with pytest.raises(RecipeError, match="is not empty"):
        _prepare_out(tmp_path, recipe(), space([1, 2]), resume=False, overwrite=False)
    _prepare_out(tmp_path, recipe(), space([1, 3]), resume=False, overwrite=True)
    assert not (tmp_path / "experiment").exists()
    plain_dir = tmp_path.parent / "someone-elses"
    plain_dir.mkdir()
    (plain_dir / "notes.txt").write_text("keep me")
    with pytest.raises(RecipeError, match="only replaces a previous search"):
        _prepare_out(plain_dir, recipe(), space([1, 2]), resume=False, overwrite=True)
    assert (plain_dir / "notes.txt").read_text() == "keep me"


def test_random_effect_l2_is_a_number_or_auto():
    r = apply_config(recipe(), {"coordinates.per-user.l2": "auto"})
    assert r.coordinate("per-user").l2 == "auto"
    with pytest.raises(RecipeError, match="l2 must be a number >= 0 or 'auto'. Got 'atuo'"):
        apply_config(recipe(), {"coordinates.per-user.l2": "atuo"})
    with pytest.raises(RecipeError, match="coordinates.global.l2"):  # fixed effects: numbers
        apply_config(recipe(), {"coordinates.global.l2": "auto"})


def test_a_missing_searcher_package_fails_before_anything_starts():
    space = SearchSpace(space={"passes": [1, 2]}, searcher="optuna")
    with pytest.raises(RecipeError, match="searcher 'optuna' needs Optuna: pip install"):
        check_searcher(space, installed=lambda name: False)
    check_searcher(space, installed=lambda name: name == "optuna")
    check_searcher(SearchSpace(space={"passes": [1, 2]}, searcher="random"), lambda name: False)
