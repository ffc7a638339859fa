"""``python -m raymix`` is the ``raymix`` command."""

from __future__ import annotations

import subprocess
import sys


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
