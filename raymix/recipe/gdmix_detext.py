"""Translate a GDMix ``model_type: detext`` fixed effect (``detext-movieLens.yaml``) into a
raw ``deep`` coordinate (:class:`raymix.recipe.spec.DeepEffect`).

DeText's fields (``DetextArg``, gdmix-reference.md §5) fall in three groups:

* honoured: mapped one to one onto a DeepEffect field (``_RENAMED``) or onto the data;
* fixed: DeText options raymix's deep model implements for one value only (a CNN text
  encoder, a pointwise sigmoid loss on one class, ...). Any other value is an error naming
  the field and the value raymix supports;
* ignored: TF-job knobs (stats/eval cadence, checkpoints, the output dir set by the
  workflow, ...) type-checked and dropped.

Any other key is an error naming its path, as for the LR coordinates.
"""

from __future__ import annotations

import os

from raymix.errors import RecipeError
from raymix.recipe.gdmix_keys import GDMIX_KEYS, check_keys

# DeText field -> DeepEffect field.
_RENAMED = {
    "num_units": "embedding_size",
    "num_filters": "filters",
    "filter_window_sizes": "window_sizes",
    "num_hidden": "hidden",
    "learning_rate": "learning_rate",
    "num_train_steps": "steps",
    "train_batch_size": "batch_size",
    "max_len": "max_len",
    "min_len": "min_len",
    "random_seed": "seed",
}
# DeText options raymix implements for one value only.
_FIXED = {
    "ftr_ext": "cnn",
    "ltr_loss_fn": "pointwise",
    "num_classes": 1,
    "task_type": "binary_classification",
    "num_gpu": 0,
    "distribution_strategy": "one_device",
    "resume_training": False,
}
# TF-job knobs: type-checked, no meaning in raymix.
_IGNORED: dict[str, type | tuple[type, ...]] = {
    "pmetric": str,
    "all_metrics": (str, list),
    "steps_per_stats": int,
    "steps_per_eval": int,
    "test_batch_size": int,
    "keep_checkpoint_max": int,
    "out_dir": str,
    "test_file": str,
    "nums_sparse_ftrs": (int, list),
    "copy_to_local": bool,
}
_DATA = {"train_file", "dev_file", "metadata_file", "vocab_file", "gdmix_config"}
_COLUMNS = {"doc_text_column_names", "sparse_ftrs_column_names"}
_KNOWN = set(_RENAMED) | set(_FIXED) | set(_IGNORED) | _DATA | _COLUMNS | {"optimizer"}
_OPTIMIZERS = ("adam", "adamw", "sgd")


def detext_coordinate(name: str, spec: dict, where: str, source: str) -> dict:
    """The raw ``deep`` coordinate of the DeText fixed effect ``spec`` (at ``where``)."""
    check_keys(spec, _KNOWN, where, source)
    check_keys(spec.get("gdmix_config") or {}, GDMIX_KEYS, f"{where}.gdmix_config", source)

    def fail(field: str, message: str):
        raise RecipeError(f"{source}: {where}.{field}: {message}")

    for field, supported in _FIXED.items():
        if field in spec and spec[field] != supported:
            fail(field, f"raymix's DeText supports only {supported!r}. Got {spec[field]!r}")
    for field, kind in _IGNORED.items():
        value = spec.get(field)
        if value is not None and (
            not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
        ):
            fail(field, f"must be {_kind_name(kind)}. Got {spec[field]!r}")
    for field in ("train_file", "vocab_file"):
        if not spec.get(field):
            fail(field, "required field is missing")
    train = spec["train_file"]
    coordinate: dict = {
        "kind": "deep",
        "name": name,
        "vocab": spec["vocab_file"],
        "text_column": _one_column(spec, "doc_text_column_names", fail),
        "feature_bag": _one_column(spec, "sparse_ftrs_column_names", fail),
        "workers": 0,
        "data": {
            "train": train,
            "validation": spec.get("dev_file") or None,
            "format": "tfrecord",
            # DeText reads columns by name; raymix's TFRecord reader needs GDMix's metadata,
            # kept beside the data unless the config names it.
            "metadata": spec.get("metadata_file")
            or os.path.join(
                os.path.dirname(os.path.normpath(train)), "metadata", "tensor_metadata.json"
            ),
        },
    }
    if coordinate["text_column"] is None:
        fail("doc_text_column_names", "required field is missing")
    for field, target in _RENAMED.items():
        if field in spec:
            coordinate[target] = (
                _listed(spec[field]) if target in ("window_sizes", "hidden") else spec[field]
            )
    if "optimizer" in spec:
        optimizer = str(spec["optimizer"]).lower()
        if optimizer not in _OPTIMIZERS:
            fail("optimizer", f"must be one of {list(_OPTIMIZERS)}. Got {spec['optimizer']!r}")
        coordinate["optimizer"] = optimizer
    return coordinate


def _one_column(spec: dict, field: str, fail) -> str | None:
    """DeText's comma-separated column list; raymix's deep model takes one column."""
    value = spec.get(field)
    if value is None:
        return None
    names = [part.strip() for part in str(value).split(",") if part.strip()]
    if len(names) != 1:
        fail(field, f"raymix's DeText takes exactly one column. Got {value!r}")
    return names[0]


def _listed(value) -> list:
    """DeText's list fields: a YAML list, one int, or a comma-separated string."""
    if isinstance(value, str):
        value = [int(p) if p.strip().isdigit() else p for p in value.split(",") if p.strip()]
    values = value if isinstance(value, list) else [value]
    return [v for v in values if v != 0]  # DeText's num_hidden 0: no hidden layer


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {str: "a string", int: "an integer", bool: "true/false", list: "a list"}[k] for k in kinds
    )
