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
or warm start by :func:`raymix.data.avro.priors.prior_models_dir`. Every file is written
whole or not at all (:mod:`raymix.storage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from raymix import storage
from raymix.data.avro.models import avro_files

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
