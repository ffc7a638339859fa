"""What GDMix's LR and DeText coordinates share: the ``gdmix_config`` block's keys and the
check that a config mapping holds only known keys (an error names the first unknown one)."""

from __future__ import annotations

from raymix.errors import RecipeError

GDMIX_KEYS = {
    "action",
    "stage",
    "model_type",
    "training_score_dir",
    "validation_score_dir",
    "partition_list_file",
    "uid_column_name",
    "weight_column_name",
    "label_column_name",
    "prediction_score_column_name",
    "prediction_score_per_coordinate_column_name",
}


def check_keys(mapping, allowed: set[str], where: str, source: str) -> None:
    if not isinstance(mapping, dict):
        raise RecipeError(f"{source}: {where or 'top level'}: must be a mapping")
    for key in mapping:
        if key not in allowed:
            path = f"{where}.{key}" if where else str(key)
            raise RecipeError(
                f"{source}: {path}: unknown GDMix config key (known here: {sorted(allowed)})"
            )
