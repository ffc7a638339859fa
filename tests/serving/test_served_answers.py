"""Arrow answers (``Accept: application/vnd.apache.arrow.stream``) through the real Serve app
on 127.0.0.1: for a row-form, a JSON-columns and an Arrow request, large (scored at once) and
small (through the serve.batch queue), the Arrow answer holds exactly the numbers of the JSON
answer; an ``Accept`` naming neither form gets a 406, a bad weight a 400, and the service goes
on."""

from __future__ import annotations

import httpx
import pyarrow as pa
import pytest

from raymix.serving.columnar import ARROW_STREAM

from .conftest import HTTP_TIMEOUT
from .rows import arrow_body, as_columns, as_json_columns, validation_rows

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def lr_answers_url(lr_run, deploy) -> str:
    return deploy(lr_run.output, "lr-answers")


def requests_of(rows: list[dict]) -> dict[str, tuple[bytes, str]]:
    """Each request form of ``rows``: (body, content type)."""
    import json

    columns = as_columns(rows)
    return {
        "rows": (json.dumps({"rows": rows}).encode(), "application/json"),
        "json columns": (json.dumps({"columns": columns}).encode(), "application/json"),
        "arrow": (arrow_body(columns, chunk=100), ARROW_STREAM),
    }


def from_arrow(content: bytes) -> dict:
    table = pa.ipc.open_stream(content).read_all()
    coordinates = table.column("coordinates").combine_chunks()
    return {
        "run": table.schema.metadata[b"run"].decode(),
        "output": table.schema.metadata[b"output"].decode(),
        "scores": table.column("scores").to_pylist(),
        "coordinates": {f.name: coordinates.field(f.name).to_pylist() for f in coordinates.type},
        "probability": table.column("probability").to_pylist(),
        "uid": table.column("uid").to_pylist(),
    }


@pytest.mark.parametrize("n", [600, 3], ids=["at-once", "queued"])
def test_an_arrow_answer_holds_the_json_answers_numbers_exactly(lr_run, lr_answers_url, n):
    _, rows = validation_rows(lr_run.output)
    rows = rows[:n]
    url = f"{lr_answers_url}/predict"
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        for form, (content, kind) in requests_of(rows).items():
            plain = client.post(url, content=content, headers={"content-type": kind})
            assert plain.status_code == 200, (form, plain.text)
            assert plain.headers["content-type"] == "application/json"
            arrow = client.post(
                url, content=content, headers={"content-type": kind, "accept": ARROW_STREAM}
            )
            assert arrow.status_code == 200, (form, arrow.text)
            assert arrow.headers["content-type"] == ARROW_STREAM
            expected = as_json_columns(plain.json())
            assert len(expected["scores"]) == n
            assert from_arrow(arrow.content) == expected, form  # the same floats, bit for bit


@pytest.mark.parametrize(
    ("accept", "status", "reason"),
    [
        ("text/html", 406, "headers.accept: expected application/json or "),
        ("application/json;q=high", 400, "headers.accept: q must be a number in [0, 1]"),
    ],
)
def test_a_bad_accept_header_is_refused_and_the_service_goes_on(
    lr_run, lr_answers_url, accept, status, reason
):
    _, rows = validation_rows(lr_run.output)
    url = f"{lr_answers_url}/predict"
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        response = client.post(url, json={"rows": rows[:2]}, headers={"accept": accept})
        assert response.status_code == status
        assert response.json()["error"].startswith(reason)
        again = client.post(url, json={"rows": rows[:2]}, headers={"accept": "*/*"})
        assert again.status_code == 200 and len(again.json()["predictions"]) == 2
