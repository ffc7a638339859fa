"""The ``raymix`` command: fit | score | serve | data | tune | k8s.

Exit code 0 on success; on bad input a one-line error and a non-zero code (2 for a recipe
or data error, 1 for anything else), with the traceback only under ``--debug``.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from raymix.console import OneLineParser  # noqa: E402
from raymix.errors import RaymixError, RecipeError  # noqa: E402
from raymix.errors import unwrap as _unwrap


def run() -> None:
    """The ``raymix`` command: :func:`main`, its exit handlers, then the process ends.

    By then every output is closed and renamed into place and Ray is shut down; tearing down
    the interpreter's modules (Ray's core worker, Arrow, numba, TensorFlow) costs ~0.5 s.
    """
    code = main()
    atexit._run_exitfuncs()  # what a normal exit runs (flushes, Ray's own shutdown if up)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    from raymix.engine.cluster import VERBOSE, quiet_environment

    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ[VERBOSE] = "1"
    quiet_environment()  # before pyarrow allocates: it picks its memory pool once
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt as exc:  # where the runs are, as a failure says (outputs._tell)
        notes = "; ".join(getattr(exc, "__notes__", ()))
        print(interrupted(getattr(args, "resumable", None), notes), file=sys.stderr)
        return 130
    except BaseException as exc:  # one line, unless --debug
        cause = _unwrap(exc)
        if getattr(args, "debug", False):
            raise
        if isinstance(cause, RaymixError):
            print(f"raymix: error: {cause.message}", file=sys.stderr)
            return 2
        if isinstance(cause, SystemExit):
            raise
        print(f"raymix: error: {type(cause).__name__}: {cause}", file=sys.stderr)
        return 1


def interrupted(output: str | None, notes: str = "") -> str:
    """What an interrupted command says: where its runs are (``notes``) and, for a fit that
    saved a checkpoint (in its output, or staged by an object-store ``--overwrite`` run), how
    to resume."""
    said = "raymix: interrupted" + (f" ({notes})" if notes else "")
    if output:
        from raymix.checkpoint import Checkpoint
        from raymix.outputs import interrupted_staging

        try:
            saved = Checkpoint(interrupted_staging(output) or output).exists()
        except Exception:  # an unreachable store: say no more than that it stopped
            saved = False
        if saved:
            return (
                f"{said}; continue from the last checkpoint with: "
                f"raymix fit --resume {shlex.quote(str(output))}"
            )
    return said


def _add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set PATH=VALUE`` (repeatable) into ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE", help=help
    )


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="raymix",
        description="Train generalized (deep) mixed models - GLMix/GAME, like GDMix and Photon ML - on Ray.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    fit = sub.add_parser(
        "fit",
        help="train a recipe (recipe.py, run.json or a GDMix YAML/JSON config); without one, "
        "a synthetic example",
    )
    fit.add_argument(
        "recipe",
        nargs="?",
        help="recipe .py file, resolved run.json, or GDMix config (none: the synthetic example)",
    )
    fit.add_argument(
        "--resume",
        metavar="OUT",
        default=None,
        help="continue an interrupted run from its output directory's last checkpoint",
    )
    _add_overrides(
        fit, "override a recipe field, e.g. --set passes=3 --set coordinates.per-user.l2=0.5"
    )
    fit.add_argument(
        "--prior",
        metavar="PREVIOUS_OUT",
        default=None,
        help="incremental training: a previous run's output (its models and variances) as "
        "the Gaussian prior of every fixed and random effect",
    )
    fit.add_argument(
        "--dry-run", action="store_true", help="validate recipe, schema and paths; print the plan"
    )
    fit.add_argument(
        "--overwrite", action="store_true", help="replace a previous run in the output directory"
    )
    fit.add_argument(
        "--address",
        default=None,
        help="join a Ray cluster: 'auto' (inside 'ray job submit') or the head's host:port "
        "(default: RAY_ADDRESS, else a local Ray)",
    )
    fit.add_argument("--quiet", action="store_true", help="no progress lines")
    fit.add_argument("--verbose", action="store_true", help="show Ray's own log lines too")
    fit.add_argument(
        "--mlflow",
        metavar="URI",
        help="log the fit to MLflow (file:///path/mlruns, a path or a server; needs raymix[mlflow])",
    )
    fit.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    fit.set_defaults(handler=_fit)

    from raymix.scoring_command import add_parser as add_score_parser

    add_score_parser(sub)

    from raymix.serving.command import add_parser as add_serve_parser

    add_serve_parser(sub)

    data = sub.add_parser("data", help="prepare data sets")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATASET")
    movielens = data_sub.add_parser(
        "movielens", help="convert raw MovieLens 100k into GDMix's layout"
    )
    movielens.add_argument(
        "--source",
        default=None,
        help="directory with u.data, u.item, u.user (default: GroupLens's ml-100k.zip, "
        "downloaded once into the user's cache directory)",
    )
    movielens.add_argument("--url", default=None, help="where to download ml-100k.zip from")
    movielens.add_argument("--md5", default=None, help="the MD5 the download must have")
    movielens.add_argument("--dest", required=True, help="output directory")
    movielens.add_argument(
        "--seed", type=int, default=0, help="seed of the 80/20 split (default 0)"
    )
    movielens.add_argument("--format", choices=["tfrecord", "parquet"], default="tfrecord")
    movielens.add_argument(
        "--overwrite", action="store_true", help="replace a previous conversion in --dest"
    )
    movielens.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    movielens.set_defaults(handler=_movielens)
    _synthetic_parser(data_sub)

    _tune_parser(sub)

    k8s = sub.add_parser("k8s", help="Kubernetes (KubeRay) manifests")
    k8s_sub = k8s.add_subparsers(dest="k8s_command", metavar="ACTION")
    render = k8s_sub.add_parser("render", help="write RayCluster and RayJob manifests for a recipe")
    render.add_argument("recipe")
    render.add_argument(
        "--out", default="k8s/rendered", help="output directory (default k8s/rendered)"
    )
    render.add_argument("--workers", type=int, default=2)
    render.add_argument("--worker-cpus", type=float, default=2)
    render.add_argument("--worker-memory-gib", type=float, default=8)
    render.add_argument("--image", default="raymix:0.1.0")
    render.add_argument("--namespace", default="default")
    render.add_argument(
        "--data-pvc",
        default=None,
        help="PVC with data and outputs ('' for none; default: raymix-data, or none when the "
        "recipe's data and outputs are all in an object store)",
    )
    _add_overrides(
        render, "a recipe override for the job's raymix fit, e.g. --set output=/mnt/raymix/out"
    )
    render.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable of the job (its runtime env), e.g. RAYMIX_MOVIELENS=/data/ml",
    )
    render.add_argument(
        "--fit-overwrite",
        action="store_true",
        help="the job's raymix fit replaces a previous run in its output directory",
    )
    render.add_argument(
        "--overwrite", action="store_true", help="replace manifests already in --out"
    )
    render.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    render.set_defaults(handler=_k8s_render)
    return parser


def _progress(quiet: bool):
    """Progress lines (:mod:`raymix.console`): live on a terminal, timestamped otherwise."""
    from raymix.console import Progress

    return Progress(quiet=quiet)


def _fit(args) -> int:
    from raymix.engine.cluster import check_address, requested_address
    from raymix.outputs import absolute_paths, load_run
    from raymix.recipe.load import load_recipe
    from raymix.run import fit, plan

    if args.resume:
        if args.recipe or args.overrides:
            raise RecipeError(
                "--resume OUT takes no recipe and no --set: the run's own run.json is used"
            )
        # OUT is the truth: a copied run resumes where it is, not where run.json says it was
        # (an object-store --overwrite run stopped before publishing: its staged run.json)
        from raymix.outputs import interrupted_staging

        staged = interrupted_staging(args.resume) or args.resume
        recipe = load_run(staged).model_copy(update={"output": str(args.resume)})
    elif not args.recipe:  # the example: synthetic data generated once, nothing to download
        from raymix.example import example_data, example_recipe
        from raymix.recipe.load import apply_override, validate_recipe

        raw = example_recipe(example_data(_progress(args.quiet))).model_dump(mode="json")
        for override in args.overrides:
            raw = apply_override(raw, override)
        recipe = validate_recipe(raw)
    else:
        recipe = load_recipe(args.recipe, args.overrides)
    if args.prior:
        if args.resume:
            raise RecipeError("--resume OUT takes no --prior: the run's own run.json is used")
        recipe = recipe.with_prior(args.prior)
    # Absolute paths (a Ray job's driver and the actors on other nodes share no working
    # directory), a local or shared output, and a Ray address that answers: before any output.
    recipe = absolute_paths(recipe)
    address = requested_address(args.address, recipe.resources)
    check_address(address, reach=True)
    if recipe.checkpoint:
        args.resumable = recipe.output  # what an interrupt names to resume
    if args.dry_run:
        from raymix.outputs import check_writable

        check_writable(recipe.output)
        print(plan(recipe, address).describe())
        print("dry run: recipe, schema and paths are valid; nothing was started")
        return 0
    from raymix.report import table

    with _progress(args.quiet) as say:
        result = fit(
            recipe,
            overwrite=args.overwrite,
            resume=bool(args.resume),
            address=args.address,
            progress=say,
        )
    print(table(result))
    from raymix.datasets.planted import planted_auc

    planted = planted_auc(recipe.data.validation)
    if planted is not None:
        print(f"planted model (the truth the data were drawn from): validation AUC {planted:.4f}")
    print(f"outputs in {result.output}")
    if args.mlflow:
        from raymix.tracking import log_fit

        print(f"logged to MLflow at {args.mlflow}: run {log_fit(args.mlflow, recipe, result)}")
    return 0


def _movielens(args) -> int:
    from raymix.datasets.movielens import convert_movielens, describe_conversion

    source = args.source
    if source is None:
        from raymix.datasets.download import movielens_source

        source = movielens_source(args.url, args.md5, progress=_progress(False))
    summary = convert_movielens(
        Path(source),
        Path(args.dest),
        seed=args.seed,
        fmt=args.format,
        overwrite=args.overwrite,
    )
    print(describe_conversion(summary))
    return 0


def _tune_parser(sub) -> None:
    tune = sub.add_parser(
        "tune", help="search recipe fields (e.g. every coordinate's l2) with Ray Tune"
    )
    tune.add_argument("recipe", help="recipe .py file, resolved run.json, or GDMix config")
    tune.add_argument(
        "--search", required=True, metavar="SPACE.py", help="search space file (see tune/)"
    )
    tune.add_argument("--out", default=None, help="output directory (default: OUTPUT-tune)")
    tune.add_argument("--resume", action="store_true", help="continue the search in --out")
    tune.add_argument("--overwrite", action="store_true", help="replace a previous search")
    _add_overrides(tune, "override a field of the recipe before searching")
    tune.add_argument("--address", default=None, help="join a Ray cluster (as for fit)")
    tune.add_argument(
        "--mlflow",
        metavar="URI",
        help="log every trial to MLflow (Ray Tune's MLflow callback; needs raymix[mlflow])",
    )
    tune.add_argument("--quiet", action="store_true", help="no progress lines")
    tune.add_argument("--verbose", action="store_true", help="show Ray's own log lines too")
    tune.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    tune.set_defaults(handler=_tune)


def _tune(args) -> int:
    from raymix.recipe.load import load_recipe
    from raymix.tune import search

    with _progress(args.quiet) as say:
        result = search(
            load_recipe(args.recipe, args.overrides),
            args.search,
            out=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            address=args.address,
            progress=say,
            mlflow=args.mlflow,
        )
    print(result.table())
    print(f"best {result.metric}: {result.best_metric:.4f}; best recipe: {result.files['best']}")
    if result.interrupted:
        done = len([t for t in result.trials if t["passes_run"]])
        print(f"interrupted after {done} of {result.expected} trials: continue with --resume")
    print(f"outputs in {result.out}")
    return 0


def _synthetic_parser(data_sub) -> None:
    synthetic = data_sub.add_parser(
        "synthetic", help="generate GLMix data with planted coefficients, streamed in parts"
    )
    add = synthetic.add_argument
    add("--dest", required=True, help="output directory")
    add("--rows", type=int, required=True, help="rows in all, train + validation")
    add("--users", type=int, required=True, help="number of user ids")
    add("--items", type=int, required=True, help="number of item ids")
    add("--global-features", type=int, default=50, help="default 50")
    add("--entity-features", type=int, default=10, help="per-user/per-item bag size (10)")
    add("--format", choices=["parquet", "tfrecord"], default="parquet")
    add("--rows-per-file", type=int, default=1_000_000, help="default 1000000")
    add("--seed", type=int, default=0, help="default 0")
    add("--validation-fraction", type=float, default=0.1, help="default 0.1")
    add("--intercept", type=float, default=-1.0, help="global intercept b (default -1)")
    for who in ("global", "user", "item"):
        add(f"--{who}-sigma", type=float, help=f"std of the planted {who} coefficients")
    add("--skew", type=float, default=1.5, help="lognormal sigma of popularity (1.5)")
    add("--overwrite", action="store_true", help="replace a previous generation in --dest")
    add("--quiet", action="store_true", help="no progress lines")
    add("--verbose", action="store_true", help="show Ray's own log lines too")
    add("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    synthetic.set_defaults(handler=_synthetic)


def _synthetic(args) -> int:
    from raymix.datasets.synthetic import generate_synthetic

    with _progress(args.quiet) as say:
        s = generate_synthetic(
            args.dest,
            rows=args.rows,
            users=args.users,
            items=args.items,
            global_features=args.global_features,
            entity_features=args.entity_features,
            fmt=args.format,
            rows_per_file=args.rows_per_file,
            seed=args.seed,
            validation_fraction=args.validation_fraction,
            intercept=args.intercept,
            global_sigma=args.global_sigma,
            user_sigma=args.user_sigma,
            item_sigma=args.item_sigma,
            skew=args.skew,
            overwrite=args.overwrite,
            progress=say,
        )
    auc = s["validation_true_auc"]
    print(
        f"wrote {args.dest} in {s['seconds']:.1f} s ({s['rows_per_second']:,.0f} rows/s): "
        f"{s['train_rows']} train + {s['validation_rows']} validation rows, positive rate "
        f"{s['positive_rate']:.3f}, validation AUC of the planted model "
        + ("n/a" if auc is None else f"{auc:.4f}")
    )
    return 0


def _k8s_render(args) -> int:
    from raymix.k8s import ClusterShape, render_for_recipe
    from raymix.k8s.write import needs_data_volume, relative_paths, render_note

    env = {}
    for pair in args.env:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise RecipeError(f"expected NAME=VALUE, got {pair!r}", field="--env")
        env[name] = value
    pvc = args.data_pvc
    if pvc is None:  # object-store data and outputs need no volume
        pvc = "raymix-data" if needs_data_volume(args.recipe, args.overrides, env) else ""
    shape = ClusterShape(
        workers=args.workers,
        worker_cpus=args.worker_cpus,
        worker_memory_gib=args.worker_memory_gib,
        image=args.image,
        namespace=args.namespace,
        data_pvc=pvc or None,
    )
    fit_args = [arg for override in args.overrides for arg in ("--set", override)]
    if args.fit_overwrite:
        fit_args.append("--overwrite")
    runtime_env = {"env_vars": env} if env else None
    written = render_for_recipe(
        args.recipe, args.out, shape, fit_args, runtime_env=runtime_env, overwrite=args.overwrite
    )
    relative = relative_paths(args.recipe, args.overrides, env)
    print(render_note(written, args.out, relative, shape.app_dir))
    return 0


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run()
