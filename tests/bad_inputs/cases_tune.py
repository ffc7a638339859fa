"""``raymix tune`` (:func:`raymix.tune.search`) with a bad search space or output: refused
before Ray starts or anything is written, naming the space file and its key."""

from __future__ import annotations

from raymix import RecipeError
from raymix.tune import search

from .corpus import Call, Cli, case

HEADER = "from ray import tune\n\n"


def space_file(where, body: str):
    path = where / "space.py"
    path.write_text(HEADER + body)
    return path


def tuning(w, space, out) -> Call:
    return Call(lambda: search(w.good_recipe("both"), space, out=out))


@case("plan", "search space value the recipe rejects (a negative l2)", RecipeError, cli=True)
def tune_value_rejected(w, where):
    space = space_file(where, "space = {'coordinates.per-user.l2': tune.choice([-1.0, 1.0])}\n")
    recipe = w.run_json(where, w.raw("both"))
    argv = ["tune", recipe, "--search", space, "--out", where / "tune", "--quiet"]
    return Cli(argv), [
        str(space),
        "space key 'coordinates.per-user.l2' = -1.0",
        "l2 must be a number >= 0",
    ]


@case("plan", "search space key of an unknown field", RecipeError)
def tune_unknown_field(w, where):
    space = space_file(where, "space = {'coordinates.per-user.l22': tune.choice([1.0, 2.0])}\n")
    return tuning(w, space, where / "tune"), [
        str(space),
        "coordinates.per-user.l22",
        "unknown field",
    ]


@case("plan", "search space key of an unknown coordinate", RecipeError)
def tune_unknown_coordinate(w, where):
    space = space_file(where, "space = {'coordinates.per-item.l2': tune.loguniform(0.1, 10)}\n")
    return tuning(w, space, where / "tune"), [str(space), "'per-item'"]


@case("plan", "search space file that does not exist", RecipeError)
def tune_space_missing(w, where):
    return tuning(w, where / "nope.py", where / "tune"), [
        "search space file not found",
        str(where / "nope.py"),
    ]


@case("plan", "search space file without 'space'", RecipeError)
def tune_space_undefined(w, where):
    space = space_file(where, "spaces = {}\n")
    return tuning(w, space, where / "tune"), [str(space), "must define a dict named 'space'"]


@case("plan", "search space file that raises", RecipeError)
def tune_space_raises(w, where):
    space = space_file(where, "space = {'passes': tune.choice([1, 2])}\n1 / 0\n")
    return tuning(w, space, where / "tune"), [
        str(space),
        "error while running the search space",
        "ZeroDivisionError",
    ]


@case("plan", "an empty search space", RecipeError)
def tune_space_empty(w, where):
    space = space_file(where, "space = {}\n")
    return tuning(w, space, where / "tune"), [str(space), "space", "non-empty"]


@case("plan", "unknown searcher", RecipeError)
def tune_unknown_searcher(w, where):
    space = space_file(where, "space = {'passes': tune.choice([1, 2])}\nsearcher = 'bayes'\n")
    return tuning(w, space, where / "tune"), [str(space), "searcher must be one of", "'bayes'"]


@case("plan", "num_samples = 0", RecipeError)
def tune_zero_samples(w, where):
    space = space_file(where, "space = {'passes': tune.choice([1, 2])}\nnum_samples = 0\n")
    return tuning(w, space, where / "tune"), [str(space), "num_samples"]


@case("plan", "tune --out that is a file", RecipeError)
def tune_out_is_a_file(w, where):
    space = space_file(where, "space = {'passes': tune.choice([1, 2])}\n")
    out = where / "results.txt"
    out.write_text("precious")
    return tuning(w, space, out), [str(out), "exists and is not a directory"]


@case("plan", "tune --overwrite of a directory that holds no search", RecipeError)
def tune_overwrite_not_a_search(w, where):
    space = space_file(where, "space = {'passes': tune.choice([1, 2])}\n")
    (where / "mine").mkdir()
    (where / "mine" / "thesis.tex").write_text("precious")
    call = Call(lambda: search(w.good_recipe("both"), space, out=where / "mine", overwrite=True))
    return call, [str(where / "mine"), "--overwrite only replaces a previous search"]


@case("plan", "tune --resume with no search to resume", RecipeError)
def tune_resume_nothing(w, where):
    space = space_file(where, "space = {'passes': tune.choice([1, 2])}\n")
    call = Call(lambda: search(w.good_recipe("both"), space, out=where / "tune", resume=True))
    return call, ["--resume: no search to resume", str(where / "tune")]
