"""``POST /predict`` over HTTP on 127.0.0.1 scores every validation row as ``raymix score``
does (to 1e-6): movieLens LR, movieLens DeText (the deep coordinate) and the synthetic set;
bad requests get a 400 naming the field and the service keeps answering."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from .conftest import HTTP_TIMEOUT
from .rows import assert_refused, validation_rows

pytestmark = [pytest.mark.slow, pytest.mark.ray]

CHUNK = 1000  # rows per request


def predict(client: httpx.Client, url: str, rows: list[dict]) -> dict:
    response = client.post(f"{url}/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    return response.json()


def served_scores(url: str, rows: list[dict]) -> tuple[list[dict], set[str]]:
    """Every row's prediction, in order, and the outputs that scored them."""
    out: list[dict] = []
    outputs = set()
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        for start in range(0, len(rows), CHUNK):
            body = predict(client, url, rows[start : start + CHUNK])
            outputs.add(body["output"])
            out.extend(body["predictions"])
    return out, outputs


def check_equal_to_batch_scoring(run, url: str, dense_as_dict: bool = False) -> list[dict]:
    uids, rows = validation_rows(run.output, dense_as_dict=dense_as_dict)
    predictions, outputs = served_scores(url, rows)
    assert outputs == {str(run.output.resolve())}
    assert [p["uid"] for p in predictions] == uids.tolist()
    served = np.asarray([p["score"] for p in predictions])
    np.testing.assert_allclose(served, run.expected(uids.tolist()), rtol=0, atol=1e-6)
    for p, row in zip(predictions, rows, strict=True):  # the parts add up to the total
        parts = row["offset"] + sum(p["coordinates"].values())
        assert p["score"] == pytest.approx(parts, abs=1e-9)
        assert p["probability"] == pytest.approx(1 / (1 + np.exp(-p["score"])), abs=1e-12)
    return predictions


@pytest.fixture(scope="module")
def lr_url(lr_run, deploy) -> str:
    return deploy(lr_run.output, "lr")


def test_movielens_lr_served_scores_equal_raymix_score(lr_run, lr_url):
    predictions = check_equal_to_batch_scoring(lr_run, lr_url)
    # validation rows of movies without a model are among them, scored by the others alone
    unseen = [p for p in predictions if p["coordinates"]["per-movie"] == 0.0]
    assert unseen


def test_an_entity_without_a_model_gets_the_other_coordinates_scores(lr_run, lr_url):
    _, rows = validation_rows(lr_run.output)
    row = rows[0]
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        known = predict(client, lr_url, [row])["predictions"][0]
        stranger = predict(client, lr_url, [{**row, "user_id": "no-such-user"}])["predictions"][0]
    assert known["coordinates"]["per-user"] != 0.0
    assert stranger["coordinates"]["per-user"] == 0.0
    others = {k: v for k, v in known["coordinates"].items() if k != "per-user"}
    assert {k: stranger["coordinates"][k] for k in others} == others
    assert stranger["score"] == pytest.approx(
        known["score"] - known["coordinates"]["per-user"], abs=1e-12
    )


def test_features_by_name_score_as_by_index(lr_run, lr_url):
    from raymix.coordinates.inputs import feature_names
    from raymix.recipe.load import load_recipe

    recipe = load_recipe(lr_run.output / "run.json")
    names = feature_names(recipe.data, "global", 44)
    _, rows = validation_rows(lr_run.output)
    row = rows[1]

    def key(j: int) -> str:
        name, term = names[int(j)]
        return name if not term else f"{name},{term}"

    named = {**row, "global": {key(j): v for j, v in row["global"].items()}}
    assert named["global"].keys() != row["global"].keys()
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        a, b = predict(client, lr_url, [row, named])["predictions"]
    assert a["score"] == b["score"]


def test_healthz_and_root_name_the_run(lr_run, lr_url):
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        health = client.get(f"{lr_url}/healthz")
        root = client.get(f"{lr_url}/")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "run": "movielens-lr"}
    about = root.json()
    assert about["run"] == "movielens-lr"
    assert about["output"] == str(lr_run.output.resolve())
    assert [c["name"] for c in about["coordinates"]] == ["global", "per-user", "per-movie"]
    assert about["coordinates"][1]["models"] > 900  # ml-100k has 943 users
    assert about["replica_memory_bytes"] > about["model_bytes"] > 0


