"""Bad input never corrupts output: a corpus of bad inputs, each failing with one clear message.

Every case builds its bad input from a small good data set (Parquet written with pyarrow,
TFRecord with ``write_tfrecord_file``: no binary fixtures) and runs it as a user would:
loading the recipe file, or ``raymix.run.fit(recipe, overwrite=True)`` into an output
directory that holds a real previous run. Each case checks that

1. it raises one RaymixError whose one-line message names the file (and the row, column or
   field) and says what is wrong;
2. the previous run in the output directory is byte-for-byte intact: a case found before the
   output is touched ("plan") leaves nothing else behind; a case found only while reading
   ("read") restores the previous run and keeps the failed run's partial outputs in a hidden
   ``.NAME.failed-PID`` sibling, and says so;
3. a representative subset exits from ``python -m raymix.cli fit`` with code 2 and exactly one
   ``raymix: error:`` line, no traceback.

``RAYMIX_BAD_INPUTS_DOC=docs/bad-inputs.md python -m pytest tests/bad_inputs`` rewrites the
table of cases and their messages in ``docs/bad-inputs.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymix import (
    Columns,
    Data,
    DataError,
    FixedEffect,
    RandomEffect,
    RaymixError,
    Recipe,
    RecipeError,
    Resources,
)
from raymix.data.metadata import Metadata, TensorSpec, write_feature_list
from raymix.data.tfrecord.tables import write_tfrecord_file
from raymix.recipe.load import load_recipe
from raymix.run import fit

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray]

DIM = 5  # dimension of the feature bag 'global'
METADATA = Metadata(
    features=(
        TensorSpec("global", "float", (DIM,), True),
        TensorSpec("uid", "long"),
        TensorSpec("weight", "float"),
        TensorSpec("user_id", "long"),
    ),
    labels=(TensorSpec("response", "int"),),
)
SMALL = Resources(actors=1, buckets=1)


# ----------------------------------------------------------------------------- good data


def rows(n: int = 20, uid0: int = 0, seed: int = 0) -> pa.Table:
    """n good rows in raymix's row convention (sparse bag 'global' of dimension DIM)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, DIM - 1, n)
    return pa.table(
        {
            "uid": pa.array(np.arange(uid0, uid0 + n), pa.int64()),
            "response": pa.array(np.arange(n) % 2, pa.int64()),
            "weight": pa.array(np.ones(n), pa.float32()),
            "user_id": pa.array(np.arange(n) % 3, pa.int64()),
            "global_indices": pa.array([[int(f), DIM - 1] for f in first], pa.list_(pa.int64())),
            "global_values": pa.array(
                [[float(v), 1.0] for v in rng.normal(size=n)], pa.list_(pa.float32())
            ),
        }
    )


def replace(table: pa.Table, name: str, array) -> pa.Table:
    """``table`` with column ``name`` replaced (or appended) by ``array``."""
    array = array if isinstance(array, pa.Array | pa.ChunkedArray) else pa.array(array)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, array)
    return table.append_column(name, array)


def set_value(table: pa.Table, name: str, row: int, value) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    return replace(table, name, pa.array(values, table.column(name).type))


