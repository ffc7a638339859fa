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
                if spec.feature_bag:
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