def bad_requests(row: dict) -> list[tuple[dict | str, str]]:
    """(body, the start of the one-line reason) for each kind of bad request."""
    without_movie = {k: v for k, v in row.items() if k != "movie_id"}
    return [
        ('{"rows": [{"user_id": 1}', "body: not valid JSON"),
        ({"rows": []}, "rows: expected a non-empty list"),
        ({"rows": [7]}, "rows[0]: expected an object"),
        ({"rows": [row, {**row, "per_item": {}}]}, "rows[1].per_item: unknown field"),
        ({"rows": [without_movie]}, "rows[0].movie_id: missing entity id"),
        ({"rows": [{**row, "movie_id": 1.5}]}, "rows[0].movie_id: expected an integer or a"),
        ({"rows": [{**row, "global": {"0": "x"}}]}, "rows[0].global.0: expected a finite number"),
        ({"rows": [{**row, "global": {"0": 10**400}}]}, "rows[0].global.0: expected a finite"),
        ({"rows": [{**row, "global": [1.0, 2.0]}]}, "rows[0].global: expected 44 values, got 2"),
        ({"rows": [{**row, "global": {"44": 1.0}}]}, "rows[0].global.44: feature index 44"),
        ({"rows": [{**row, "global": {"nope": 1.0}}]}, "rows[0].global.nope: no such feature"),
        ({"rows": [{**row, "offset": True}]}, "rows[0].offset: expected a finite number"),
        ({"rows": [{**row, "global": None}]}, "rows[0].global: expected an object"),
        ({"rows": [row], "extra": 1}, "extra: unknown field"),
    ]


def test_bad_requests_get_400_naming_the_field_and_the_service_goes_on(lr_run, lr_url):
    _, rows = validation_rows(lr_run.output)
    row = rows[0]
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        good = predict(client, lr_url, [row])
        for body, reason in bad_requests(row):
            if isinstance(body, str):
                response = client.post(f"{lr_url}/predict", content=body)
            else:
                response = client.post(f"{lr_url}/predict", json=body)
            assert_refused(response, reason)
        assert client.get(f"{lr_url}/predict").status_code == 405
        assert client.get(f"{lr_url}/nowhere").status_code == 404
        assert client.get(f"{lr_url}/healthz").status_code == 200
        assert predict(client, lr_url, [row]) == good
    # sent together (one serve.batch), a bad request fails alone
    statuses = asyncio.run(concurrently(lr_url, [[row], [{**row, "global": 3}]] * 8))
    assert statuses == [200, 400] * 8


async def concurrently(url: str, bodies: list[list[dict]]) -> list[int]:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        responses = await asyncio.gather(
            *(client.post(f"{url}/predict", json={"rows": rows}) for rows in bodies)
        )
    return [r.status_code for r in responses]


def test_deep_coordinate_served_scores_equal_raymix_score(deep_run, deploy):
    url = deploy(deep_run.output, "deep")
    predictions = check_equal_to_batch_scoring(deep_run, url)
    assert {p["coordinates"]["global"] != 0.0 for p in predictions} == {True}


def test_synthetic_served_scores_equal_raymix_score(synthetic_run, deploy):
    url = deploy(synthetic_run.output, "syn")
    check_equal_to_batch_scoring(synthetic_run, url)  # the dense bag as lists
    check_equal_to_batch_scoring(synthetic_run, url, dense_as_dict=True)
    _, rows = validation_rows(synthetic_run.output)
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        response = client.post(
            f"{url}/predict", json={"rows": [{**rows[0], "global": rows[0]["global"][:-1]}]}
        )
    assert response.status_code == 400
    assert response.json()["error"] == "rows[0].global: expected 8 values, got 7"


def test_a_bag_of_scalar_columns_is_served_a_field_per_column(columns_run, deploy):
    url = deploy(columns_run.output, "columns")
    check_equal_to_batch_scoring(columns_run, url)
    _, rows = validation_rows(columns_run.output)
    assert {"age", "price", "user"} <= rows[0].keys() and "age+price" not in rows[0]
    without_price = {k: v for k, v in rows[0].items() if k != "price"}
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        missing = client.post(f"{url}/predict", json={"rows": [without_price]})
        text = client.post(f"{url}/predict", json={"rows": [{**rows[0], "age": "old"}]})
    assert missing.status_code == 400 and text.status_code == 400
    assert missing.json()["error"] == "rows[0].price: missing feature column"
    assert text.json()["error"] == 'rows[0].age: expected a finite number, got "old"'
