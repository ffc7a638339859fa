"""GDMix DeText configs (``detext-movieLens.yaml``) translate field by field into a deep
coordinate; unsupported fields and values fail naming them."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from raymix import SGD, AdamW, RecipeError
from raymix.recipe.load import load_gdmix_config, load_recipe

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "recipes" / "detext-movieLens.yaml"


def config():
    return yaml.safe_load(CONFIG.read_text())


def global_fe(raw: dict) -> dict:
    return raw["fixed_effect_config"]["global"]


def test_movielens_detext_config_is_the_deep_recipe(monkeypatch):
    monkeypatch.setenv("RAYMIX_MOVIELENS", "data/movielens")
    translated = load_recipe(CONFIG)
    ours = load_recipe(REPO / "recipes" / "movielens_detext.py")
    assert [c.name for c in translated.coordinates] == ["global", "per-user", "per-movie"]
    assert translated.passes == 1
    deep, ref = translated.coordinates[0], ours.coordinates[0]
    assert deep.kind == "deep"
    fields = set(type(ref).model_fields) - {"data", "workers", "backend"}
    for field in sorted(fields):
        assert getattr(deep, field) == getattr(ref, field), field
    for a, b in zip(translated.coordinates[1:], ours.coordinates[1:], strict=True):
        for field in ("kind", "entity", "feature_bag", "task", "l2", "fit_intercept"):
            assert getattr(a, field) == getattr(b, field), (a.name, field)
    for a, b in zip(translated.coordinates, ours.coordinates, strict=True):
        da, db = translated.data_for(a), ours.data_for(b)
        assert (da.train, da.validation, da.metadata) == (db.train, db.validation, db.metadata)
    assert translated.columns.weight == "weight" and translated.columns.uid == "uid"


def test_every_honoured_field_reaches_the_deep_coordinate():
    raw = config()
    global_fe(raw).update(
        num_units=32,
        num_filters=7,
        filter_window_sizes="2,4",
        num_hidden=[16, 8],
        learning_rate=0.01,
        num_train_steps=20,
        train_batch_size=8,
        max_len=12,
        min_len=1,
        random_seed=5,
        optimizer="sgd",
        vocab_file="v.txt",
        train_file="a/train",
        dev_file="a/dev",
        metadata_file="m.json",
        doc_text_column_names="doc_query",
        sparse_ftrs_column_names="wide_ftrs_sp",
    )
    deep = load_gdmix_config(raw).coordinates[0]
    assert (deep.embedding_size, deep.filters, deep.window_sizes) == (32, 7, (2, 4))
    assert (deep.hidden, deep.learning_rate, deep.steps, deep.batch_size) == ((16, 8), 0.01, 20, 8)
    assert (deep.max_len, deep.min_len, deep.seed) == (12, 1, 5)
    assert isinstance(deep.optimizer, SGD)
    assert (deep.vocab, deep.text_column, deep.feature_bag) == (
        "v.txt",
        "doc_query",
        "wide_ftrs_sp",
    )
    assert (deep.data.train, deep.data.validation, deep.data.metadata) == (
        "a/train",
        "a/dev",
        "m.json",
    )
    assert deep.workers == 0


def test_detext_defaults_and_derived_fields():
    raw = config()
    fe = global_fe(raw)
    for key in ("optimizer", "num_units", "sparse_ftrs_column_names", "dev_file"):
        del fe[key]
    fe["num_hidden"] = 0  # DeText's default: no hidden layer
    deep = load_gdmix_config(raw).coordinates[0]
    assert isinstance(deep.optimizer, AdamW) and deep.embedding_size == 64 and deep.hidden == ()
    assert deep.feature_bag is None and deep.data.validation is None
    # no metadata_file: GDMix's metadata beside the data directory
    assert deep.data.metadata == "data/movielens/detext/metadata/tensor_metadata.json"


def test_tf_job_knobs_are_ignored():
    raw = config()
    plain = load_gdmix_config(copy.deepcopy(raw)).coordinates[0]
    global_fe(raw).update(
        pmetric="ndcg@10",
        all_metrics=["auc"],
        steps_per_stats=1,
        steps_per_eval=3,
        test_batch_size=3,
        keep_checkpoint_max=9,
        out_dir="elsewhere",
        test_file="t",
        nums_sparse_ftrs=[10],
        copy_to_local=True,
    )
    assert load_gdmix_config(raw).coordinates[0] == plain


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("ftr_ext", "bert", "supports only 'cnn'. Got 'bert'"),
        ("ltr_loss_fn", "softmax", "supports only 'pointwise'"),
        ("num_classes", 3, "supports only 1"),
        ("task_type", "ranking", "supports only 'binary_classification'"),
        ("num_gpu", 1, "supports only 0"),
        ("distribution_strategy", "multi_worker_mirrored", "supports only 'one_device'"),
        ("resume_training", True, "supports only False"),
        ("optimizer", "lamb", "must be one of ['adam', 'adamw', 'sgd']. Got 'lamb'"),
        ("doc_text_column_names", "title,body", "takes exactly one column"),
        ("sparse_ftrs_column_names", "a,b", "takes exactly one column"),
        ("steps_per_eval", "often", "must be an integer. Got 'often'"),
        ("keep_checkpoint_max", True, "must be an integer"),
        ("out_dir", 3, "must be a string"),
        ("num_filterz", 3, "unknown GDMix config key"),
    ],
)
def test_unsupported_fields_and_values_name_the_field(field, value, expected):
    raw = config()
    global_fe(raw)[field] = value
    with pytest.raises(RecipeError, match=re.escape(f"fixed_effect_config.global.{field}: ")) as e:
        load_gdmix_config(raw)
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("field", ["train_file", "vocab_file", "doc_text_column_names"])
def test_required_fields(field):
    raw = config()
    del global_fe(raw)[field]
    with pytest.raises(RecipeError, match=f"global.{field}: required field is missing"):
        load_gdmix_config(raw)


def test_invalid_values_fail_in_validation():
    raw = config()
    global_fe(raw)["num_filters"] = 0
    with pytest.raises(RecipeError, match="filters"):
        load_gdmix_config(raw)


def test_detext_random_effect_is_refused():
    raw = config()
    raw["random_effect_config"]["per-user"]["gdmix_config"] = {"model_type": "detext"}
    with pytest.raises(RecipeError, match="per-user.gdmix_config.model_type: 'detext' is a fixed"):
        load_gdmix_config(raw)


def test_unknown_gdmix_config_key_in_a_detext_effect():
    raw = config()
    global_fe(raw)["gdmix_config"] = {"model_type": "detext", "label_colum_name": "y"}
    with pytest.raises(RecipeError, match="global.gdmix_config.label_colum_name: unknown"):
        load_gdmix_config(raw)
