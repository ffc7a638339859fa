"""The previous run's models read as a Gaussian prior (incremental training).

A prior is read from ``BayesianLinearModelAvro`` files with ``variances`` (raymix's, GDMix's,
Photon ML's): the means and variances of each record, matched to today's features by
``(name, term)`` (a feature list that adds, drops or reorders features works; a coefficient
whose feature is gone is dropped), and optionally each model's posterior covariance kept
beside its file (``part-00003.avro`` -> ``part-00003.covariance.arrow``, written by
``variance="covariance"``).

Where the models of coordinate ``c`` are under a prior path ``P`` (:func:`prior_models_dir`):
``P/c/models`` (a raymix or GDMix output directory), Photon ML's model layout
``P/fixed-effect/<c or its one shard>/coefficients`` or ``P/random-effect/<c>/coefficients``,
or ``P`` itself (a models directory or one file).

Files of Photon ML's versions of the time declare ``"default": null`` on a plain ``string``
field (``modelClass``), which strict Avro parsers reject: they are read through
:func:`raymix.data.avro.container.read_records`, which drops that default. A bad prior fails in one line naming the
file: no variances, a variance that is not finite and > 0, a model of another task, a corrupt
file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from raymix import storage
from raymix.data.avro.container import read_records
from raymix.data.avro.models import INTERCEPT, MODEL_CLASS, avro_files, check_finite_model
from raymix.errors import DataError
from raymix.solvers.entity import EntityModels
from raymix.solvers.prior import EntityPriors, Prior, covariance_ptr, precision_of

COVARIANCE_SUFFIX = ".covariance.arrow"


@dataclass(frozen=True)
class PriorModels:
    """Models read as a prior: ``ids[k]``'s model is entity ``k`` of ``models`` (with
    ``variances``, and ``covariances`` when every file had them); ``has_intercept[k]`` whether
    its record had an intercept."""

    ids: np.ndarray
    models: EntityModels
    has_intercept: np.ndarray

    def priors(self, weight: float = 1.0, forgetting: float = 0.0) -> EntityPriors:
        """The Gaussian priors of these models: precision ``weight (1 - forgetting) /
        variance``, or the inverse covariance scaled alike."""
        m = self.models
        var = np.asarray(m.variances)
        known = self.has_intercept
        safe = var.copy()
        safe[m.intercept_slots[~known]] = 1.0  # an intercept the model lacked: not a prior
        precision = precision_of(safe, weight, forgetting)
        mean = np.empty(var.size)
        mean[m.intercept_slots] = m.intercepts
        mean[np.setdiff1d(np.arange(var.size), m.intercept_slots)] = m.coef_value
        full = None
        if m.covariances is not None:
            scale = weight * (1.0 - forgetting)
            cptr, parts = m.covariance_ptr, []
            for k in range(m.n_entities):
                q = int(m.coef_ptr[k + 1] - m.coef_ptr[k]) + 1
                cov = m.covariances[cptr[k] : cptr[k + 1]].reshape(q, q)
                block = np.zeros((q, q))
                use = np.r_[known[k], np.ones(q - 1, bool)]
                block[np.ix_(use, use)] = scale * np.linalg.inv(cov[np.ix_(use, use)])
                parts.append(block.ravel())
            full = np.concatenate(parts) if parts else np.zeros(0)
        return EntityPriors(m.coef_ptr, m.coef_index, mean, precision, known, full)

    def fixed_effect_prior(self, weight: float = 1.0, forgetting: float = 0.0) -> Prior:
        """The one model of a fixed effect, as a :class:`~raymix.solvers.prior.Prior`."""
        if self.models.n_entities != 1:
            raise DataError(f"a fixed effect's prior has one model; got {self.models.n_entities}")
        return self.priors(weight, forgetting).prior(0)

    def select(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, found)``: the row of each of ``ids`` in these models (-1: none)."""
        mine = pa.array(self.ids.astype(str))
        wanted = pa.array(np.asarray(ids).astype(str))
        at = pa.compute.index_in(wanted, value_set=mine)
        found = at.is_valid().to_numpy(zero_copy_only=False)
        rows = np.where(found, at.fill_null(0).to_numpy(zero_copy_only=False), -1)
        return rows.astype(np.int64), found


def prior_models_dir(path: str | Path, coordinate: str, kind: str = "random_effect") -> Path:
    """Where coordinate ``coordinate``'s models are under the prior path ``path``."""
    root = Path(path)
    photon = root / ("fixed-effect" if kind == "fixed_effect" else "random-effect")
    candidates = [root / coordinate / "models", photon / coordinate / "coefficients"]
    if kind == "fixed_effect" and photon.is_dir():
        shards = [p for p in photon.iterdir() if (p / "coefficients").is_dir()]
        if len(shards) == 1:
            candidates.append(shards[0] / "coefficients")
    for candidate in candidates:
        if candidate.exists():
            return candidate
    if root.is_file() or (root.is_dir() and any(root.glob("*.avro"))):
        return root
    raise DataError(f"no models of coordinate '{coordinate}' in this prior", path=str(root))


