"""GDMix configs (YAML/JSON): each fails while translating, naming the file and the key."""

from __future__ import annotations

import json

import yaml

from raymix import RecipeError

from .corpus import REPO, Load, case

CONFIG = REPO / "recipes" / "lr-movieLens.yaml"
DETEXT = REPO / "recipes" / "detext-movieLens.yaml"


def gdmix(where, change, name: str = "lr.yaml"):
    """GDMix's movieLens config after ``change(config)``, written as YAML."""
    config = yaml.safe_load(CONFIG.read_text())
    change(config)
    path = where / name
    path.write_text(json.dumps(config, indent=1))
    return path


def fixed(config) -> dict:
    return config["fixed_effect_config"]["global"]


def per_user(config) -> dict:
    return config["random_effect_config"]["per-user"]


@case("recipe", "GDMix config with an unknown key", RecipeError, cli=True)
def gdmix_unknown_key(w, where):
    text = CONFIG.read_text()
    path = where / "lr.yaml"
    path.write_text(text.replace('"l2_reg_weight": 1.0,', '"l2_reg_weigth": 1.0,', 1))
    return path, [str(path), "fixed_effect_config.global.l2_reg_weigth: unknown GDMix config key"]


@case("recipe", "GDMix config without output_dir", RecipeError)
def gdmix_no_output_dir(w, where):
    path = gdmix(where, lambda c: c.pop("output_dir"))
    return Load(path), [str(path), "output_dir: required field is missing"]


@case("recipe", "GDMix config with two fixed effects", RecipeError)
def gdmix_two_fixed_effects(w, where):
    path = gdmix(where, lambda c: c["fixed_effect_config"].update(other=dict(fixed(c))))
    return Load(path), [str(path), "fixed_effect_config: must hold exactly one entry"]


@case("recipe", "GDMix config whose random_effect_config is a list", RecipeError)
def gdmix_random_effects_list(w, where):
    def listed(c):
        c["random_effect_config"] = list(c["random_effect_config"].values())

    path = gdmix(where, listed)
    return Load(path), [str(path), "random_effect_config: must be a mapping"]


@case("recipe", "GDMix random effect that is not a mapping", RecipeError)
def gdmix_random_effect_scalar(w, where):
    path = gdmix(where, lambda c: c["random_effect_config"].update({"per-user": 3}))
    return Load(path), [str(path), "random_effect_config.per-user: must be a mapping"]


@case("recipe", "GDMix config reading Avro data", RecipeError)
def gdmix_avro_format(w, where):
    path = gdmix(where, lambda c: fixed(c).update(data_format="avro"))
    return Load(path), [str(path), "fixed_effect_config.global.data_format", "'tfrecord'"]


@case("recipe", "GDMix fixed effect without training_data_dir", RecipeError)
def gdmix_no_training_dir(w, where):
    path = gdmix(where, lambda c: fixed(c).pop("training_data_dir"))
    return Load(path), [str(path), "fixed_effect_config.global.training_data_dir: required"]


@case("recipe", "GDMix random effect without partition_entity", RecipeError)
def gdmix_no_partition_entity(w, where):
    path = gdmix(where, lambda c: per_user(c).pop("partition_entity"))
    return Load(path), [str(path), "random_effect_config.per-user.partition_entity: required"]


@case("recipe", "GDMix model_type that raymix does not know", RecipeError)
def gdmix_unknown_model_type(w, where):
    path = gdmix(where, lambda c: fixed(c).update(gdmix_config={"model_type": "svm"}))
    return Load(path), [str(path), "fixed_effect_config.global.gdmix_config.model_type", "'svm'"]


@case("recipe", "GDMix DeText fixed effect with LR fields", RecipeError)
def gdmix_detext_with_lr_fields(w, where):
    path = gdmix(where, lambda c: fixed(c).update(gdmix_config={"model_type": "detext"}))
    return Load(path), [str(path), "fixed_effect_config.global.training_data_dir: unknown"]


@case("recipe", "GDMix DeText config with a text encoder raymix lacks", RecipeError, cli=True)
def gdmix_detext_unsupported_value(w, where):
    config = yaml.safe_load(DETEXT.read_text())
    config["fixed_effect_config"]["global"]["ftr_ext"] = "bert"
    path = where / "detext.yaml"
    path.write_text(json.dumps(config, indent=1))
    return path, [str(path), "fixed_effect_config.global.ftr_ext", "'cnn'", "'bert'"]


@case("recipe", "GDMix config with an unknown top-level section", RecipeError)
def gdmix_unknown_section(w, where):
    path = gdmix(where, lambda c: c.update(spark_conf={}))
    return Load(path), [str(path), "spark_conf: unknown GDMix config key"]


@case("recipe", "GDMix spark_config with an unknown key", RecipeError)
def gdmix_unknown_spark_key(w, where):
    path = gdmix(where, lambda c: c["spark_config"].update(executorGPUs=1))
    return Load(path), [str(path), "spark_config.executorGPUs: unknown GDMix config key"]


@case("recipe", "GDMix negative l2_reg_weight", RecipeError)
def gdmix_negative_l2(w, where):
    path = gdmix(where, lambda c: per_user(c).update(l2_reg_weight=-2.0))
    return Load(path), [str(path), "per-user.l2", "-2.0"]


@case("recipe", "GDMix config that is not valid YAML", RecipeError)
def gdmix_yaml_syntax(w, where):
    path = where / "lr.yaml"
    path.write_text('{"output_dir": "out", "fixed_effect_config": {"global": [}\n')
    return Load(path), [str(path), "cannot parse"]


@case("recipe", "GDMix config whose top level is a list", RecipeError)
def gdmix_top_level_list(w, where):
    path = where / "lr.yaml"
    path.write_text("- output_dir: out\n")
    return Load(path), [str(path), "the top level must be a mapping"]


@case("recipe", "GDMix config with zero L-BFGS iterations", RecipeError)
def gdmix_zero_iterations(w, where):
    path = gdmix(where, lambda c: fixed(c).update(num_of_lbfgs_iterations=0))
    return Load(path), [str(path), "global.solver.max_iter", "greater than 0"]
