"""A run's validation data as ``POST /predict`` rows (JSON-ready), for the serving tests.

Every coordinate's validation files are read with the readers ``raymix score`` uses and
joined by uid; values go out as the exact float64 of what the files hold (TFRecord floats are
float32), so a served row sees the numbers ``raymix score`` sees.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from raymix.coordinates.inputs import build_source
from raymix.data.rows import rows_from_table
from raymix.data.source import read_table
from raymix.recipe.load import load_recipe
from raymix.recipe.spec import DeepEffect, RandomEffect


def validation_rows(output: Path, dense_as_dict: bool = False) -> tuple[np.ndarray, list[dict]]:
    """(uids, rows) of the run's validation data, in the first coordinate's uid order."""
    recipe = load_recipe(Path(output) / "run.json")
    by_uid: dict[int, dict] = {}
    order: list[int] = []
    for k, spec in enumerate(recipe.coordinates):
        entity = spec.entity if isinstance(spec, RandomEffect) else None
        data = recipe.data_for(spec)
        data = data.model_copy(update={"train": data.validation, "validation": None})
        source = build_source(
            data,
            recipe.columns,
            split="train",
            bag=spec.feature_bag,
            entity=entity,
            label_optional=True,
        )
        text = spec.text_column if isinstance(spec, DeepEffect) else None
        for path in source.files:
            if text:
                from raymix.deep.inputs import read_text_table, texts_of

                table = read_text_table(source, text, path)
                texts = texts_of(table.column(text))
            else:
                table = read_table(source, path)
            rows = rows_from_table(table, source.schema, source=path)
            X = rows.X
            for r, uid in enumerate(rows.uid.tolist()):
                if k == 0:
                    order.append(uid)
                    by_uid[uid] = {"uid": uid, "offset": float(rows.offset[r])}
                row = by_uid[uid]
                if isinstance(spec.feature_bag, tuple):  # scalar columns: a field each
                    for j, column in enumerate(spec.feature_bag):
                        row[column] = float(X[r, j])
                elif spec.feature_bag:
                    if sp.issparse(X):
                        lo, hi = X.indptr[r], X.indptr[r + 1]
                        row[spec.feature_bag] = {
                            str(j): float(v)
                            for j, v in zip(
                                X.indices[lo:hi].tolist(), X.data[lo:hi].tolist(), strict=True
                            )
                        }
                    elif dense_as_dict:
                        row[spec.feature_bag] = {
                            str(j): float(v) for j, v in enumerate(X[r].tolist()) if v
                        }
                    else:
                        row[spec.feature_bag] = [float(v) for v in X[r].tolist()]
                if entity:
                    value = rows.entity[r]
                    row[entity] = value if isinstance(value, str) else int(value)
                if text:
                    row[text] = texts[r]
    return np.asarray(order, np.int64), [by_uid[u] for u in order]


def as_columns(rows: list[dict], dense: str = "lists") -> dict:
    """``rows`` (every one with the same fields) as the columns of a columnar body: a bag given
    as objects becomes its ``{"indices", "values"}`` pairs (the keys as integers when they are
    all decimal), one given as lists stays lists; ``dense="pairs"`` gives lists as pairs too."""
    columns: dict = {}
    for name in rows[0]:
        given = [row[name] for row in rows]
        if isinstance(given[0], list) and dense == "pairs":
            given = [{str(j): v for j, v in enumerate(values) if v} for values in given]
        if isinstance(given[0], dict):
            keys = [list(d) for d in given]
            if all(k.isdigit() for ks in keys for k in ks):
                keys = [[int(k) for k in ks] for ks in keys]
            given = {"indices": keys, "values": [list(d.values()) for d in given]}
        columns[name] = given
    return columns


def arrow_body(
    columns: dict, chunk: int | None = None, fixed: dict | None = None, number=None
) -> bytes:
    """JSON-style ``columns`` as an Arrow IPC stream (record batches of ``chunk`` rows): bags'
    pairs as ``struct<indices, values>``, lists of numbers as ``list<double>`` (as
    ``fixed_size_list`` of ``fixed[name]`` values for the bags named there); ``number``: the
    bags' value type (float64 by default)."""
    import pyarrow as pa

    number = number or pa.float64()
    arrays = {}
    for name, given in columns.items():
        if isinstance(given, dict):
            named = any(isinstance(k, str) for ks in given["indices"] for k in ks)
            arrays[name] = pa.StructArray.from_arrays(
                [
                    pa.array(given["indices"], pa.list_(pa.string() if named else pa.int32())),
                    pa.array(given["values"], pa.list_(number)),
                ],
                names=["indices", "values"],
            )
        elif isinstance(given[0], list):
            arrays[name] = pa.array(given, pa.list_(number, (fixed or {}).get(name, -1)))
        elif isinstance(given[0], float):
            arrays[name] = pa.array(given, pa.float64())
        else:
            arrays[name] = pa.array(given)
    return ipc_stream(pa.table(arrays), chunk)


def ipc_stream(table, chunk: int | None = None) -> bytes:
    """An Arrow table as an IPC stream of record batches of ``chunk`` rows."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=chunk)
    return sink.getvalue().to_pybytes()


def as_json_columns(answer: dict) -> dict:
    """A row-form JSON answer in the columnar answer's layout."""
    if "predictions" not in answer:
        return answer
    predictions = answer["predictions"]
    return {
        "run": answer["run"],
        "output": answer["output"],
        "scores": [p["score"] for p in predictions],
        "coordinates": {
            c: [p["coordinates"][c] for p in predictions] for c in predictions[0]["coordinates"]
        },
        "probability": [p["probability"] for p in predictions],
        "uid": [p["uid"] for p in predictions],
    }


def assert_refused(response, reason: str) -> None:
    """An HTTP 400 whose one-line ``error`` begins with ``reason``."""
    assert response.status_code == 400, (reason, response.text)
    message = response.json()["error"]
    assert message.startswith(reason), (reason, message)
    assert "\n" not in message
