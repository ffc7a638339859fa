"""Bad input never corrupts output: a corpus of bad inputs, each failing with one clear message.

The cases (``cases_<format>.py``, registered into :data:`corpus.CASES`) are run as a user
would: loading the recipe file, ``raymix.run.fit(recipe, overwrite=True)`` into an output
directory that holds a real previous run, ``raymix score``, ``raymix tune``, or the command
line's arguments. Each case checks that

1. it raises one RaymixError whose one-line message names the file (and the row, column or
   field) and says what is wrong (a command line: exit code 2 and exactly one
   ``raymix: error:`` line);
2. the previous run in the output directory is byte-for-byte intact: a case found before the
   output is touched ("recipe", "plan") leaves nothing else behind; a case found only while
   reading ("read") restores the previous run and keeps the failed run's partial outputs in
   a hidden ``.NAME.failed-PID`` sibling, and says so;
3. a representative subset (about one per format) exits from ``python -m raymix.cli`` with
   code 2 and exactly one ``raymix: error:`` line, no traceback, no line from Ray.

``RAYMIX_BAD_INPUTS_DOC=docs/bad-inputs.md python -m pytest tests/bad_inputs`` rewrites the
table of cases and their messages in ``docs/bad-inputs.md``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from raymix import Recipe
from raymix.data.avro.scores import write_scores_avro
from raymix.recipe.load import load_recipe
from raymix.run import fit

from . import (  # noqa: F401  (each module registers its cases, in this order)
    cases_cli,
    cases_featurelists,
    cases_gdmix,
    cases_metadata,
    cases_models,
    cases_parquet,
    cases_paths,
    cases_recipes,
    cases_score,
    cases_scores,
    cases_tfrecord,
    cases_tune,
    cases_values,
)
from .corpus import CASES, STAGES, Call, Cli, Load, World, files_of, parquet, rows

pytestmark = [pytest.mark.ray]

MESSAGES: dict[str, str] = {}
ROOTS: list[str] = []


@pytest.fixture(scope="module")
def world(ray_session, tmp_path_factory) -> World:
    import numpy as np

    root = tmp_path_factory.mktemp("bad-inputs")
    good = root / "good"
    parquet(good / "train" / "part-0.parquet", rows(20, 0, 0))
    parquet(good / "train" / "part-1.parquet", rows(20, 20, 1))
    parquet(good / "validation" / "part-0.parquet", rows(20, 1000, 2))
    for split, uid in (("train", np.arange(40)), ("validation", np.arange(1000, 1020))):
        scores = np.linspace(-1, 1, uid.size)  # an external model's scores of the good rows
        write_scores_avro(
            good / "scores" / split / "part-00000.avro", uid, scores, scores, None, None
        )
    w = World(root, root / "out", {})
    ROOTS.append(str(root))
    fit(w.good_recipe("both"))
    w.previous = files_of(w.out)
    assert "run.json" in w.previous and "per-user/models/part-00000.avro" in w.previous
    shutil.copytree(w.out, root / "fitted")  # a finished fit to score, copy and spoil
    return w


def run_case(w: World, c, where: Path) -> str:
    """Run case ``c``; its one-line message (after checking the fragments)."""
    target, fragments = c.build(w, where)
    overwrite = True
    if isinstance(target, tuple):
        target, overwrite = target
    if isinstance(target, Path):
        target = Load(target)
    if isinstance(target, Cli):
        from raymix.cli import main

        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main([str(a) for a in target.argv])
            except SystemExit as exc:  # a usage error: argparse exits
                code = exc.code
        lines = stderr.getvalue().splitlines()
        assert code == 2, stderr.getvalue()
        assert len(lines) == 1 and lines[0].startswith("raymix: error: "), lines
        message = lines[0].removeprefix("raymix: error: ")
    else:
        with pytest.raises(c.error) as caught:
            if isinstance(target, Load):
                load_recipe(target.path, target.overrides)
            elif isinstance(target, Call):
                target.function()
            else:
                fit(target, overwrite=overwrite)
        message = str(caught.value)
        assert message == caught.value.message and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    MESSAGES[c.id] = message
    return message


def params(cases):
    return [pytest.param(c, id=c.id, marks=list(c.marks)) for c in cases]


@pytest.mark.parametrize("c", params(CASES))
def test_bad_input_fails_clearly_and_keeps_the_previous_run(world, c):
    try:
        message = run_case(world, c, world.case_dir(c.id))
        assert files_of(world.out) == world.previous, "the previous run changed"
        left = sorted(world.out.parent.glob(f".{world.out.name}.*"))
        if c.stage == "read":  # the failed run's partial outputs, kept beside the previous run
            assert [p.name.split("-")[0] for p in left] == [f".{world.out.name}.failed"], left
            assert (left[0] / "run.json").is_file()
            assert f"the previous run in '{world.out}' is unchanged" in message
            assert f"this run's partial outputs are in '{left[0]}'" in message
        else:  # refused before the output directory was touched
            assert not left, "something was left beside the output"
    finally:
        for path in world.out.parent.glob(f".{world.out.name}.*"):
            shutil.rmtree(path)


def test_the_corpus_covers_enough_cases():
    assert len(CASES) >= 200
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.stage for c in CASES} == set(STAGES)
    formats = Counter(c.format for c in CASES)
    wanted = {
        "recipes", "gdmix", "paths", "parquet", "tfrecord", "metadata", "values",
        "models", "scores", "featurelists", "cli", "score", "tune",
    }  # fmt: skip
    assert set(formats) == wanted, formats
    assert all(n >= 5 for n in formats.values()), formats
    cli = {c.format for c in CASES if c.cli}
    assert cli >= wanted - {"metadata"}, cli  # a command-line run of (about) every format


def test_the_document_lists_the_corpus_as_it_is():
    """docs/bad-inputs.md is generated from the corpus: regenerate it (module docstring)
    when a case is added, renamed or moved."""
    if os.environ.get("RAYMIX_BAD_INPUTS_DOC"):
        pytest.skip("the document is being regenerated by this run")
    doc = (Path(__file__).parents[2] / "docs" / "bad-inputs.md").read_text()
    counts = Counter(c.format for c in CASES)
    said = f"{len(CASES)} cases: " + ", ".join(f"{fmt} {n}" for fmt, n in counts.items()) + "."
    assert said in doc, "docs/bad-inputs.md's counts are stale: regenerate it"
    rows = re.findall(r"^\| (\d+) \| (\w+) \| (.+?) \| (recipe|plan|read) \| `", doc, re.M)
    listed = [(int(k), fmt, what, stage) for k, fmt, what, stage in rows]
    assert listed == [(k, c.format, c.what, c.stage) for k, c in enumerate(CASES, 1)]


CLI_CASES = [c for c in CASES if c.cli]


def command_of(world: World, c, where: Path) -> tuple[list[str], list[str], bool]:
    target, fragments = c.build(world, where)
    overwrite = True
    if isinstance(target, tuple):
        target, overwrite = target
    if isinstance(target, Cli):
        return [str(a) for a in target.argv], fragments, False
    if isinstance(target, Path):
        target = Load(target)
    if isinstance(target, Load):
        sets = [a for o in target.overrides for a in ("--set", o)]
        return ["fit", str(target.path), *sets, "--quiet", "--overwrite"], fragments, False
    assert isinstance(target, Recipe), f"{c.id}: a Call has no command line"
    path = where / "recipe.json"
    path.write_text(target.model_dump_json())
    return ["fit", str(path), "--quiet", *(["--overwrite"] if overwrite else [])], fragments, True


@pytest.mark.parametrize("c", params(CLI_CASES))
def test_cli_prints_one_error_line_and_exits_2(world, c, ray_session):
    where = world.root / "cli" / c.id
    where.mkdir(parents=True)
    args, fragments, is_fit = command_of(world, c, where)
    if is_fit and c.stage == "read":  # join the session's Ray instead of starting another one
        args += ["--address", ray_session.get_runtime_context().gcs_address]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "raymix.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("raymix: error:")]
    assert done.returncode == 2, done.stderr
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == errors, done.stderr  # no line from Ray either
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    assert files_of(world.out) == world.previous
    if c.stage == "read":
        assert f"the previous run in '{world.out}' is unchanged" in errors[0]
    for failed in world.out.parent.glob(f".{world.out.name}.failed-*"):
        shutil.rmtree(failed)


@pytest.fixture(scope="module", autouse=True)
def table_of_messages():
    """With RAYMIX_BAD_INPUTS_DOC set, write the cases and their messages as a Markdown table."""
    yield
    target = os.environ.get("RAYMIX_BAD_INPUTS_DOC")
    expected = [c for c in CASES if not any(m.name == "xfail" for m in c.marks)]
    if not target or any(c.id not in MESSAGES for c in expected):
        return
    counts = Counter(c.format for c in CASES)
    lines = [
        "# Bad inputs and their messages",
        "",
        "Generated by `RAYMIX_BAD_INPUTS_DOC=docs/bad-inputs.md python -m pytest tests/bad_inputs`",
        "from the cases in `tests/bad_inputs/cases_*.py` (one module per format). Each fit",
        "writes into an output directory holding a previous run, with `--overwrite`; every",
        "case checks that the previous run is intact. *Stage* says when the input is",
        "refused: **recipe** while loading the recipe file; **plan** before the output directory",
        "is touched or Ray is started (recipe, paths, Parquet schemas of every file, the first",
        "records of every TFRecord file against the metadata; for `raymix score` and",
        "`raymix tune`, before they write anything); **read** while the workers read",
        "the rows, after which the previous run is moved back into the output directory and the",
        "failed run's partial outputs are kept in a hidden `.NAME.failed-PID` sibling.",
        "A command line prints the message as `raymix: error: MESSAGE` and exits with code 2.",
        "`<tmp>` stands for the test's temporary directory.",
        "",
        "**Limits.** Every label, weight, offset and feature value must be finite and at most",
        "1e12 in magnitude (`raymix.data.rows.LARGEST_VALUE`); weights are >= 0 and not all",
        "zero in a split. Beyond that a weighted sum of losses or a squared feature overflows",
        "float64, or one row swamps all others: the fit collapses (an AUC of 0.5) instead of",
        "failing, so such values are refused, naming the file, row and column. Rescale the",
        "column (a weight's scale does not matter, only the ratios between rows do).",
        "",
        f"{len(CASES)} cases: "
        + ", ".join(f"{fmt} {n}" for fmt, n in counts.items())
        + ". A case marked *(known bug)* is an expected failure (`xfail`) of the corpus.",
        "",
        "| # | Format | Case | Stage | Message (`raymix: error: ...`) |",
        "|---|--------|------|-------|--------------------------------|",
    ]
    for k, c in enumerate(CASES, 1):
        known = [m.kwargs.get("reason", "") for m in c.marks if m.name == "xfail"]
        message = f"(known bug) {known[0]}" if known else MESSAGES[c.id]
        for root in ROOTS:
            message = message.replace(root, "<tmp>")
        message = re.sub(r"(failed|previous)-\d+", r"\1-PID", message).replace("|", "\\|")
        lines.append(f"| {k} | {c.format} | {c.what} | {c.stage} | `{message}` |")
    Path(target).write_text("\n".join(lines) + "\n")
