"""GDMix / Photon ML Avro files: ``BayesianLinearModelAvro`` models and score files.

Model records (gdmix-reference.md §4.5): ``modelId``, ``modelClass``, ``means`` as
name-term-value triples with the intercept first as ``("(INTERCEPT)", "")``, optional
``variances`` in the same order, ``lossFunction``. Score records (§4.6): ``uid``,
``predictionScore`` (cumulative logit), ``predictionScorePerCoordinate``, label, weight.
Every file is written to a temporary name in its directory and renamed into place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import fastavro
import numpy as np

from raymix.errors import DataError
from raymix.outputs import atomic_path

INTERCEPT = ("(INTERCEPT)", "")
_NTV = {
    "name": "NameTermValueAvro",
    "namespace": "com.linkedin.photon.avro.generated",
    "type": "record",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "term", "type": "string"},
        {"name": "value", "type": "double"},
    ],
}
MODEL_SCHEMA_JSON = {
    "name": "BayesianLinearModelAvro",
    "namespace": "com.linkedin.photon.avro.generated",
    "type": "record",
    "fields": [
        {"name": "modelId", "type": "string"},
        {"name": "modelClass", "type": ["null", "string"], "default": None},
        {"name": "means", "type": {"type": "array", "items": _NTV}},
        {
            "name": "variances",
            "type": ["null", {"type": "array", "items": "NameTermValueAvro"}],
            "default": None,
        },
        {"name": "lossFunction", "type": ["null", "string"], "default": None},
    ],
}
MODEL_SCHEMA = fastavro.parse_schema(MODEL_SCHEMA_JSON)
MODEL_CLASS = {
    "logistic": "com.linkedin.photon.ml.supervised.classification.LogisticRegressionModel",
    "linear": "com.linkedin.photon.ml.supervised.regression.LinearRegressionModel",
    "poisson": "com.linkedin.photon.ml.supervised.regression.PoissonRegressionModel",
}


def model_record(
    model_id: str,
    intercept: float | None,
    index: np.ndarray,
    value: np.ndarray,
    names: list[tuple[str, str]] | None,
    task: str,
    variances: np.ndarray | None = None,
) -> dict:
    """One model as a record; ``index``/``value`` are the non-zero coefficients, ascending."""

    def name_of(j: int) -> tuple[str, str]:
        return names[j] if names is not None else (str(j), "")

    means = []
    if intercept is not None:
        means.append({"name": INTERCEPT[0], "term": INTERCEPT[1], "value": float(intercept)})
    for j, v in zip(index.tolist(), value.tolist(), strict=True):
        name, term = name_of(j)
        means.append({"name": name, "term": term, "value": v})
    record = {
        "modelId": str(model_id),
        "modelClass": MODEL_CLASS[task],
        "means": means,
        "variances": None,
        "lossFunction": "",
    }
    if variances is not None:
        record["variances"] = [
            {"name": m["name"], "term": m["term"], "value": float(v)}
            for m, v in zip(means, variances, strict=True)
        ]
    return record


def write_models(path: str | Path, records: Iterable[dict]) -> Path:
    """Write model records to one Avro file, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fastavro.writer(handle, MODEL_SCHEMA, records, codec="deflate")
    return Path(path)


def read_models(path: str | Path) -> Iterator[dict]:
    """Records of one model file or of every ``*.avro`` in a directory (sorted)."""
    for file in _avro_files(path):
        try:
            with open(file, "rb") as handle:
                yield from fastavro.reader(handle)
        except (OSError, ValueError, EOFError, fastavro.read.SchemaResolutionError) as exc:
            raise DataError(f"cannot read Avro model file: {exc}", path=str(file)) from None


def coefficients_by_index(
    record: dict, names: list[tuple[str, str]] | None
) -> tuple[float, np.ndarray, np.ndarray]:
    """(intercept, feature indices, values) of a model record; unknown features are dropped."""
    lookup = {tuple(n): j for j, n in enumerate(names)} if names is not None else None
    intercept = 0.0
    index, value = [], []
    for m in record["means"]:
        key = (m["name"], m["term"])
        if key == INTERCEPT:
            intercept = m["value"]
            continue
        if lookup is None:
            try:
                j = int(m["name"])
            except ValueError:
                continue
        else:
            j = lookup.get(key)
            if j is None:
                continue
        index.append(j)
        value.append(m["value"])
    order = np.argsort(np.asarray(index, dtype=np.int64), kind="stable")
    return intercept, np.asarray(index, np.int64)[order], np.asarray(value, np.float64)[order]


def score_schema(uid: str, label: str | None, weight: str | None) -> dict:
    """GDMix's score record (gdmix-reference.md §4.6), as plain JSON."""
    fields = [{"name": uid, "type": "long"}, {"name": "predictionScore", "type": "float"}]
    if label:
        fields.append({"name": label, "type": ["null", "float"], "default": None})
    if weight:
        fields.append({"name": weight, "type": "float"})
    fields.append({"name": "predictionScorePerCoordinate", "type": "float"})
    return {"type": "record", "name": "validation_result", "fields": fields}


def write_scores_avro(
    path: str | Path,
    uid: np.ndarray,
    total: np.ndarray,
    own: np.ndarray,
    label: np.ndarray | None,
    weight: np.ndarray | None,
    names: tuple[str, str | None, str | None] = ("uid", "response", "weight"),
) -> Path:
    """GDMix's score file: one record per row, logits as float (as GDMix writes them).

    Encoded with numpy (:mod:`raymix.data.avro_scores`), not record by record.
    """
    from raymix.data.avro_scores import write_container

    uid_name, label_name, weight_name = names
    schema = score_schema(
        uid_name,
        label_name if label is not None else None,
        weight_name if weight is not None else None,
    )
    columns = [("long", uid), ("float", total)]
    if label is not None:
        columns.append(("nullable_float", np.asarray(label, np.float64)))
    if weight is not None:
        columns.append(("float", weight))
    columns.append(("float", own))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write_container(handle, schema, columns)
    return Path(path)


def read_scores_avro(path: str | Path, uid: str = "uid", score: str = "predictionScore"):
    """(uid int64, score float64) arrays of every score file under ``path``."""
    uids, scores = [], []
    for file in _avro_files(path):
        try:
            with open(file, "rb") as handle:
                for record in fastavro.reader(handle):
                    uids.append(record[uid])
                    scores.append(record[score])
        except KeyError as exc:
            raise DataError("score record lacks a field", path=str(file), column=str(exc)) from None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read Avro score file: {exc}", path=str(file)) from None
    return np.asarray(uids, np.int64), np.asarray(scores, np.float64)


def _avro_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.avro") if p.is_file())
        if not files:
            raise DataError("no *.avro files", path=str(path))
        return files
    if not path.exists():
        raise DataError("no such file or directory", path=str(path))
    return [path]


def ensure_dir(path: str | Path) -> Path:
    os.makedirs(path, exist_ok=True)
    return Path(path)
