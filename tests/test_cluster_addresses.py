"""``raymix fit --address``, absolute paths and output locations, checked before anything runs.

No Ray is started here: every case fails (or passes) before ``ray.init``. The real cluster
run is in ``test_cluster_job.py``.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from raymix.cli import main
from raymix.engine.cluster import check_address
from raymix.errors import RecipeError
from raymix.outputs import absolute_paths, local_output, prepare_output
from raymix.recipe.load import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "recipes" / "movielens_lr.py")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_unreachable_address_fails_fast_in_one_line_before_any_output(capsys, tmp_path):
    port = closed_port()
    out = tmp_path / "out"
    started = time.perf_counter()
    code, err = run(
        capsys, "fit", RECIPE, "--set", f"output={out}", "--address", f"127.0.0.1:{port}"
    )
    assert time.perf_counter() - started < 30
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("raymix: error: ConnectionError: ")
    assert f"cannot reach a Ray cluster at '127.0.0.1:{port}'" in err
    assert not out.exists()


def test_unresolvable_host_in_ray_address_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "no-such-host.invalid:6379")
    code, err = run(capsys, "fit", RECIPE, "--set", f"output={tmp_path / 'out'}")
    assert code == 1 and err.count("\n") == 1
    assert "cannot reach a Ray cluster at 'no-such-host.invalid:6379'" in err


@pytest.mark.parametrize(
    ("address", "hint"),
    [
        ("http://127.0.0.1:8265", "ray job submit --address http://127.0.0.1:8265"),
        ("https://head:8265", "dashboard (job submission) address"),
        ("ray://127.0.0.1:10001", "Ray Client (ray://) is not supported"),
        ("s3://bucket", "not a Ray cluster address"),
        ("127.0.0.1", "use host:port"),
        ("head:port", "use host:port"),
    ],
)
def test_addresses_raymix_cannot_use_are_refused_with_a_hint(capsys, tmp_path, address, hint):
    code, err = run(capsys, "fit", RECIPE, "--set", f"output={tmp_path}/o", "--address", address)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("raymix: error: address: ") and hint in err


def test_a_dashboard_address_in_ray_address_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    code, err = run(capsys, "fit", RECIPE, "--set", f"output={tmp_path}/o", "--dry-run")
    assert code == 2 and "unset RAY_ADDRESS" in err


def test_auto_and_host_port_are_accepted():
    assert check_address(None) is None and check_address("  ") is None
    assert check_address("auto") == "auto"
    assert check_address(" 10.0.0.1:6379 ") == "10.0.0.1:6379"
    assert check_address("[::1]:6379") == "[::1]:6379"
    with socket.socket() as server:  # something listens: reachable
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        assert check_address(address, reach=True) == address


@pytest.mark.parametrize("uri", ["ftp://host/runs/movielens", "webdav://host/out"])
def test_outputs_of_an_unknown_scheme_are_refused_up_front(capsys, uri):
    """Object stores are outputs now (tests/test_object_storage.py); other schemes are not."""
    code, err = run(capsys, "fit", RECIPE, "--set", f"output={uri}")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"raymix: error: output: '{uri}' has an unknown scheme")
    with pytest.raises(RecipeError, match="unknown scheme"):
        prepare_output(uri, overwrite=False)
    with pytest.raises(RecipeError, match="is a URI"):
        local_output(Path("s3://bucket/out"))  # Path() turns s3:// into s3:/: still a URI


def test_recipe_paths_become_absolute_for_the_cluster(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(
        RECIPE, ["output=runs/ml", "coordinates.per-user.warm_start=old/per-user/models"]
    )
    resolved = absolute_paths(recipe)
    assert resolved.output == str(tmp_path / "runs" / "ml")
    assert resolved.coordinate("per-user").warm_start == str(tmp_path / "old/per-user/models")
    assert resolved.coordinate("global").warm_start is None
    out, previous = prepare_output("rel/out", overwrite=False)
    assert out == tmp_path / "rel" / "out" and out.is_dir() and previous is None
