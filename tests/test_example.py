"""``raymix fit`` with no recipe: the synthetic example, generated once into the cache
directory, needing nothing outside the package."""

from __future__ import annotations

import json

import pytest

from raymix import cli, example


@pytest.fixture
def small(monkeypatch, tmp_path):
    monkeypatch.setenv("RAYMIX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(example, "ROWS", 3000)
    monkeypatch.setattr(example, "USERS", 30)
    monkeypatch.setattr(example, "ITEMS", 10)
    return tmp_path


def test_the_example_data_are_generated_once(small):
    said: list[str] = []
    root = example.example_data(said.append)
    assert root == small / "cache" / "example-synthetic"
    assert json.loads((root / "summary.json").read_text())["train_rows"] == 2700
    assert said[0].startswith("generating the example data (3,000 synthetic rows)")
    stamp = (root / "summary.json").stat().st_mtime_ns
    assert example.example_data(said.append) == root
    assert said[-1] == f"using the example data in {root}"
    assert (root / "summary.json").stat().st_mtime_ns == stamp


def test_the_example_recipe_reads_the_example_data(small):
    recipe = example.example_recipe(small / "d", output=str(small / "out"))
    assert [c.name for c in recipe.coordinates] == ["global", "per-user", "per-item"]
    assert recipe.data.validation == str(small / "d" / "validation")


@pytest.mark.slow
def test_fit_without_a_recipe_fits_the_example(small, capsys):
    out = small / "out"
    assert cli.main(["fit", "--quiet", "--set", f"output={out}", "--set", "passes=1"]) == 0
    printed = capsys.readouterr().out
    assert "planted model (the truth the data were drawn from): validation AUC" in printed
    assert "per-item" in printed and (out / "_SUCCESS").is_file()
