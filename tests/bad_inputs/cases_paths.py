"""Paths: data directories, globs, links and output directories."""

from __future__ import annotations

from raymix import RecipeError

from .corpus import Cli, case, parquet, rows


@case("plan", "training directory with no data files")
def empty_directory(w, where):
    (where / "train").mkdir()
    (where / "train" / "README").write_text("nothing here")
    return w.recipe(where / "train"), [str(where / "train"), "data.train", "no data files"]


@case("plan", "data file that is a broken symbolic link", cli=True)
def broken_symlink(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    link = where / "train" / "part-1.parquet"
    link.symlink_to(where / "gone.parquet")
    return w.recipe(where / "train"), [str(link), "broken symbolic link", "gone.parquet"]


@case("plan", "training directory that does not exist")
def train_missing(w, where):
    return w.recipe(where / "nowhere"), [str(where / "nowhere"), "data.train"]


@case("plan", "validation directory that does not exist")
def validation_missing(w, where):
    recipe = w.recipe(w.good / "train", validation=str(where / "nowhere"))
    return recipe, [str(where / "nowhere"), "data.validation"]


@case("plan", "a glob that matches no file")
def glob_matches_nothing(w, where):
    return w.recipe(str(where / "part-*.parquet")), [str(where / "part-*.parquet"), "data.train"]


@case("plan", "a list of files, one of them missing")
def list_with_missing_file(w, where):
    first = parquet(where / "a.parquet", rows())
    train = (first, where / "b.parquet")
    return w.recipe(train), [str(where / "b.parquet"), "data.train"]


@case("plan", "data.format 'tfrecord' given Parquet files")
def format_says_tfrecord(w, where):
    parquet(where / "train" / "part-0.parquet", rows())
    recipe = w.recipe(where / "train", format="tfrecord", metadata=str(w.metadata(where)))
    return recipe, [str(where / "train" / "part-0.parquet"), "not a TFRecord file"]


@case("plan", "a coordinate's own training data that does not exist")
def coordinate_data_missing(w, where):
    from raymix import Data

    recipe = w.good_recipe()
    spec = recipe.coordinates[0].model_copy(update={"data": Data(train=str(where / "nothing"))})
    recipe = recipe.model_copy(update={"coordinates": (spec,)})
    return recipe, [str(where / "nothing"), "data.train", "no such file or directory"]


# --- output directories -----------------------------------------------------------


@case("plan", "output directory not empty, without --overwrite", RecipeError, cli=True)
def output_not_empty(w, where):
    recipe = w.recipe(w.good / "train")
    return (recipe, False), [str(w.out), "not empty", "--overwrite"]


@case(
    "plan",
    "output is a user's directory (not a raymix run), even with --overwrite",
    RecipeError,
    cli=True,
)
def output_user_directory(w, where):
    mine = where / "my-thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    recipe = w.recipe(w.good / "train").model_copy(update={"output": str(mine)})
    return recipe, [str(mine), "refusing to overwrite", "not a raymix fit output"]


@case("plan", "output path is a file", RecipeError)
def output_is_a_file(w, where):
    path = where / "results.txt"
    path.write_text("precious")
    recipe = w.recipe(w.good / "train").model_copy(update={"output": str(path)})
    return recipe, [str(path), "not a directory"]


@case("plan", "output under a path that is a file", RecipeError)
def output_under_a_file(w, where):
    path = where / "results.txt"
    path.write_text("precious")
    recipe = w.recipe(w.good / "train").model_copy(update={"output": str(path / "out")})
    return recipe, [str(path / "out"), f"'{path}' is not a directory"]


@case("plan", "--resume of a directory that holds no run", RecipeError)
def resume_without_run(w, where):
    (where / "out").mkdir()
    return Cli(["fit", "--resume", where / "out", "--quiet"]), [
        str(where / "out"),
        "run.json",
    ]


@case("plan", "--resume of a run that has no checkpoint", RecipeError)
def resume_without_checkpoint(w, where):
    return Cli(["fit", "--resume", w.root / "fitted", "--quiet"]), [
        "nothing to resume",
        str(w.root / "fitted"),
    ]
