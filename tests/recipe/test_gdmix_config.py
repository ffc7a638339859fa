import re
from pathlib import Path

import pytest
import yaml

from raymix import RecipeError
from raymix.recipe.gdmix_config import translate_gdmix_config
from raymix.recipe.load import load_gdmix_config, load_recipe

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "recipes" / "lr-movieLens.yaml"


def config():
    return yaml.safe_load(CONFIG.read_text())


def test_gdmix_movielens_config_translates_to_the_movielens_recipe(monkeypatch):
    monkeypatch.setenv("RAYMIX_MOVIELENS", "data/movielens")
    translated = load_recipe(CONFIG)
    ours = load_recipe(REPO / "recipes" / "movielens_lr.py")
    assert [c.name for c in translated.coordinates] == ["global", "per-user", "per-movie"]
    assert translated.passes == 1
    for a, b in zip(translated.coordinates, ours.coordinates, strict=True):
        for field in (
            "kind",
            "feature_bag",
            "task",
            "l2",
            "l1",
            "fit_intercept",
            "regularize_intercept",
        ):
            assert getattr(a, field) == getattr(b, field), (a.name, field)
        da, db = translated.data_for(a), ours.data_for(b)
        assert (da.train, da.validation, da.metadata) == (db.train, db.validation, db.metadata)
    fe = translated.coordinates[0]
    assert (fe.solver.max_iter, fe.solver.history, fe.solver.tolerance) == (100, 10, 1e-12)
    assert translated.coordinates[1].entity == "user_id"
    assert translated.columns.weight == "weight" and translated.columns.label == "response"


@pytest.mark.parametrize(
    "path, key",
    [
        (("fixed_effect_config", "global"), "l2_reg_wieght"),
        (("random_effect_config", "per-user"), "partition_entty"),
        (("random_effect_config", "per-user", "gdmix_config"), "uid_colum_name"),
        (("tfjob_config",), "workerNumber"),
        ((), "outputdir"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(path, key):
    raw = config()
    node = raw
    for part in path:
        node[part] = dict(node[part])  # YAML anchors share one dict between coordinates
        node = node[part]
    node[key] = 1
    expected = ".".join([*path, key])
    with pytest.raises(RecipeError, match=expected.replace(".", r"\.")):
        load_gdmix_config(raw)


def test_fe_only_key_in_random_effect_is_unknown():
    raw = config()
    raw["random_effect_config"]["per-user"]["copy_to_local"] = True
    with pytest.raises(RecipeError, match=r"per-user\.copy_to_local"):
        load_gdmix_config(raw)


def test_gdmix_code_defaults_apply():
    raw = config()
    del raw["fixed_effect_config"]["global"]["regularize_bias"]
    del raw["fixed_effect_config"]["global"]["l2_reg_weight"]
    fe = load_gdmix_config(raw).coordinates[0]
    assert fe.regularize_intercept is True  # GDMix's code default (its doc says false)
    assert fe.l2 == 1.0


def test_structural_errors():
    raw = config()
    raw["fixed_effect_config"]["other"] = raw["fixed_effect_config"]["global"]
    with pytest.raises(RecipeError, match="exactly one entry"):
        load_gdmix_config(raw)
    raw = config()
    del raw["random_effect_config"]["per-movie"]["partition_entity"]
    with pytest.raises(RecipeError, match="partition_entity: required"):
        load_gdmix_config(raw)
    raw = config()
    raw["fixed_effect_config"]["global"]["gdmix_config"] = {"model_type": "xgboost"}
    with pytest.raises(RecipeError, match="model_type"):
        load_gdmix_config(raw)


def test_the_translation_is_a_raw_recipe_validated_once_after_the_overrides(tmp_path):
    raw = config()
    raw["fixed_effect_config"]["global"] = dict(raw["fixed_effect_config"]["global"])
    raw["fixed_effect_config"]["global"]["l2_reg_weight"] = -1.0
    translated = translate_gdmix_config(raw)  # a plain dict, nothing validated yet
    assert isinstance(translated, dict)
    assert [c["l2"] for c in translated["coordinates"]] == [-1.0, 1.0, 1.0]
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError, match=re.escape(f"{path}: coordinates.global.l2: ")):
        load_recipe(path)
    assert load_recipe(path, ["coordinates.global.l2=0.5"]).coordinate("global").l2 == 0.5