def parquet(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def tfrecord(path: Path, table: pa.Table, columns=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tfrecord_file(table, path, METADATA, columns)
    return path


def files_of(directory: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``directory``."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@dataclass
class World:
    """The shared workspace: good data, and OUT holding a real previous run."""

    root: Path
    out: Path
    previous: dict[str, str]

    def case_dir(self, case_id: str) -> Path:
        path = self.root / "cases" / case_id
        path.mkdir(parents=True)
        return path

    def metadata(self, where: Path, metadata: Metadata | dict = METADATA) -> Path:
        path = where / "metadata" / "tensor_metadata.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(metadata) if isinstance(metadata, dict) else metadata.to_json()
        path.write_text(text)
        return path

    def recipe(self, train, *, coordinate: str = "re", columns=None, **data) -> Recipe:
        """A recipe writing to OUT: one random effect (``re``), fixed effect (``fe``) or both."""
        fe = FixedEffect(name="global", feature_bag="global")
        re_ = RandomEffect(name="per-user", entity="user_id", feature_bag="global")
        coordinates = {"re": [re_], "fe": [fe], "both": [fe, re_]}[coordinate]
        train = str(train) if isinstance(train, Path) else tuple(str(t) for t in train)
        return Recipe(
            data=Data(train=train, **data),
            columns=columns or Columns(),
            coordinates=coordinates,
            output=str(self.out),
            resources=SMALL,
        )


@pytest.fixture(scope="module")
def world(ray_session, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("bad-inputs")
    good = root / "good"
    parquet(good / "train" / "part-0.parquet", rows(20, 0, 0))
    parquet(good / "train" / "part-1.parquet", rows(20, 20, 1))
    parquet(good / "validation" / "part-0.parquet", rows(20, 1000, 2))
    w = World(root, root / "out", {})
    ROOTS.append(str(root))
    fit(w.recipe(good / "train", coordinate="both", validation=str(good / "validation")))
    w.previous = files_of(w.out)
    assert "run.json" in w.previous and "per-user/models/part-00000.avro" in w.previous
    return w


# ----------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    stage: str  # "recipe": load_recipe fails; "plan": fit fails before OUT is touched;
    #            "read": fit fails while reading, after OUT was prepared
    build: Callable[[World, Path], tuple]  # -> (recipe or recipe file, message fragments)
    error: type[RaymixError] = DataError
    cli: bool = False


CASES: list[Case] = []


def case(stage: str, what: str, error: type[RaymixError] = DataError, cli: bool = False):
    def register(build):
        CASES.append(Case(build.__name__.replace("_", "-"), what, stage, build, error, cli))
        return build

    return register


# --- recipes and configs ------------------------------------------------------


@case("recipe", "recipe (.py) with a misspelt field", RecipeError, cli=True)
def misspelt_field_py(w, where):
    path = where / "recipe.py"
    path.write_text(
        "from raymix import Data, FixedEffect, Recipe\n"
        "recipe = Recipe(\n"
        "    data=Data(train='train'),\n"
        "    coordinates=[FixedEffect(name='global', feature_bagg='global')],\n"
        "    output='out',\n"
        ")\n"
    )
    return path, [f"{path} line 4", "FixedEffect.feature_bagg: unknown field"]


@case("recipe", "run.json with a misspelt field", RecipeError)
def misspelt_field_json(w, where):
    raw = json.loads(w.recipe("train").model_dump_json())
    raw["coordinates"][0]["l3"] = 0.5
    path = where / "run.json"
    path.write_text(json.dumps(raw))
    return path, [str(path), "coordinates.per-user.l3: unknown field"]


@case("recipe", "unknown coordinate kind", RecipeError)
def unknown_coordinate_kind(w, where):
    raw = json.loads(w.recipe("train").model_dump_json())
    raw["coordinates"][0]["kind"] = "random_efect"
    path = where / "run.json"
    path.write_text(json.dumps(raw))
    return path, [str(path), "coordinates.per-user", "'random_efect'", "'random_effect'"]


@case("recipe", "GDMix config with an unknown key", RecipeError, cli=True)
def gdmix_unknown_key(w, where):
    text = (REPO / "recipes" / "lr-movieLens.yaml").read_text()
    path = where / "lr.yaml"
    path.write_text(text.replace('"l2_reg_weight": 1.0,', '"l2_reg_weigth": 1.0,', 1))
    return path, [str(path), "fixed_effect_config.global.l2_reg_weigth: unknown GDMix config key"]


# --- paths ----------------------------------------------------------------------


@case("plan", "training directory with no data files")
def empty_directory(w, where):
    (where / "train").mkdir()
    (where / "train" / "README").write_text("nothing here")
    return w.recipe(where / "train"), [str(where / "train"), "data.train", "no data files"]


@case("plan", "data file that is a broken symbolic link", cli=True)
def broken_symlink(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    link = where / "train" / "part-1.parquet"
    link.symlink_to(where / "gone.parquet")
    return w.recipe(where / "train"), [str(link), "broken symbolic link", "gone.parquet"]


@case("plan", "metadata path that is a directory")
def metadata_is_a_directory(w, where):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    (where / "metadata").mkdir()
    recipe = w.recipe(where / "train", metadata=str(where / "metadata"))
    return recipe, [str(where / "metadata"), "cannot read metadata", "Is a directory"]


@case("plan", "not a Parquet file (garbage bytes)")
def parquet_garbage(w, where):
    path = where / "train" / "part-0.parquet"
    path.parent.mkdir()
    path.write_bytes(b"PAR1 this is not parquet at all" * 3)
    return w.recipe(where / "train"), [str(path), "not a readable Parquet file"]


# --- Parquet schemas ----------------------------------------------------------------


@case("plan", "Parquet label column of strings", cli=True)
def parquet_label_string(w, where):
    table = rows()
    table = replace(
        table, "response", pa.array([str(v) for v in table.column("response").to_pylist()])
    )
    parquet(where / "train" / "part-0.parquet", rows(20, 100))
    path = parquet(where / "train" / "part-1.parquet", table)
    return w.recipe(where / "train"), [str(path), "column 'response'", "string", "numbers"]


@case("plan", "Parquet feature values as strings")
def parquet_values_string(w, where):
    table = rows()
    strings = [[str(v) for v in row] for row in table.column("global_values").to_pylist()]
    path = parquet(where / "train" / "part-0.parquet", replace(table, "global_values", strings))
    fragments = [str(path), "column 'global_values'", "string", "expected lists of numbers"]
    return w.recipe(where / "train"), fragments


@case("plan", "Parquet file without the entity column")
def missing_entity_column(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    path = parquet(where / "train" / "part-1.parquet", rows(20, 20).drop_columns(["user_id"]))
    return w.recipe(where / "train"), [str(path), "column 'user_id'", "missing column"]


@case("plan", "Parquet file without the uid column")
def missing_uid_column(w, where):
    path = parquet(where / "train" / "part-0.parquet", rows().drop_columns(["uid"]))
    return w.recipe(where / "train"), [str(path), "column 'uid'", "missing column"]


@case("plan", "entity ids: integers in one file, strings in another")
def entity_mixed_types(w, where):
    first = parquet(where / "train" / "part-0.parquet", rows())
    table = rows(20, 20)
    table = replace(table, "user_id", [f"u{v}" for v in table.column("user_id").to_pylist()])
    path = parquet(where / "train" / "part-1.parquet", table)
    fragments = [str(path), "column 'user_id'", "string", "int64", str(first)]
    return w.recipe(where / "train"), fragments


@case("plan", "training data: a Parquet file with zero rows")
def zero_rows(w, where):
    parquet(where / "train" / "part-0.parquet", rows().slice(0, 0))
    return w.recipe(where / "train"), [str(where / "train"), "data.train", "no rows"]


@case("plan", "offset column missing from the data")
def missing_offset_column(w, where):
    path = parquet(where / "train" / "part-0.parquet", rows())
    recipe = w.recipe(where / "train", columns=Columns(offset="offset"))
    return recipe, [str(path), "column 'offset'", "missing column"]


# --- TFRecord files and their metadata -------------------------------------------


@case("plan", "TFRecord file truncated in the middle of a record")
def tfrecord_truncated(w, where):
    path = tfrecord(where / "train" / "part-0.tfrecord", rows(6))
    path.write_bytes(path.read_bytes()[:-30])
    recipe = w.recipe(where / "train", metadata=str(w.metadata(where)))
    return recipe, [str(path), "corrupt or truncated TFRecord"]


@case("plan", "TFRecord file of random bytes")
def tfrecord_garbage(w, where):
    path = where / "train" / "part-0.tfrecord"
    path.parent.mkdir()
    path.write_bytes(np.random.default_rng(0).bytes(500))
    recipe = w.recipe(where / "train", metadata=str(w.metadata(where)))
    return recipe, [str(path), "corrupt or truncated TFRecord"]


@case("plan", "TFRecord file with flipped bytes (CRC mismatch)")
def tfrecord_flipped_bytes(w, where):
    path = tfrecord(where / "train" / "part-0.tfrecord", rows(4))
    data = bytearray(path.read_bytes())
    for k in range(40, 48):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    recipe = w.recipe(where / "train", metadata=str(w.metadata(where)))
    return recipe, [str(path), "corrupt or truncated TFRecord"]


@case("plan", "TFRecord file without metadata", RecipeError)
def tfrecord_without_metadata(w, where):
    tfrecord(where / "train" / "part-0.tfrecord", rows())
    return w.recipe(where / "train"), ["data.metadata", "TFRecord data needs data.metadata"]


@case("plan", "metadata declares a feature bag the files do not hold")
def metadata_bag_missing_from_files(w, where):
    path = tfrecord(
        where / "train" / "part-0.tfrecord", rows(), ["uid", "weight", "user_id", "response"]
    )
    recipe = w.recipe(where / "train", metadata=str(w.metadata(where)))
    return recipe, [str(path), "row 0", "column 'global_indices'", "missing from the records"]


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


@case("plan", "TFRecord feature index outside the bag dimension")
def tfrecord_index_outside_dim(w, where):
    table = set_value(rows(), "global_indices", 2, [1, DIM + 2])
    path = tfrecord(where / "train" / "part-0.tfrecord", table)
    recipe = w.recipe(where / "train", metadata=str(w.metadata(where)))
    return recipe, [
        str(path),
        "row 2",
        "column 'global_indices'",
        f"index {DIM + 2}",
        f"[0, {DIM})",
    ]


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


# --- output directories -----------------------------------------------------------


@case("plan", "output directory not empty, without --overwrite", RecipeError, cli=True)
def output_not_empty(w, where):
    recipe = w.recipe(w.root / "good" / "train")
    return (recipe, False), [str(w.out), "not empty", "--overwrite"]


@case(
    "plan",
    "output is a user's directory (not a raymix run), even with --overwrite",
    RecipeError,
    cli=True,
)
def output_user_directory(w, where):
    mine = where / "my-thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    recipe = w.recipe(w.root / "good" / "train").model_copy(update={"output": str(mine)})
    return recipe, [str(mine), "refusing to overwrite", "not a raymix fit output"]


@case("plan", "output path is a file", RecipeError)
def output_is_a_file(w, where):
    path = where / "results.txt"
    path.write_text("precious")
    recipe = w.recipe(w.root / "good" / "train").model_copy(update={"output": str(path)})
    return recipe, [str(path), "not a directory"]


# --- values found while reading ---------------------------------------------------


@case("read", "NaN feature value (Parquet)")
def nan_feature_value(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    path = parquet(
        where / "train" / "part-1.parquet",
        set_value(rows(20, 20), "global_values", 5, [0.5, float("nan")]),
    )
    return w.recipe(where / "train"), [
        str(path),
        "row 5",
        "column 'global_values'",
        "NaN or infinite",
    ]


@case("read", "infinite feature value")
def inf_feature_value(w, where):
    path = parquet(
        where / "train" / "part-0.parquet",
        set_value(rows(), "global_values", 17, [float("-inf"), 1.0]),
    )
    return w.recipe(where / "train"), [
        str(path),
        "row 17",
        "column 'global_values'",
        "NaN or infinite",
    ]


@case("read", "label outside {0, 1} for a logistic fixed effect")
def label_not_binary(w, where):
    path = parquet(where / "train" / "part-0.parquet", set_value(rows(), "response", 3, 2))
    recipe = w.recipe(where / "train", coordinate="fe")
    return recipe, [str(path), "row 3", "column 'response'", "0 or 1", "logistic"]


@case("read", "negative weight", cli=True)
def negative_weight(w, where):
    path = parquet(where / "train" / "part-0.parquet", set_value(rows(), "weight", 7, -1.0))
    return w.recipe(where / "train"), [str(path), "row 7", "column 'weight'", "negative weight"]


@case("read", "weight beyond the limit (1e300 made AUC 0.5 silently)", cli=True)
def huge_weight(w, where):
    weight = np.ones(20)  # float64: in the float32 column of rows(), 1e300 is inf
    weight[6] = 1e300
    path = parquet(where / "train" / "part-0.parquet", replace(rows(), "weight", weight))
    return w.recipe(where / "train"), [str(path), "row 6", "column 'weight'", "1e+300", "limit"]


@case("read", "feature value beyond the limit (3e38 wiped out the coefficients)")
def huge_feature_value(w, where):
    path = parquet(
        where / "train" / "part-0.parquet",
        set_value(rows(), "global_values", 12, [3e38, 1.0]),
    )
    return w.recipe(where / "train"), [
        str(path),
        "row 12",
        "column 'global_values'",
        "3e+38",
        "limit",
    ]


@case("read", "offset beyond the limit")
def huge_offset(w, where):
    table = replace(rows(), "offset", pa.array(np.zeros(20)))
    path = parquet(where / "train" / "part-0.parquet", set_value(table, "offset", 2, -1e20))
    recipe = w.recipe(where / "train", columns=Columns(offset="offset"))
    return recipe, [str(path), "row 2", "column 'offset'", "-1e+20", "limit"]


@case("read", "every training weight zero (AUC 0.5 silently)")
def all_weights_zero(w, where):
    table = replace(rows(), "weight", pa.array(np.zeros(20), pa.float32()))
    parquet(where / "train" / "part-0.parquet", table)
    return w.recipe(where / "train"), ["every training row has weight 0"]


@case("read", "NaN in the offset column")
def nan_offset(w, where):
    table = replace(rows(), "offset", pa.array(np.zeros(20)))
    path = parquet(where / "train" / "part-0.parquet", set_value(table, "offset", 4, float("nan")))
    recipe = w.recipe(where / "train", columns=Columns(offset="offset"))
    return recipe, [str(path), "row 4", "column 'offset'", "NaN or infinite"]


@case("read", "Parquet feature index outside the metadata's bag dimension")
def parquet_index_outside_dim(w, where):
    table = set_value(rows(), "global_indices", 9, [0, DIM])
    path = parquet(where / "train" / "part-0.parquet", table)
    recipe = w.recipe(where / "train", metadata=str(w.metadata(where)))
    return recipe, [str(path), "row 9", "column 'global_indices'", f"index {DIM}", f"[0, {DIM})"]


@case("read", "duplicate uid within a file")
def duplicate_uid_in_file(w, where):
    path = parquet(where / "train" / "part-0.parquet", set_value(rows(), "uid", 11, 4))
    return w.recipe(where / "train"), [str(path), "row 11", "column 'uid'", "duplicate uid 4"]


@case("read", "duplicate uid across files")
def duplicate_uid_across_files(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    parquet(where / "train" / "part-1.parquet", set_value(rows(20, 20), "uid", 6, 3))
    return w.recipe(where / "train"), ["coordinate 'per-user'", "duplicate uid 3", "training"]


@case("read", "TFRecord file truncated after its first records (fixed effect)", cli=True)
def tfrecord_truncated_late(w, where):
    path = tfrecord(where / "train" / "part-0.tfrecord", rows(30))
    path.write_bytes(path.read_bytes()[:-30])
    recipe = w.recipe(where / "train", coordinate="fe", metadata=str(w.metadata(where)))
    return recipe, [str(path), "corrupt or truncated TFRecord"]


# ----------------------------------------------------------------------------- running them

MESSAGES: dict[str, str] = {}
ROOTS: list[str] = []


def run_case(w: World, c: Case, where: Path) -> RaymixError:
    target, fragments = c.build(w, where)
    overwrite = True
    if isinstance(target, tuple):
        target, overwrite = target
    with pytest.raises(c.error) as caught:
        if c.stage == "recipe":
            load_recipe(target)
        else:
            fit(target, overwrite=overwrite)
    message = str(caught.value)
    assert message == caught.value.message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    MESSAGES[c.id] = message
    return caught.value


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_clearly_and_keeps_the_previous_run(world, c):
    try:
        error = run_case(world, c, world.case_dir(c.id))
        assert files_of(world.out) == world.previous, "the previous run changed"
        left = sorted(world.out.parent.glob(f".{world.out.name}.*"))
        if c.stage == "read":  # the failed run's partial outputs, kept beside the previous run
            assert [p.name.split("-")[0] for p in left] == [f".{world.out.name}.failed"], left
            assert (left[0] / "run.json").is_file()
            assert f"the previous run in '{world.out}' is unchanged" in error.message
            assert f"this run's partial outputs are in '{left[0]}'" in error.message
        else:  # refused before the output directory was touched
            assert not left, "something was left beside the output"
    finally:
        for path in world.out.parent.glob(f".{world.out.name}.*"):
            shutil.rmtree(path)


def test_the_corpus_covers_enough_cases():
    assert len(CASES) >= 20
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.stage for c in CASES} == {"recipe", "plan", "read"}


CLI_CASES = [c for c in CASES if c.cli]


@pytest.mark.parametrize("c", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_prints_one_error_line_and_exits_2(world, c, ray_session):
    where = world.root / "cli" / c.id
    where.mkdir(parents=True)
    target, fragments = c.build(world, where)
    overwrite = True
    if isinstance(target, tuple):
        target, overwrite = target
    if isinstance(target, Recipe):
        path = where / "recipe.json"
        path.write_text(target.model_dump_json())
        target = path
    command = [sys.executable, "-m", "raymix.cli", "fit", str(target), "--quiet"]
    if overwrite:
        command.append("--overwrite")
    if c.stage == "read":  # join the session's Ray instead of starting another one
        command += ["--address", ray_session.get_runtime_context().gcs_address]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("raymix: error:")]
    assert done.returncode == 2, done.stderr
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == errors, done.stderr  # no line from Ray either
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    assert files_of(world.out) == world.previous
    if c.stage == "read":
        assert f"the previous run in '{world.out}' is unchanged" in errors[0]
    for failed in world.out.parent.glob(f".{world.out.name}.failed-*"):
        shutil.rmtree(failed)


@pytest.fixture(scope="module", autouse=True)
def table_of_messages():
    """With RAYMIX_BAD_INPUTS_DOC set, write the cases and their messages as a Markdown table."""
    yield
    target = os.environ.get("RAYMIX_BAD_INPUTS_DOC")
    if not target or len(MESSAGES) != len(CASES):
        return
    lines = [
        "# Bad inputs and their messages",
        "",
        "Generated by `RAYMIX_BAD_INPUTS_DOC=docs/bad-inputs.md python -m pytest tests/bad_inputs`",
        "from the cases in `tests/bad_inputs/test_bad_inputs.py`. Each run writes into an output",
        "directory holding a previous run, with `--overwrite`. *Stage* says when the input is",
        "refused: **recipe** while loading the recipe file; **plan** before the output directory",
        "is touched or Ray is started (recipe, paths, Parquet schemas of every file, the first",
        "records of every TFRecord file against the metadata); **read** while the workers read",
        "the rows, after which the previous run is moved back into the output directory and the",
        "failed run's partial outputs are kept in a hidden `.NAME.failed-PID` sibling.",
        "`<tmp>` stands for the test's temporary directory.",
        "",
        "**Limits.** Every label, weight, offset and feature value must be finite and at most",
        "1e12 in magnitude (`raymix.data.rows.LARGEST_VALUE`); weights are >= 0 and not all",
        "zero in a split. Beyond that a weighted sum of losses or a squared feature overflows",
        "float64, or one row swamps all others: the fit collapses (an AUC of 0.5) instead of",
        "failing, so such values are refused, naming the file, row and column. Rescale the",
        "column (a weight's scale does not matter, only the ratios between rows do).",
        "",
        "| # | Case | Stage | Message (`raymix: error: ...`) |",
        "|---|------|-------|--------------------------------|",
    ]
    for k, c in enumerate(CASES, 1):
        message = MESSAGES[c.id]
        for root in ROOTS:
            message = message.replace(root, "<tmp>")
        message = re.sub(r"(failed|previous)-\d+", r"\1-PID", message).replace("|", "\\|")
        lines.append(f"| {k} | {c.what} | {c.stage} | `{message}` |")
    Path(target).write_text("\n".join(lines) + "\n")
