"""Translate a GDMix workflow config (``lr-movieLens.yaml`` style) into a raw raymix recipe.

Every field GDMix's code accepts is known here (gdmix-reference.md §5). Fields that steer
GDMix's own machinery (Spark executors, TF server retries, consumer queues, ...) have no
meaning in raymix and are accepted and ignored; anything else unknown is an error naming
its path in the config, never silently dropped.

The translation is a plain dict in the recipe's shape; :mod:`raymix.recipe.load` applies
the ``--set`` overrides to it and validates it, once, as it does every recipe.
"""

from __future__ import annotations

import os
from typing import Any

from raymix.errors import RecipeError
from raymix.recipe.gdmix_detext import detext_coordinate
from raymix.recipe.gdmix_keys import GDMIX_KEYS, check_keys

_TOP = {"output_dir", "fixed_effect_config", "random_effect_config", "spark_config", "tfjob_config"}
_SPARK = {"executorInstances", "executorCores", "driverMemory", "executorMemory"}
_TFJOB = {
    "workerType",
    "needChief",
    "psNum",
    "evaluatorNum",
    "workerNum",
    "memorySize",
    "ttlSecondsAfterFinished",
    "tfjobTimeoutMinutes",
    "deleteAfterDone",
}
_LR = {
    "metadata_file",
    "output_model_dir",
    "training_data_dir",
    "validation_data_dir",
    "feature_bag",
    "feature_file",
    "regularize_bias",
    "l2_reg_weight",
    "lbfgs_tolerance",
    "num_of_lbfgs_curvature_pairs",
    "num_of_lbfgs_iterations",
    "has_intercept",
    "offset_column_name",
    "batch_size",
    "data_format",
    "gdmix_config",
}
_FE_ONLY = {
    "copy_to_local",
    "num_server_creation_retries",
    "retry_interval",
    "delayed_exit_in_seconds",
    "disable_fixed_effect_scoring_after_training",
    "fixed_effect_variance_mode",
}
_RE_ONLY = {
    "partition_entity",
    "enable_local_indexing",
    "max_training_queue_size",
    "training_queue_timeout_in_seconds",
    "num_of_consumers",
    "random_effect_variance_mode",
    "disable_random_effect_scoring_after_training",
    "num_partitions",
}
# GDMix's code defaults (they override its docs: gdmix-reference.md §5).
_DEFAULTS = {
    "regularize_bias": True,
    "l2_reg_weight": 1.0,
    "lbfgs_tolerance": 1e-12,
    "num_of_lbfgs_curvature_pairs": 10,
    "num_of_lbfgs_iterations": 100,
    "has_intercept": True,
}


def translate_gdmix_config(config: dict, source: str = "gdmix config") -> dict[str, Any]:
    """The raw recipe (not validated yet) equivalent to a parsed GDMix config: one
    coordinate-descent pass. ``source`` (the config file) prefixes every message."""
    check_keys(config, _TOP, "", source)
    for section, allowed in (("spark_config", _SPARK), ("tfjob_config", _TFJOB)):
        if section in config:
            check_keys(config[section] or {}, allowed, section, source)
    if "output_dir" not in config:
        raise RecipeError(f"{source}: output_dir: required field is missing")
    fixed = config.get("fixed_effect_config")
    if not isinstance(fixed, dict) or len(fixed) != 1:
        raise RecipeError(f"{source}: fixed_effect_config: must hold exactly one entry")
    fe_name, fe = next(iter(fixed.items()))
    coordinates = [_coordinate(fe_name, fe, "fixed_effect_config", source, random=False)]
    random = config.get("random_effect_config") or {}
    if not isinstance(random, dict):
        raise RecipeError(f"{source}: random_effect_config: must be a mapping")
    for name, re in random.items():
        coordinates.append(_coordinate(name, re, "random_effect_config", source, random=True))
    schema = (fe.get("gdmix_config") or {}) if isinstance(fe, dict) else {}
    columns = {
        "uid": schema.get("uid_column_name", "uid"),
        "label": schema.get("label_column_name", "response"),
        "weight": schema.get("weight_column_name"),
        "offset": fe.get("offset_column_name") or None,
    }
    raw = {
        "name": "gdmix",
        "data": coordinates[0]["data"],
        "columns": columns,
        "coordinates": coordinates,
        "passes": 1,
        "output": config["output_dir"],
    }
    return raw


def _coordinate(name: str, spec, section: str, source: str, random: bool) -> dict:
    where = f"{section}.{name}"
    if not isinstance(spec, dict):
        raise RecipeError(f"{source}: {where}: must be a mapping")
    model_type = (spec.get("gdmix_config") or {}).get("model_type", "logistic_regression")
    if model_type == "detext":
        if random:
            raise RecipeError(
                f"{source}: {where}.gdmix_config.model_type: 'detext' is a fixed effect only"
            )
        return detext_coordinate(name, spec, where, source)
    allowed = _LR | (_RE_ONLY if random else _FE_ONLY)
    check_keys(spec, allowed, where, source)
    check_keys(spec.get("gdmix_config") or {}, GDMIX_KEYS, f"{where}.gdmix_config", source)
    if model_type not in ("logistic_regression", "linear_regression"):
        raise RecipeError(
            f"{source}: {where}.gdmix_config.model_type: must be one of "
            f"['detext', 'linear_regression', 'logistic_regression']. Got '{model_type}'"
        )
    if spec.get("data_format", "tfrecord") != "tfrecord":
        raise RecipeError(f"{source}: {where}.data_format: GDMix only reads 'tfrecord'")
    if "training_data_dir" not in spec:
        raise RecipeError(f"{source}: {where}.training_data_dir: required field is missing")
    value = {**_DEFAULTS, **spec}
    feature_file = spec.get("feature_file")
    data = {
        "train": spec["training_data_dir"],
        "validation": spec.get("validation_data_dir") or None,
        "format": "tfrecord",
        "metadata": spec.get("metadata_file"),
        "feature_lists": feature_file,
    }
    coordinate = {
        "kind": "random_effect" if random else "fixed_effect",
        "name": name,
        "data": data,
        "feature_bag": spec.get("feature_bag"),
        "task": "linear" if model_type == "linear_regression" else "logistic",
        "l2": value["l2_reg_weight"],
        "fit_intercept": value["has_intercept"],
        "regularize_intercept": value["regularize_bias"] and value["has_intercept"],
    }
    variance = spec.get("random_effect_variance_mode" if random else "fixed_effect_variance_mode")
    if variance:
        coordinate["variance"] = str(variance).lower()
    if random:
        if "partition_entity" not in spec:
            raise RecipeError(f"{source}: {where}.partition_entity: required field is missing")
        coordinate["entity"] = spec["partition_entity"]
        coordinate["solver"] = {"kind": "newton", "max_iter": value["num_of_lbfgs_iterations"]}
    else:
        coordinate["solver"] = {
            "kind": "lbfgs",
            "max_iter": value["num_of_lbfgs_iterations"],
            "history": value["num_of_lbfgs_curvature_pairs"],
            "tolerance": value["lbfgs_tolerance"],
        }
    if spec.get("output_model_dir") and os.path.isdir(spec["output_model_dir"]):
        coordinate["warm_start"] = spec["output_model_dir"]
    return coordinate
