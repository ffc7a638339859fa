"""The bad-input corpus: its good data, the shared workspace, the ``Case`` type and its register.

Every case builds its bad input from a small good data set (Parquet written with pyarrow,
TFRecord with ``write_tfrecord_file``, Avro with fastavro: no binary fixtures) and runs it as
a user would. A case's ``build(world, where)`` returns ``(target, fragments)``; the target
says how it is run:

* a :class:`~raymix.Recipe` (or ``(recipe, overwrite)``): ``raymix.run.fit`` into OUT, which
  holds a real previous run;
* a :class:`Load`: ``load_recipe(path, overrides)`` (stage "recipe");
* a :class:`Cli`: ``raymix.cli.main(argv)`` in this process: exit code 2 and one
  ``raymix: error:`` line on stderr;
* a :class:`Call`: any function of raymix (``score_command``, ``tune.search``, a reader).

The cases live in ``cases_<format>.py`` modules, which register them into :data:`CASES`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raymix import (
    Columns,
    Data,
    DataError,
    FixedEffect,
    RandomEffect,
    RaymixError,
    Recipe,
    Resources,
)
from raymix.data.metadata import Metadata, TensorSpec
from raymix.data.tfrecord.tables import write_tfrecord_file

REPO = Path(__file__).resolve().parents[2]
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

    @property
    def good(self) -> Path:
        return self.root / "good"

    def case_dir(self, case_id: str) -> Path:
        path = self.root / "cases" / case_id
        path.mkdir(parents=True)
        return path

    def metadata(self, where: Path, metadata: Metadata | dict | str = METADATA) -> Path:
        path = where / "metadata" / "tensor_metadata.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(metadata, str):
            text = metadata
        else:
            text = json.dumps(metadata) if isinstance(metadata, dict) else metadata.to_json()
        path.write_text(text)
        return path

    def recipe(self, train, *, coordinate: str = "re", columns=None, **data) -> Recipe:
        """A recipe writing to OUT: one random effect (``re``), fixed effect (``fe``) or both."""
        fe = FixedEffect(name="global", feature_bag="global")
        re_ = RandomEffect(name="per-user", entity="user_id", feature_bag="global")
        coordinates = {"re": [re_], "fe": [fe], "both": [fe, re_]}[coordinate]
        train = str(train) if isinstance(train, Path | str) else tuple(str(t) for t in train)
        return Recipe(
            data=Data(train=train, **data),
            columns=columns or Columns(),
            coordinates=coordinates,
            output=str(self.out),
            resources=SMALL,
        )

    def good_recipe(self, coordinate: str = "re", **update) -> Recipe:
        """The good data's recipe (with validation), its coordinates updated by ``update``."""
        recipe = self.recipe(
            self.good / "train", coordinate=coordinate, validation=str(self.good / "validation")
        )
        if update:
            coordinates = tuple(c.model_copy(update=update) for c in recipe.coordinates)
            recipe = recipe.model_copy(update={"coordinates": coordinates})
        return recipe

    def raw(self, coordinate: str = "re") -> dict:
        """The good recipe as JSON data (a run.json to spoil)."""
        return json.loads(self.good_recipe(coordinate).model_dump_json())

    def run_json(self, where: Path, raw: dict | str) -> Path:
        path = where / "run.json"
        path.write_text(raw if isinstance(raw, str) else json.dumps(raw))
        return path


# ----------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Load:
    """``load_recipe(path, overrides)``."""

    path: Path
    overrides: Sequence[str] = ()


@dataclass(frozen=True)
class Cli:
    """``raymix *argv`` (in this process for the corpus, as a subprocess for the CLI test)."""

    argv: Sequence[str]


@dataclass(frozen=True)
class Call:
    """Any call into raymix that must raise the case's error."""

    function: Callable[[], object]


@dataclass(frozen=True)
class Case:
    id: str
    what: str
    stage: str  # "recipe": the recipe file fails to load; "plan": refused before OUT is
    #            touched; "read": fails while reading, after OUT was prepared
    build: Callable[[World, Path], tuple]  # -> (target, message fragments)
    error: type[RaymixError] = DataError
    cli: bool = False
    format: str = ""
    marks: tuple = field(default=())


CASES: list[Case] = []
STAGES = ("recipe", "plan", "read")


def case(
    stage: str,
    what: str,
    error: type[RaymixError] = DataError,
    cli: bool = False,
    marks: tuple = (),
):
    """Register the decorated build function as a case of its module's format."""
    assert stage in STAGES, stage

    def register(build):
        module = build.__module__.rsplit(".", 1)[-1]
        fmt = module.removeprefix("cases_")
        name = build.__name__.replace("_", "-")
        CASES.append(Case(name, what, stage, build, error, cli, fmt, tuple(marks)))
        return build

    return register
