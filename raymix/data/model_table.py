"""Per-entity models as Arrow IPC files: the checkpoint's own format.

A checkpoint is written after every coordinate update and read back only by ``--resume``, so
it trades the Avro layout (a ``name, term, value`` triple per coefficient, ~6x the bytes) for
the models' own arrays: one row per entity with its id, intercept, coefficient indices and
values, variances, convergence flag and iterations. Writing is a copy of those arrays;
reading maps the file and picks entities by id, whatever actor or bucket wrote them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymix import storage
from raymix.solvers.entity import EntityModels

SUFFIX = ".arrow"


def models_table(entity_ids, models: EntityModels) -> pa.Table:
    """``models`` as a table in this module's layout (entity ``k`` has id ``entity_ids[k]``,
    an Arrow array or anything ``pa.array`` takes)."""
    entity = entity_ids if isinstance(entity_ids, pa.Array) else pa.array(np.asarray(entity_ids))
    ptr = pa.array(models.coef_ptr, pa.int64())
    columns = {
        "entity": entity,
        "intercept": pa.array(models.intercepts, pa.float64()),
        "index": pa.LargeListArray.from_arrays(ptr, pa.array(models.coef_index)),
        "value": pa.LargeListArray.from_arrays(ptr, pa.array(models.coef_value, pa.float64())),
        "converged": pa.array(models.converged, pa.bool_()),
        "iterations": pa.array(models.n_iter),
    }
    if models.variances is not None:
        var_ptr = pa.array(models.variance_ptr, pa.int64())
        columns["variance"] = pa.LargeListArray.from_arrays(var_ptr, pa.array(models.variances))
    return pa.table(columns)


def write_model_table(path: str | Path, entity_ids, models: EntityModels) -> Path:
    """Write ``models`` (entity ``k`` has id ``entity_ids[k]``) to ``path``, atomically."""
    table = models_table(entity_ids, models)
    with (
        storage.staged(path) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    return storage.as_path(path)


def _tables(directory: str | Path) -> list[str]:
    if storage.is_uri(directory):
        names = storage.list_dir(directory)
        return [storage.join(directory, n) for n in names if n.endswith(SUFFIX)]
    return [str(p) for p in sorted(Path(directory).glob(f"*{SUFFIX}"))]


def has_model_tables(directory: str | Path) -> bool:
    return storage.is_dir(directory) and bool(_tables(directory))


def read_model_tables(directory: str | Path) -> pa.Table:
    """Every model table under ``directory``, as one table (memory-mapped; read whole from
    an object store)."""
    tables = []
    for path in _tables(directory):
        if storage.is_uri(path):
            tables.append(pa.ipc.open_file(pa.py_buffer(storage.read_bytes(path))).read_all())
            continue
        with pa.memory_map(path) as source:
            tables.append(pa.ipc.open_file(source).read_all())
    if not tables:
        raise FileNotFoundError(f"no {SUFFIX} model tables in {directory}")
    return pa.concat_tables(tables)


def select_models(table: pa.Table, wanted, dim: int) -> tuple[EntityModels, int]:
    """The models of the entities ``wanted`` (ids, in the order wanted) from ``table``, and how
    many were found; one not found gets an empty model (intercept 0, no coefficients), and
    coefficients on features ``>= dim`` are dropped."""
    ids = table.column("entity").combine_chunks()
    wanted = pa.array(np.asarray(wanted))
    if wanted.type != ids.type:  # ints against strings: compare their decimal text
        wanted, ids = wanted.cast(pa.large_string()), ids.cast(pa.large_string())
    n = len(wanted)
    if len(ids) == 0:  # no models at all: every entity starts empty
        empty = np.zeros(0, np.int64)
        models = EntityModels(np.zeros(n), np.zeros(n + 1, np.int64), empty, np.zeros(0),
                              np.ones(n, bool), np.zeros(n, np.int32))  # fmt: skip
        return models, 0
    rows = pc.index_in(wanted, value_set=ids)
    found = rows.is_valid().to_numpy(zero_copy_only=False)
    at = rows.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)

    def ragged(name):
        column = table.column(name).combine_chunks()
        offsets = column.offsets.to_numpy().astype(np.int64)
        values = column.values.to_numpy()
        lengths = np.where(found, offsets[at + 1] - offsets[at], 0)
        out_ptr = np.zeros(at.size + 1, np.int64)
        np.cumsum(lengths, out=out_ptr[1:])
        source = np.repeat(offsets[at] - out_ptr[:-1], lengths) + np.arange(out_ptr[-1])
        return out_ptr, values[source]

    def flat(name, dtype, missing):
        values = table.column(name).to_numpy().astype(dtype)
        return np.where(found, values[at], missing) if at.size else np.zeros(0, dtype)

    ptr, index = ragged("index")
    _, value = ragged("value")
    keep = index < dim
    variances = None
    if "variance" in table.column_names and found.all() and keep.all():
        _, variances = ragged("variance")
    if not keep.all():  # a feature list that shrank: those coefficients have no feature
        owner = np.repeat(np.arange(at.size), np.diff(ptr))
        ptr = np.zeros(at.size + 1, np.int64)
        np.cumsum(np.bincount(owner[keep], minlength=at.size), out=ptr[1:])
        index, value = index[keep], value[keep]
    models = EntityModels(
        flat("intercept", np.float64, 0.0),
        ptr,
        index.astype(np.int64),
        value.astype(np.float64),
        flat("converged", bool, True),
        flat("iterations", np.int32, 0),
        variances,
    )
    return models, int(found.sum())
