"""Columnar ``POST /predict`` bodies through the real Serve app on 127.0.0.1: JSON
``{"columns": ...}`` and an Arrow IPC stream score the same rows exactly as the row form does
(movieLens LR: sparse bags as pairs and as lists, an entity without a model, offsets; the
synthetic set: a dense bag); a bad body gets a 400 naming the column and the row, and the
service keeps answering."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from raymix.serving.columnar import ARROW_STREAM

from .conftest import HTTP_TIMEOUT
from .rows import arrow_body, as_columns, as_json_columns, assert_refused, validation_rows

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ARROW = {"content-type": ARROW_STREAM}
UNKNOWN_USER = 999_999_999  # no model for it


def post_columns(client: httpx.Client, url: str, columns: dict, arrow: bool, **kw) -> dict:
    if arrow:
        response = client.post(f"{url}/predict", content=arrow_body(columns, **kw), headers=ARROW)
    else:
        response = client.post(f"{url}/predict", json={"columns": columns})
    assert response.status_code == 200, response.text
    return response.json()


def row_form(client: httpx.Client, url: str, rows: list[dict]) -> dict:
    response = client.post(f"{url}/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    return as_json_columns(response.json())


def assert_same(columnar: dict, rows: dict) -> None:
    assert columnar.keys() == rows.keys()
    assert (columnar["run"], columnar["output"], columnar["uid"]) == (
        rows["run"],
        rows["output"],
        rows["uid"],
    )
    for part in ("scores", "probability"):
        np.testing.assert_allclose(columnar[part], rows[part], rtol=0, atol=1e-12)
    assert columnar["coordinates"].keys() == rows["coordinates"].keys()
    for name, scores in columnar["coordinates"].items():
        np.testing.assert_allclose(scores, rows["coordinates"][name], rtol=0, atol=1e-12)


def lists_of_pairs(pairs: dict, dim: int) -> list[list[float]]:
    out = []
    for index, values in zip(pairs["indices"], pairs["values"], strict=True):
        row = [0.0] * dim
        for j, v in zip(index, values, strict=True):
            row[j] = v
        out.append(row)
    return out


@pytest.fixture(scope="module")
def lr_col_url(lr_run, deploy) -> str:
    return deploy(lr_run.output, "lr-col")


def lr_rows(lr_run, n: int = 600) -> list[dict]:
    _, rows = validation_rows(lr_run.output)
    rows = [dict(row) for row in rows[:n]]
    for k, row in enumerate(rows):
        row["offset"] = 0.01 * (k % 7) - 0.03
        if k % 10 == 3:
            row["user_id"] = UNKNOWN_USER
    return rows


@pytest.mark.parametrize("arrow", [False, True], ids=["json", "arrow"])
def test_columnar_lr_scores_equal_the_row_forms(lr_run, lr_col_url, arrow):
    rows = lr_rows(lr_run)
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        expected = row_form(client, lr_col_url, rows)
        columns = as_columns(rows)
        got = post_columns(client, lr_col_url, columns, arrow, chunk=128)
        assert_same(got, expected)
        # a sparse bag given as lists of dim values (the dense form) scores the same
        dim = client.get(f"{lr_col_url}/").json()["bags"]["global"]["dim"]
        columns["global"] = lists_of_pairs(columns["global"], dim)
        assert_same(post_columns(client, lr_col_url, columns, arrow), expected)
        small = as_columns(rows[:3])  # a small request goes through the serve.batch queue
        assert_same(
            post_columns(client, lr_col_url, small, arrow), row_form(client, lr_col_url, rows[:3])
        )
    unknown = [k for k, row in enumerate(rows) if row["user_id"] == UNKNOWN_USER]
    assert unknown and all(got["coordinates"]["per-user"][k] == 0.0 for k in unknown)


def test_columnar_dense_bag_scores_equal_the_row_forms(synthetic_run, deploy):
    url = deploy(synthetic_run.output, "syn-col")
    _, rows = validation_rows(synthetic_run.output)
    rows = rows[:500]
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        expected = row_form(client, url, rows)
        columns = as_columns(rows)
        assert isinstance(columns["global"][0], list)  # the dense bag as lists
        assert_same(post_columns(client, url, columns, arrow=False), expected)
        dim = len(columns["global"][0])
        got = post_columns(client, url, columns, arrow=True, fixed={"global": dim})
        assert_same(got, expected)


def bad_bodies(columns: dict) -> list[tuple[dict | bytes, str]]:
    """(a JSON body or Arrow bytes, the start of the one-line reason)."""
    short = {**columns, "global": {"indices": [[50]], "values": [[1.0]]}}
    no_movie = {k: v for k, v in columns.items() if k != "movie_id"}
    dense = {**columns, "global": [[1.0, 2.0]]}
    return [
        ({"columns": {**columns, "nope": [1]}}, "columns.nope: unknown column"),
        ({"columns": no_movie}, "columns.movie_id: missing entity column"),
        ({"columns": dense}, "columns.global[0]: expected 44 values, got 2"),
        ({"columns": short}, "columns.global.indices[0][0]: feature index 50 outside [0, 44)"),
        (
            {"columns": {**columns, "offset": ["x"]}},
            'columns.offset[0]: expected a finite number, got "x"',
        ),
        ({"columns": {**columns, "offset": [1.0, 2.0]}}, "columns.offset: expected 1 rows"),
        (b'{"columns": {"user_id": [1]}}', "body: not an Arrow IPC stream"),
        (
            arrow_body({**columns, "offset": [float("nan")]}),
            "columns.offset[0]: expected a finite number, got nan",
        ),
        (arrow_body(no_movie), "columns.movie_id: missing entity column"),
    ]


def test_bad_columnar_bodies_get_400_naming_the_field_and_the_service_goes_on(lr_run, lr_col_url):
    rows = lr_rows(lr_run, 1)
    columns = as_columns(rows)
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        good = post_columns(client, lr_col_url, columns, arrow=False)
        for body, reason in bad_bodies(columns):
            if isinstance(body, bytes):
                response = client.post(f"{lr_col_url}/predict", content=body, headers=ARROW)
            else:
                response = client.post(f"{lr_col_url}/predict", json=body)
            assert_refused(response, reason)
        assert post_columns(client, lr_col_url, columns, arrow=True) == good
    # sent together (one serve.batch), a bad columnar request fails alone
    bad = {**columns, "global": [[1.0]]}
    statuses = asyncio.run(concurrently(lr_col_url, [columns, bad] * 8))
    assert statuses == [200, 400] * 8


async def concurrently(url: str, bodies: list[dict]) -> list[int]:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        responses = await asyncio.gather(
            *(client.post(f"{url}/predict", json={"columns": c}) for c in bodies)
        )
    return [r.status_code for r in responses]