def read_prior_models(
    path: str | Path, names: list[tuple[str, str]] | None, task: str, dim: int
) -> PriorModels:
    """Every model record under ``path`` with its variances (and covariances when they are
    kept beside every file), features matched by name (``names[j]`` is feature ``j``; without
    names a feature is ``int(name)``) and those ``>= dim`` dropped."""
    lookup = {tuple(n): j for j, n in enumerate(names)} if names is not None else None
    ids, parts, known, covs = [], [], [], []
    files = avro_files(path)
    all_cov = all(covariance_file(f).is_file() for f in files)
    for file in files:
        cov = _read_covariances(covariance_file(file)) if all_cov else None
        for record in read_records(file):
            ids.append(str(record["modelId"]))
            one, b_known, c = _model(record, lookup, task, dim, file, cov)
            parts.append(one)
            known.append(b_known)
            covs.append(c)
    E = len(parts)
    counts = np.array([p[1].size for p in parts], np.int64)
    ptr = np.zeros(E + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    cat = np.concatenate
    models = EntityModels(
        np.array([p[0] for p in parts], np.float64),
        ptr,
        cat([np.zeros(0, np.int64)] + [p[1] for p in parts]),
        cat([np.zeros(0)] + [p[2] for p in parts]),
        np.ones(E, bool),
        np.zeros(E, np.int32),
        cat([np.zeros(0)] + [p[3] for p in parts]),
        cat([np.zeros(0)] + covs) if all_cov else None,
    )
    return PriorModels(np.array(ids, dtype=object), models, np.array(known, bool))


def _model(record, lookup, task, dim, file: Path, cov: dict | None):
    """``((b, index, value, [var(b), var(w)...]), has_intercept, covariance)`` of a record."""
    model_class = record.get("modelClass")
    if model_class and model_class in MODEL_CLASS.values() and model_class != MODEL_CLASS[task]:
        raise DataError(f"model '{record['modelId']}' is a {model_class.rsplit('.', 1)[-1]}, "
                        f"not a {task} model: a prior must be of the coordinate's task",
                        path=str(file))  # fmt: skip
    if record.get("variances") is None:
        raise DataError(f"model '{record['modelId']}' has no variances: a prior needs the "
                        "previous fit's (variance='full')", path=str(file))  # fmt: skip
    variance = {(v["name"], v["term"]): v["value"] for v in record["variances"]}
    b, b_var, b_known, index, value, var, kept = 0.0, 1.0, False, [], [], [], []
    for position, m in enumerate(record["means"]):
        key = (m["name"], m["term"])
        if key not in variance:
            raise DataError(f"model '{record['modelId']}' has no variance for {key}", path=str(file))  # fmt: skip
        v = variance[key]
        if not (np.isfinite(v) and v > 0):
            raise DataError(f"model '{record['modelId']}': the variance of {key} is {v!r}; "
                            "a prior variance must be finite and > 0", path=str(file))  # fmt: skip
        if key == INTERCEPT:
            b, b_var, b_known = m["value"], v, True
            kept.append((-1, position))
            continue
        if lookup is None:
            try:
                j = int(m["name"])
            except ValueError:
                continue
        else:
            j = lookup.get(key, -1)
        if 0 <= j < dim:
            index.append(j)
            value.append(m["value"])
            var.append(v)
            kept.append((j, position))
    check_finite_model(str(record["modelId"]), b, np.asarray(value, np.float64), file)
    order = np.argsort(np.asarray(index, np.int64), kind="stable")
    index_a = np.asarray(index, np.int64)[order]
    model = (b, index_a, np.asarray(value, np.float64)[order],
             np.r_[b_var, np.asarray(var, np.float64)[order]])  # fmt: skip
    covariance = None
    if cov is not None:
        covariance = _covariance_block(cov, record, kept, b_known, file)
    return model, b_known, covariance


def _covariance_block(cov: dict, record, kept, b_known, file: Path) -> np.ndarray:
    """The covariance of the kept coefficients, ``[b, w ascending]``: the stored matrix is
    over the record's means in order (the intercept first); dropped features are
    marginalized out (their rows and columns left out)."""
    matrix = cov.get(str(record["modelId"]))
    n = len(record["means"])
    if matrix is None or matrix.size != n * n:
        raise DataError(f"no {n}x{n} covariance for model '{record['modelId']}'", path=str(file))  # fmt: skip
    matrix = matrix.reshape(n, n)
    features = sorted((j, pos) for j, pos in kept if j >= 0)
    rows = ([pos for j, pos in kept if j < 0] if b_known else []) + [pos for _, pos in features]
    q = len(features) + 1
    out = np.full((q, q), np.nan)
    sub = matrix[np.ix_(rows, rows)]
    out[1 - int(b_known) :, 1 - int(b_known) :] = sub
    if not b_known:
        out[0, 0] = 1.0
    return out.ravel()


def covariance_file(avro: str | Path) -> Path:
    """Where the covariance matrices of an Avro model file are kept beside it."""
    avro = Path(avro)
    return avro.with_name(avro.name.removesuffix(".avro") + COVARIANCE_SUFFIX)


def write_covariances(path: str | Path, ids, models: EntityModels, members: np.ndarray) -> Path:
    """Models ``members``' covariance matrices (over each record's means in order: the
    intercept first, then the coefficients ascending) as an Arrow file, atomically."""
    cptr = covariance_ptr(models.coef_ptr)
    cov = np.asarray(models.covariances)
    lengths = cptr[members + 1] - cptr[members]
    offsets = np.zeros(members.size + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    source = np.repeat(cptr[members] - offsets[:-1], lengths) + np.arange(offsets[-1])
    table = pa.table({
        "entity": pa.array([str(i) for i in np.asarray(ids)[members]], pa.string()),
        "covariance": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(cov[source])),
    })  # fmt: skip
    with (storage.staged(path) as tmp, pa.OSFile(str(tmp), "wb") as sink,
          pa.ipc.new_file(sink, table.schema) as writer):  # fmt: skip
        writer.write_table(table)
    return storage.as_path(path)


def _read_covariances(path: Path) -> dict:
    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        column = table.column("covariance").combine_chunks()
        offsets, values = column.offsets.to_numpy(), column.values.to_numpy()
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise DataError(f"cannot read covariances: {exc}", path=str(path)) from None
    ids = table.column("entity").to_pylist()
    return {e: values[offsets[i] : offsets[i + 1]] for i, e in enumerate(ids)}
