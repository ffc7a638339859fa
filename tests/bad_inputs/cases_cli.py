"""The command line's own arguments (``raymix.cli.main``): a usage error, a bad ``--set`` or
``--resume``: exit code 2 and one ``raymix: error:`` line, nothing touched."""

from __future__ import annotations

from raymix import RecipeError

from .corpus import Cli, case


def fit(w, where, *options):
    recipe = w.run_json(where, w.raw())
    return Cli(["fit", recipe, *options, "--quiet", "--overwrite"])


@case("plan", "unknown command", cli=True)
def cli_unknown_command(w, where):
    return Cli(["fitt", w.good / "train"]), ["argument COMMAND: invalid choice: 'fitt'"]


@case("plan", "unknown flag of fit")
def cli_unknown_flag(w, where):
    return fit(w, where, "--overwirte"), ["unrecognized arguments: --overwirte", "raymix --help"]


@case("plan", "score without --out")
def cli_score_without_out(w, where):
    return Cli(["score", w.root / "fitted"]), ["the following arguments are required: --out"]


@case("plan", "tune without --search")
def cli_tune_without_search(w, where):
    recipe = w.run_json(where, w.raw())
    return Cli(["tune", recipe]), ["the following arguments are required: --search"]


@case("recipe", "--set of a value of the wrong type", RecipeError, cli=True)
def cli_set_wrong_type(w, where):
    return fit(w, where, "--set", "passes=two"), ["passes", "integer"]


@case("recipe", "--set of an unknown field", RecipeError)
def cli_set_unknown_field(w, where):
    return fit(w, where, "--set", "coordinates.per-user.l3=2"), [
        "coordinates.per-user.l3",
        "unknown field",
    ]


@case("recipe", "--set without '='", RecipeError)
def cli_set_without_equals(w, where):
    return fit(w, where, "--set", "passes"), ["--set expects path=value", "'passes'"]


@case("plan", "--resume with a recipe as well", RecipeError)
def cli_resume_with_recipe(w, where):
    recipe = w.run_json(where, w.raw())
    return Cli(["fit", recipe, "--resume", w.out, "--quiet"]), [
        "--resume OUT takes no recipe and no --set"
    ]


@case("plan", "--resume of a file", RecipeError)
def cli_resume_a_file(w, where):
    path = where / "results.txt"
    path.write_text("precious")
    return Cli(["fit", "--resume", path, "--quiet"]), [
        f"'{path}' is not a raymix output",
        "holds no run.json",
    ]


@case("plan", "--prior with --resume", RecipeError)
def cli_prior_with_resume(w, where):
    return Cli(["fit", "--resume", w.out, "--prior", w.root / "fitted", "--quiet"]), [
        "--resume OUT takes no --prior"
    ]
