"""Which form ``POST /predict`` answers in for an ``Accept`` header, and the Arrow answer's
columns built from a scored batch, without Ray."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pytest

from raymix.serving.model import Scored
from raymix.serving.requests import Batch, RequestError
from raymix.serving.responses import (
    ARROW_STREAM,
    JSON,
    Answer,
    NotAcceptable,
    accepted,
    body,
)


@pytest.mark.parametrize(
    ("header", "form"),
    [
        (None, JSON),
        ("", JSON),
        ("application/json", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("text/html, */*;q=0.1", JSON),
        (ARROW_STREAM, ARROW_STREAM),
        ("Application/Vnd.Apache.Arrow.Stream", ARROW_STREAM),
        (f"{ARROW_STREAM}, application/json", ARROW_STREAM),  # a tie: Arrow, named exactly
        (f"application/json, {ARROW_STREAM}", ARROW_STREAM),
        (f"{ARROW_STREAM};q=0.5, application/json", JSON),
        (f"application/json;q=0.2, {ARROW_STREAM};q=0.9", ARROW_STREAM),
        (f"{ARROW_STREAM};q=0, */*", JSON),
        (f"application/json;q=0, {ARROW_STREAM}", ARROW_STREAM),
        (f"{ARROW_STREAM}; charset=utf-8", ARROW_STREAM),  # other parameters are no weight
    ],
)
def test_the_form_an_accept_header_asks_for(header, form):
    assert accepted(header) == form


@pytest.mark.parametrize(
    "header", ["text/html", "image/png, text/*", f"application/json;q=0, {ARROW_STREAM};q=0.0"]
)
def test_an_accept_header_naming_neither_form_is_not_acceptable(header):
    with pytest.raises(NotAcceptable) as caught:
        accepted(header)
    assert str(caught.value).startswith("headers.accept: expected application/json or ")


@pytest.mark.parametrize("q", ["x", "1.5", "-0.1", "nan"])
def test_a_weight_that_is_not_a_number_in_0_1_is_refused(q):
    with pytest.raises(RequestError) as caught:
        accepted(f"application/json;q={q}")
    assert not isinstance(caught.value, NotAcceptable)
    assert str(caught.value) == f"headers.accept: q must be a number in [0, 1], got {q!r}"


def scored_batch(uid: list) -> Answer:
    rng = np.random.default_rng(3)
    n = len(uid)
    own = {"global": rng.normal(size=n) * 30, "per-user": rng.normal(size=n) / 7}
    total = 0.25 + own["global"] + own["per-user"]
    batch = Batch(n=n, uid=uid, offset=np.full(n, 0.25), bags={}, entities={}, texts={})
    scored = Scored(total, own, 1 / (1 + np.exp(-total)))
    return Answer("run-a", "/out/a", batch, scored, 1, n - 1, columnar=True)


def arrow_table(answer: Answer) -> pa.Table:
    return pa.ipc.open_stream(body(answer, ARROW_STREAM)).read_all()


def test_the_arrow_answer_holds_the_json_answers_numbers_exactly():
    answer = scored_batch([10, 11, None, 13, 14])
    table = arrow_table(answer)
    expected = orjson.loads(body(answer, JSON))
    assert table.schema.metadata == {b"run": b"run-a", b"output": b"/out/a"}
    assert table.column_names == ["scores", "coordinates", "probability", "uid"]
    assert table.column("scores").to_pylist() == expected["scores"]
    assert table.column("probability").to_pylist() == expected["probability"]
    coordinates = table.column("coordinates").combine_chunks()
    assert [f.name for f in coordinates.type] == ["global", "per-user"]
    for name, values in expected["coordinates"].items():
        assert coordinates.field(name).to_pylist() == values
    assert table.column("uid").type == pa.int64()
    assert table.column("uid").to_pylist() == expected["uid"] == [11, None, 13]
    # the JSON numbers are the float64 values themselves (shortest repr, read back exactly)
    assert expected["scores"] == answer.scored.total[1:4].tolist()


@pytest.mark.parametrize(
    ("uid", "column", "kind"),
    [
        (["a", "b", "c", "d"], ["b", "c"], pa.string()),
        ([0, 7, "x", 0], ["7", "x"], pa.string()),  # a mix: as strings
        ([0, 2**70, 3, 0], [str(2**70), "3"], pa.string()),  # beyond int64: as strings
    ],
)
def test_uids_beyond_one_arrow_integer_type_go_out_as_strings(uid, column, kind):
    table = arrow_table(scored_batch(uid))
    assert table.column("uid").type == kind
    assert table.column("uid").to_pylist() == column


def test_no_uids_no_uid_column_and_no_probability_for_a_linear_run():
    answer = scored_batch([None] * 4)
    linear = Answer(
        answer.run,
        answer.output,
        answer.batch,
        Scored(answer.scored.total, answer.scored.coordinates, None),
        0,
        4,
        columnar=True,
    )
    assert arrow_table(linear).column_names == ["scores", "coordinates"]
    assert set(orjson.loads(body(linear, JSON))) == {"run", "output", "scores", "coordinates"}
