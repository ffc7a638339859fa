"""tensor_metadata.json and feature lists: refused before the output is touched."""

from __future__ import annotations

from raymix.data.metadata import write_feature_list

from .corpus import DIM, METADATA, case, rows, tfrecord


@case("plan", "metadata path that is a directory")
def metadata_is_a_directory(w, where):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    (where / "metadata").mkdir()
    recipe = w.recipe(where / "train", metadata=str(where / "metadata"))
    return recipe, [str(where / "metadata"), "cannot read metadata", "Is a directory"]


@case("plan", "metadata dtype that does not match the records")
def metadata_wrong_dtype(w, where):
    path = tfrecord(where / "train" / "part-0.tfrecord", rows())
    raw = METADATA.to_dict()
    raw["features"][3]["dtype"] = "string"  # user_id: long in the files
    recipe = w.recipe(where / "train", metadata=str(w.metadata(where, raw)))
    return recipe, [str(path), "row 0", "column 'user_id'", "int64_list", "dtype 'string'"]


@case("plan", "recipe names a feature bag the metadata lacks")
def bag_not_in_metadata(w, where):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    metadata = w.metadata(where)
    recipe = w.recipe(where / "train", metadata=str(metadata))
    recipe = recipe.model_copy(
        update={"coordinates": (recipe.coordinates[0].model_copy(update={"feature_bag": "globl"}),)}
    )
    return recipe, [str(metadata), "no feature bag 'globl'"]


@case("plan", "featureList length differs from the bag dimension")
def feature_list_length(w, where):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    path = where / "featureList" / "global"
    path.parent.mkdir()
    write_feature_list(path, [(f"f{k}", "") for k in range(DIM - 1)])
    recipe = w.recipe(
        where / "train", metadata=str(w.metadata(where)), feature_lists=str(path.parent)
    )
    return recipe, [str(path), f"{DIM - 1} entries", f"dimension {DIM}"]


def tfrecord_with(w, where, metadata):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    path = w.metadata(where, metadata)
    return w.recipe(where / "train", metadata=str(path)), path


@case("plan", "metadata file that does not exist")
def metadata_missing(w, where):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    path = where / "nope" / "tensor_metadata.json"
    return w.recipe(where / "train", metadata=str(path)), [str(path), "not found"]


@case("plan", "metadata that is not JSON")
def metadata_invalid_json(w, where):
    recipe, path = tfrecord_with(w, where, '{"features": [')
    return recipe, [str(path), "invalid JSON"]


@case("plan", "metadata whose top level is a list")
def metadata_top_level_list(w, where):
    recipe, path = tfrecord_with(w, where, "[]")
    return recipe, [str(path), "top level must be a JSON object"]


@case("plan", "metadata without its 'features' list")
def metadata_without_features(w, where):
    raw = METADATA.to_dict()
    raw.pop("features")
    recipe, path = tfrecord_with(w, where, raw)
    return recipe, [str(path), "missing the 'features' list"]


@case("plan", "metadata tensor with an unknown dtype")
def metadata_unknown_dtype(w, where):
    raw = METADATA.to_dict()
    raw["features"][1]["dtype"] = "complex"
    recipe, path = tfrecord_with(w, where, raw)
    return recipe, [str(path), "complex"]


@case("plan", "metadata tensor without a name")
def metadata_tensor_without_name(w, where):
    raw = METADATA.to_dict()
    raw["features"][2].pop("name")
    recipe, path = tfrecord_with(w, where, raw)
    return recipe, [str(path), "name"]


@case("plan", "featureList directory without the bag's file")
def feature_list_missing(w, where):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    (where / "featureList").mkdir()
    recipe = w.recipe(
        where / "train", metadata=str(w.metadata(where)), feature_lists=str(where / "featureList")
    )
    return recipe, [str(where / "featureList" / "global"), "no feature list for bag 'global'"]
