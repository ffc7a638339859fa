"""raymix's models in Photon ML's GAME model layout, for a Photon ML scoring job.

Photon ML keeps a GAME model as one directory::

    model-spec                                    one line per coordinate: its settings
    fixed-effect/<coordinate>/id-info             the coordinate's feature shard (bag)
    fixed-effect/<coordinate>/coefficients/part-*.avro
    random-effect/<coordinate>/id-info            the entity type, then the feature shard
    random-effect/<coordinate>/coefficients/part-*.avro

The coefficient files are ``BayesianLinearModelAvro`` records, the schema raymix's own model
files have (:mod:`raymix.data.avro.models`), so they are copied byte for byte: every mean,
variance, name and term reads back identically. The same directory is read back as a prior
or warm start by :func:`raymix.data.avro.priors.prior_models_dir`, and scored as it is by
``raymix score`` (:func:`read_game_model`). Every file is written whole or not at all
(:mod:`raymix.storage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from raymix import storage
from raymix.data.avro.models import avro_files
from raymix.errors import DataError

MODEL_SPEC = "model-spec"
ID_INFO = "id-info"
KINDS = {"fixed_effect": "fixed-effect", "random_effect": "random-effect"}


@dataclass(frozen=True)
class PhotonCoordinate:
    """One coordinate to write: its raymix ``models`` directory (or file), its kind
    (``fixed_effect`` or ``random_effect``), feature bag (``shard``), entity type (random
    effects) and the settings written on its ``model-spec`` line (in order)."""

    name: str
    kind: str
    models: str | Path
    shard: str
    entity: str | None = None
    settings: dict[str, object] = field(default_factory=dict)


def coordinate_dir(root: str | Path, coordinate: PhotonCoordinate) -> str:
    """Where ``coordinate`` goes under the Photon model directory ``root``."""
    return storage.join(root, KINDS[coordinate.kind], coordinate.name)


def model_spec_line(coordinate: PhotonCoordinate) -> str:
    """``name -> key: value<TAB>key: value...``, as Photon ML's model-spec file has them."""
    values = "\t".join(f"{k}: {v}" for k, v in coordinate.settings.items())
    return f"{coordinate.name} -> {values}"


def write_photon_layout(root: str | Path, coordinates: list[PhotonCoordinate]) -> list[str]:
    """Write ``coordinates``' models under ``root`` in Photon ML's layout; the files written."""
    written: list[str] = []
    for c in coordinates:
        if c.kind not in KINDS:
            raise ValueError(f"coordinate '{c.name}' of kind {c.kind!r} has no Photon layout")
        where = coordinate_dir(root, c)
        info = c.shard if c.kind == "fixed_effect" else f"{c.entity}\n{c.shard}"
        written.append(str(storage.write_text(storage.join(where, ID_INFO), info + "\n")))
        for k, file in enumerate(avro_files(c.models)):
            target = storage.join(where, "coefficients", f"part-{k:05d}.avro")
            written.append(str(storage.write_bytes(target, storage.read_bytes(file))))
    spec = "".join(model_spec_line(c) + "\n" for c in coordinates)
    written.append(str(storage.write_text(storage.join(root, MODEL_SPEC), spec)))
    return written


def read_id_info(root: str | Path, kind: str, name: str) -> list[str]:
    """The lines of a coordinate's ``id-info`` (a fixed effect: ``[shard]``; a random
    effect: ``[entity, shard]``)."""
    text = storage.read_text(storage.join(root, KINDS[kind], name, ID_INFO))
    return [line for line in text.splitlines() if line]


def is_game_model(root: str | Path) -> bool:
    """Whether ``root`` holds Photon ML's layout (a ``fixed-effect/`` or ``random-effect/``)."""
    return any(storage.is_dir(storage.join(root, kind)) for kind in KINDS.values())


def read_game_model(root: str | Path) -> list[PhotonCoordinate]:
    """The coordinates of the Photon ML model directory ``root``, their ``models`` the
    ``coefficients`` directories: in ``model-spec`` order where it names them (with their
    settings), the others after it, fixed effects first, each kind by name.

    A coordinate's shard (and a random effect's entity type) are its ``id-info``'s; without
    one, its directory's name: ``fixed-effect/<shard>``, ``random-effect/<entityType>-<shard>``
    (split at the first ``-``: an entity type is an input column's name).
    """
    settings = _model_spec(root)
    found = []
    for kind, folder in KINDS.items():
        for name in storage.list_dir(storage.join(root, folder)):
            where = storage.join(root, folder, name)
            if not storage.is_dir(storage.join(where, "coefficients")):
                raise DataError("no coefficients directory", path=storage.shown(where))
            if storage.is_file(storage.join(where, ID_INFO)):
                info = read_id_info(root, kind, name)
            else:
                info = [name] if kind == "fixed_effect" else name.split("-", 1)
            if len(info) != (1 if kind == "fixed_effect" else 2):
                raise DataError(
                    "expected the shard in id-info"
                    if kind == "fixed_effect"
                    else "expected the entity type and the shard in id-info, or a directory "
                    "named <entityType>-<shard>",
                    path=storage.shown(storage.join(where, ID_INFO)),
                )
            entity = None if kind == "fixed_effect" else info[0]
            models = storage.join(where, "coefficients")
            found.append(
                PhotonCoordinate(name, kind, models, info[-1], entity, settings.get(name, {}))
            )
    rank = {name: k for k, name in enumerate(settings)}
    return sorted(
        found, key=lambda c: (rank.get(c.name, len(rank)), c.kind != "fixed_effect", c.name)
    )


def _model_spec(root: str | Path) -> dict[str, dict[str, object]]:
    """``model-spec``'s settings per coordinate, in its order (none without the file)."""
    path = storage.join(root, MODEL_SPEC)
    if not storage.is_file(path):
        return {}
    spec: dict[str, dict[str, object]] = {}
    for line in storage.read_text(path).splitlines():
        name, arrow, values = line.partition(" -> ")
        if arrow:
            pairs = (item.partition(": ") for item in values.split("\t") if item)
            spec[name] = {key: value for key, _, value in pairs}
    return spec
