"""``--dry-run`` checks that the output can be written (``--resume OUT`` resuming in OUT is
tested with the killed driver in tests/test_resume.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raymix.cli import main
from raymix.errors import RecipeError
from raymix.outputs import check_writable


def test_the_output_must_be_writable(tmp_path):
    check_writable(tmp_path / "new" / "deeper")  # to be made under a writable directory
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RecipeError, match="exists and is not a directory"):
        check_writable(tmp_path / "a-file")
    with pytest.raises(RecipeError, match="is not a writable directory"):
        check_writable(tmp_path / "a-file" / "out")


def test_dry_run_refuses_an_output_it_could_not_write(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    recipe = str(Path(__file__).parents[1] / "recipes" / "movielens_lr.py")
    code = main(["fit", recipe, "--set", f"output={tmp_path}/a-file/out", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not a writable directory" in err
