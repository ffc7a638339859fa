"""GDMix / Photon ML model files: ``BayesianLinearModelAvro`` records.

Model records (gdmix-reference.md §4.5): ``modelId``, ``modelClass``, ``means`` as
name-term-value triples with the intercept first as ``("(INTERCEPT)", "")``, optional
``variances`` in the same order, ``lossFunction``. Every file is written to a temporary name
in its directory and renamed into place. Many records at once: :mod:`.model_writer` and
:mod:`.model_reader` (compiled).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import fastavro
import numpy as np

from raymix import storage
from raymix.data.avro.container import iter_records
from raymix.errors import DataError

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
    with storage.staged(path) as tmp, open(tmp, "wb") as handle:
        fastavro.writer(handle, MODEL_SCHEMA, records, codec="deflate")
    return storage.as_path(path)


def read_models(path: str | Path) -> Iterator[dict]:
    """Records of one model file or of every ``*.avro`` in a directory (sorted); Photon ML's
    files with a ``null`` default on a ``string`` field read too
    (:func:`raymix.data.avro.container.iter_records`)."""
    for file in avro_files(path):
        yield from iter_records(file)


def coefficients_by_index(
    record: dict, names: list[tuple[str, str]] | None
) -> tuple[float, np.ndarray, np.ndarray]:
    """(intercept, feature indices, values) of a model record; unknown features are dropped."""
    lookup = {tuple(n): j for j, n in enumerate(names)} if names is not None else None
    intercept = 0.0
    index: list[int] = []
    value: list[float] = []
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
            found = lookup.get(key)
            if found is None:
                continue
            j = found
        index.append(j)
        value.append(m["value"])
    order = np.argsort(np.asarray(index, dtype=np.int64), kind="stable")
    return intercept, np.asarray(index, np.int64)[order], np.asarray(value, np.float64)[order]


def check_finite_model(model_id: str, intercept: float, value: np.ndarray, path) -> None:
    """Refuse a model whose intercept or a coefficient is NaN or infinite: as a warm start
    or a prior it would fail deep in a solver (or score every row NaN), naming no file."""
    values = np.r_[intercept, np.asarray(value, np.float64)]
    if not np.isfinite(values).all():
        bad = values[~np.isfinite(values)][0]
        raise DataError(
            f"model '{model_id}' has a NaN or infinite coefficient ({bad}): "
            "a model's coefficients must be finite",
            path=str(path),
        )


def avro_files(path: str | Path) -> list[Path]:
    """The ``*.avro`` files of a directory (recursively, sorted) or the one file ``path``;
    :class:`~raymix.errors.DataError` if there are none. Local files as paths, objects of an
    object store as URIs (strings)."""
    if storage.is_uri(path):
        where = storage.normal(path)
        if storage.is_file(where):
            return [where]  # type: ignore[list-item]
        found = [f for f in storage.walk(where) if f.endswith(".avro")]
        if not found:
            storage.check_reachable(where)
            missing = (
                "no such file or directory" if not storage.is_dir(where) else "no *.avro files"
            )
            raise DataError(missing, path=storage.shown(where))
        return found  # type: ignore[return-value]
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.avro") if p.is_file())
        if not files:
            raise DataError("no *.avro files", path=str(path))
        return files
    if not path.exists():
        raise DataError("no such file or directory", path=str(path))
    return [path]
