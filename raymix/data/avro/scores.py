"""GDMix score files (gdmix-reference.md §4.6): one Avro record per row.

Fields: ``uid``, ``predictionScore`` (the cumulative logit), ``predictionScorePerCoordinate``
(the coordinate's own), label and weight. Written with numpy (:mod:`.container`), not record
by record; every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import fastavro
import numpy as np

from raymix import storage
from raymix.data.avro.models import avro_files
from raymix.errors import DataError


def score_schema(uid: str, label: str | None, weight: str | None) -> dict:
    """GDMix's score record (gdmix-reference.md §4.6), as plain JSON."""
    fields: list[dict] = [
        {"name": uid, "type": "long"},
        {"name": "predictionScore", "type": "float"},
    ]
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

    Encoded with numpy (:mod:`raymix.data.avro.container`), not record by record.
    """
    from raymix.data.avro.container import write_container

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
    with storage.staged(path) as tmp, open(tmp, "wb") as handle:
        write_container(handle, schema, columns)
    return storage.as_path(path)


def read_scores_avro(path: str | Path, uid: str = "uid", score: str = "predictionScore"):
    """(uid int64, score float64) arrays of every score file under ``path``, checked
    (:func:`checked_scores`); a uid scored in two files fails naming ``path``."""
    uids, scores = [], []
    for file in avro_files(path):
        file_uids, file_scores = [], []
        try:
            with storage.open_input(file) as handle:
                for record in cast(Iterator[dict], fastavro.reader(handle)):
                    file_uids.append(record[uid])
                    file_scores.append(record[score])
        except KeyError as exc:
            raise DataError(
                "score record lacks a field", path=str(file), column=str(exc.args[0])
            ) from None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read Avro score file: {exc}", path=str(file)) from None
        one = checked_scores(file_uids, file_scores, (uid, score), str(file))
        uids.append(one[0])
        scores.append(one[1])
    return checked_scores(np.concatenate(uids), np.concatenate(scores), (uid, score), str(path))


def checked_scores(uid, score, names: tuple[str, str], source: str):
    """``(uid int64, score float64)``: integer uids, each once, and finite scores within
    raymix's limits (:func:`raymix.data.rows.check_finite`), or a DataError naming
    ``source``, the row and the column."""
    from raymix.data.rows import check_finite, check_unique

    uid_name, score_name = names
    given = np.asarray(uid)
    if given.size and not np.issubdtype(given.dtype, np.integer):
        row = next(k for k, u in enumerate(uid) if not isinstance(u, int | np.integer))
        raise DataError(
            f"uid {uid[row]!r} is not an integer", path=source, row=row, column=uid_name
        )
    uid = given.astype(np.int64)
    score = np.asarray(score, np.float64)
    check_unique(uid, uid_name, source)
    check_finite(score, score_name, source)
    return uid, score
