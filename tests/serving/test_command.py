"""``raymix serve``: bad input is one line and exit 2, before Ray starts."""

from __future__ import annotations

import socket

import pytest

from raymix.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve"], "raymix serve needs the output directory of a fit"),
        (["serve", "/nonexistent-run"], "is not a raymix fit output (no run.json)"),
        (["serve", "A", "--swap", "B"], "give OUT (to serve it) or --swap OUT2"),
    ],
)
def test_bad_arguments_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_port_and_replicas_are_checked():
    from raymix.errors import RecipeError
    from raymix.serving.command import check_port, check_replicas

    with pytest.raises(RecipeError, match="--port: expected an integer in 1..65535, got '0'"):
        check_port("0", "127.0.0.1")
    with pytest.raises(RecipeError, match="--replicas: expected an integer >= 1, got 'x'"):
        check_replicas("x")
    assert check_replicas("3") == 3
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RecipeError, match=f"--port: cannot listen on 127.0.0.1:{port}"):
            check_port(str(port), "127.0.0.1")
