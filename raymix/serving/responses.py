"""The body of a scored ``POST /predict``, in the form its ``Accept`` header asks for.

JSON (``application/json``, the default): the row form's ``{"run", "output", "predictions"}``
for a row-form request, the columnar ``{"run", "output", "scores", "coordinates",
"probability"?, "uid"?}`` for a columnar one (:mod:`.requests`, :mod:`.columnar`).

Arrow (``Accept: application/vnd.apache.arrow.stream``, for any request form): an Arrow IPC
stream of one record batch, one row a request row, with the columnar answer's columns::

    scores       double
    coordinates  struct<name: double, ...>   each coordinate's own score, in the run's order
    probability  double                      a logistic run only
    uid          int64 or string             when the request gave uids (null for a row
                                             without one; mixed integers and strings, or an
                                             integer beyond int64, as strings)

and the run's name and output directory in the schema's metadata (``run``, ``output``). The
same float64 values as the JSON answer's numbers (JSON prints each one by its shortest repr).

The header is read as RFC 9110 says: media ranges with optional ``q`` weights; the form with
the higher weight wins, Arrow on a tie only when named exactly (``*/*`` alone means JSON).
A header naming neither form is refused (406), a weight that is not a number in [0, 1] is a
400; both name the header (``headers.accept: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

from raymix.serving.columnar import ARROW_STREAM
from raymix.serving.model import Scored
from raymix.serving.requests import Batch, RequestError

JSON = "application/json"
FORMS = (JSON, ARROW_STREAM)


class NotAcceptable(RequestError):
    """An ``Accept`` header naming no form the service answers in (HTTP 406)."""


@dataclass(frozen=True)
class Answer:
    """Rows ``start:stop`` of a scored batch, by the run ``run`` (its ``output`` directory);
    ``columnar``: the request was columnar (its JSON answer is too)."""

    run: str
    output: str
    batch: Batch
    scored: Scored
    start: int
    stop: int
    columnar: bool


def accepted(header: str | None) -> str:
    """The form to answer in (:data:`JSON` or :data:`ARROW_STREAM`) for an ``Accept`` header."""
    if header is None or not header.strip():
        return JSON
    weight = {form: (-1, 0.0) for form in FORMS}  # form: (specificity of its range, q)
    for item in header.split(","):
        if not item.strip():
            continue
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower()
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                q = _weight(value.strip())
        for form in FORMS:
            kind = form.split("/")[0]
            specificity = {form: 2, f"{kind}/*": 1, "*/*": 0}.get(media, -1)
            if specificity > weight[form][0]:
                weight[form] = (specificity, q)
    json_q, (arrow_rank, arrow_q) = weight[JSON][1], weight[ARROW_STREAM]
    if json_q <= 0 and arrow_q <= 0:
        raise NotAcceptable(f"expected {JSON} or {ARROW_STREAM}, got {header!r}", "headers.accept")
    if arrow_q > json_q or (arrow_q == json_q and arrow_rank == 2):
        return ARROW_STREAM
    return JSON


def body(answer: Answer, form: str) -> bytes:
    """The response body of ``answer`` in ``form`` (one of :data:`FORMS`)."""
    if form == ARROW_STREAM:
        return arrow_body(answer)
    return orjson.dumps(json_answer(answer), option=orjson.OPT_SERIALIZE_NUMPY)


def json_answer(answer: Answer) -> dict:
    """The JSON answer as a dict; columnar numbers as float64 arrays (orjson prints them as
    it prints Python floats)."""
    from raymix.serving.requests import predictions

    a, s = answer, answer.scored
    if not a.columnar:
        out = predictions(a.run, a.batch, s, a.start, a.stop)
        out["output"] = a.output
        return out
    part = slice(a.start, a.stop)
    out = {
        "run": a.run,
        "output": a.output,
        "scores": np.ascontiguousarray(s.total[part]),
        "coordinates": {c: np.ascontiguousarray(v[part]) for c, v in s.coordinates.items()},
    }
    if s.probability is not None:
        out["probability"] = np.ascontiguousarray(s.probability[part])
    uid = a.batch.uid[part]
    if any(u is not None for u in uid):
        out["uid"] = uid
    return out


def arrow_body(answer: Answer) -> bytes:
    a, s = answer, answer.scored
    part = slice(a.start, a.stop)
    names = list(s.coordinates)
    columns = {
        "scores": pa.array(s.total[part], pa.float64()),
        "coordinates": pa.StructArray.from_arrays(
            [pa.array(s.coordinates[c][part], pa.float64()) for c in names], names=names
        )
        if names
        else pa.array([{}] * (a.stop - a.start), pa.struct([])),
    }
    if s.probability is not None:
        columns["probability"] = pa.array(s.probability[part], pa.float64())
    uid = a.batch.uid[part]
    if any(u is not None for u in uid):
        columns["uid"] = _uids(uid)
    batch = pa.RecordBatch.from_pydict(columns, metadata={"run": a.run, "output": a.output})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _uids(uid: list) -> pa.Array:
    kinds = {type(u) for u in uid} - {type(None)}
    if kinds == {int}:
        try:
            return pa.array(uid, pa.int64())
        except (OverflowError, pa.ArrowException):  # an integer beyond int64: as a string
            pass
    return pa.array([None if u is None else str(u) for u in uid], pa.string())


def _weight(value: str) -> float:
    try:
        q = float(value)
    except ValueError:
        q = -1.0
    if not 0.0 <= q <= 1.0:
        raise RequestError(f"q must be a number in [0, 1], got {value!r}", "headers.accept")
    return q
