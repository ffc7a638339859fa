"""``python -m raymix`` is the ``raymix`` command."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_python_dash_m_raymix_runs_the_command(tmp_path):
    missing = tmp_path / "missing.py"
    done = subprocess.run(
        [sys.executable, "-m", "raymix", "fit", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"raymix: error: recipe file not found: {missing}"]
    shown = subprocess.run(
        [sys.executable, "-m", "raymix", "--help"], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0 and shown.stdout.startswith("usage: raymix ")


@pytest.mark.parametrize(
    "argv, says",
    [
        (["fit", "--bogus"], "unrecognized arguments: --bogus (see: raymix --help)"),
        (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
        (["score"], "the following arguments are required: model_dir, data, --out"),
        (["fit", "--set"], "argument --set: expected one argument (see: raymix fit --help)"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(argv, says, capsys):
    from raymix.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("raymix: error: ") and says in err[0], err
