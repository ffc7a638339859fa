"""Runs to serve (fitted once per session: movieLens LR, a small DeText, two synthetic runs),
their ``raymix score`` scores, and Ray Serve on 127.0.0.1 on a free port.

Every wait is bounded: the Serve application is up within ``raymix.serving.serve``'s timeout,
every HTTP call has a timeout, and Serve is shut down after the session.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from raymix.data.avro.scores import read_scores_avro
from raymix.recipe.load import load_recipe
from raymix.run import fit
from raymix.scoring import score_command

REPO = Path(__file__).resolve().parents[2]
HTTP_TIMEOUT = 60.0  # seconds, per request (a loaded 2-core machine)
DEEP_SMALL = [  # a small DeText: the serving path, not the AUC, is under test
    "coordinates.global.steps=60",
    "coordinates.global.embedding_size=8",
    "coordinates.global.filters=4",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """A fitted run and what ``raymix score`` gives for its validation rows."""

    def __init__(self, output: Path, scores_dir: Path):
        self.output = output
        uid, score = read_scores_avro(score_command(output, [], scores_dir))
        self.score_of = dict(zip(uid.tolist(), score.tolist(), strict=True))

    def expected(self, uids) -> np.ndarray:
        return np.asarray([self.score_of[u] for u in uids])


def _fit(recipe_file: str, output: Path, overrides: list[str]) -> Path:
    fit(load_recipe(REPO / "recipes" / recipe_file, [f"output={output}", *overrides]))
    return output


@pytest.fixture(scope="session")
def lr_run(movielens, ray_session, tmp_path_factory) -> Run:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYMIX_MOVIELENS", str(movielens))
        root = tmp_path_factory.mktemp("serve-lr")
        return Run(_fit("movielens_lr.py", root / "fit", []), root / "scores")


@pytest.fixture(scope="session")
def deep_run(movielens, ray_session, tmp_path_factory) -> Run:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYMIX_MOVIELENS", str(movielens))
        root = tmp_path_factory.mktemp("serve-deep")
        return Run(_fit("movielens_detext.py", root / "fit", DEEP_SMALL), root / "scores")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    from raymix.datasets.synthetic import generate_synthetic

    dest = tmp_path_factory.mktemp("serve-synthetic") / "data"
    generate_synthetic(
        dest, rows=6000, users=300, items=60, global_features=8, entity_features=4, seed=3
    )
    return dest


def _synthetic(data: Path, root: Path, overrides: list[str]) -> Run:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYMIX_SYNTHETIC", str(data))
        return Run(_fit("synthetic_glmix.py", root / "fit", overrides), root / "scores")


@pytest.fixture(scope="session")
def synthetic_run(synthetic_data, ray_session, tmp_path_factory) -> Run:
    return _synthetic(synthetic_data, tmp_path_factory.mktemp("serve-syn"), [])


@pytest.fixture(scope="session")
def synthetic_run_2(synthetic_data, ray_session, tmp_path_factory) -> Run:
    """The same data and layout, other models (stronger l2 everywhere)."""
    overrides = [f"coordinates.{c}.l2=400" for c in ("global", "per-user", "per-item")]
    return _synthetic(synthetic_data, tmp_path_factory.mktemp("serve-syn-2"), overrides)


@pytest.fixture(scope="session")
def serve_port(ray_session):
    """Ray Serve's HTTP proxy on 127.0.0.1:<free port> for the session."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()


@pytest.fixture(scope="session")
def deploy(serve_port):
    """``deploy(output, app)``: the URL of ``output`` served as application ``app`` (under
    ``/app``); every application is deleted at the end."""
    import raymix.serving

    apps: list[str] = []

    def deploy(output: Path, app: str) -> str:
        url = raymix.serving.serve(
            output, port=serve_port, app=app, route_prefix=f"/{app}", timeout=300
        )
        apps.append(app)
        return url

    yield deploy
    # a later module may have restarted the session's Ray (tests/s3server.py does, to give
    # its workers the S3 environment): Serve went with it, and there is nothing to delete
    for app in apps:
        try:
            raymix.serving.shutdown(app)
        except Exception as exc:
            if "Can't find actor" not in str(exc):
                raise
            return
