"""``raymix tune``: a Ray Tune search over any recipe fields, on resident data.

Outputs under ``out`` (default ``<recipe.output>-tune``)::

    search.json       the recipe searched and the settings (checked by --resume)
    experiment/       Ray Tune's experiment state (``Tuner.restore`` resumes from it)
    trials.csv        one row per trial: its values, metrics, passes run, timings
    best.json         the best trial's full resolved recipe (``raymix fit best.json``)
    search.png        the metric against each searched parameter
    result.json       the summary: best, timings, trials per minute, re-preparation share
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from raymix import storage
from raymix.errors import RecipeError
from raymix.outputs import output_location
from raymix.recipe.spec import Recipe
from raymix.storage import Location
from raymix.tune.progress import SESSION, Progress
from raymix.tune.space import (
    SearchSpace,
    apply_config,
    check_searcher,
    check_space,
    describe,
    load_space,
    max_passes,
    plain,
)

EXPERIMENT = "experiment"
MARKER = "search.json"


@dataclass
class TuneResult:
    """What a search produced. ``trials`` are dicts (one per trial, the CSV's rows)."""

    out: Path | Location
    metric: str
    mode: str
    keys: list[str]
    trials: list[dict]
    best: dict
    best_recipe: Recipe
    seconds: float
    stats: dict
    files: dict = field(default_factory=dict)
    expected: int = 0  # trials the search asks for

    @property
    def interrupted(self) -> bool:
        """Fewer trials ran than asked for (resume the search to run the rest)."""
        return len([t for t in self.trials if t["passes_run"]]) < self.expected

    @property
    def best_metric(self) -> float:
        return self.best[self.metric]

    def table(self) -> str:
        from raymix.tune.report import trial_table

        return trial_table(self)

    @classmethod
    def load(cls, out: str | Path) -> TuneResult:
        """The result of a finished search, from its ``result.json`` and ``best.json``."""
        from raymix.recipe.load import load_recipe

        out = output_location(out, field="out")
        saved = json.loads(storage.read_text(out / "result.json"))
        return cls(
            out=out,
            metric=saved["metric"],
            mode=saved["mode"],
            keys=saved["keys"],
            trials=saved["trials"],
            best=saved["best"],
            best_recipe=load_recipe(out / "best.json"),
            seconds=saved["seconds"],
            stats=saved["stats"],
            files={k: output_location(v) for k, v in saved["files"].items()},
            expected=saved["expected_trials"],
        )


def search(
    recipe: Recipe | str | Path,
    space: SearchSpace | dict | str | Path,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    address: str | None = None,
    progress=None,
    stop_after: int | None = None,
    mlflow: str | None = None,
) -> TuneResult:
    """Search ``space`` (dotted recipe paths -> Tune domains) for the best validation metric.

    ``recipe`` is a Recipe or a recipe file; ``space`` a :class:`SearchSpace`, a plain dict
    (default settings) or a space file. With ``resume`` an interrupted search in ``out``
    continues from Tune's experiment state. ``stop_after`` interrupts the search (as Ctrl+C
    does) once that many trials have finished in this call: for tests. ``mlflow``, a
    tracking URI, logs every trial as an MLflow run (:func:`raymix.tracking.tune_callback`).
    """
    from raymix.engine.cluster import physical_cores, ray_session
    from raymix.outputs import absolute_paths

    say = progress or (lambda message: None)
    if not isinstance(recipe, Recipe):
        from raymix.recipe.load import load_recipe

        recipe = load_recipe(recipe)
    if isinstance(space, str | Path):
        space = load_space(space)
    elif isinstance(space, dict):
        space = SearchSpace(space=space)
    recipe = absolute_data(absolute_paths(recipe))
    metric, mode = space.resolved_metric(recipe)
    if recipe.metric != metric:
        recipe = recipe.model_copy(update={"metric": metric})
    check_space(recipe, space)
    check_searcher(space)
    from raymix.run import plan

    plan(recipe)  # the data's files and schemas, before anything starts
    out = output_location(out or f"{recipe.output}-tune", field="out")
    _prepare_out(out, recipe, space, resume, overwrite)

    concurrent = space.max_concurrent or physical_cores()
    # Tune would move every trial actor into its trial directory (Tune reads this variable
    # from the driver); raymix never changes directories, and the paths are absolute anyway
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # its banner ignores verbose=0
    SESSION.update(say=say, stop_after=stop_after, completed=0)
    with ray_session(recipe.resources, address) as ray:
        callbacks = [Progress(metric, space.num_samples)]
        if mlflow:
            from raymix.tracking import tune_callback

            callbacks.append(tune_callback(mlflow, f"{recipe.name}-tune"))
        tuner = _tuner(ray, recipe, space, out, metric, mode, concurrent, resume, callbacks)
        say(
            f"searching {len(space.space)} field(s) of '{recipe.name}' with {space.searcher}"
            f"{' + ' + space.scheduler if space.scheduler else ''}: {space.num_samples} trial(s), "
            f"{concurrent} at a time, {metric} ({mode})"
        )
        started = time.perf_counter()
        grid = tuner.fit()
        seconds = time.perf_counter() - started
    return _collect(grid, recipe, space, out, metric, mode, seconds)


def absolute_data(recipe: Recipe) -> Recipe:
    """The recipe with its data paths absolute (trial actors may run elsewhere)."""

    def fix(data):
        if data is None:
            return None
        update = {}
        for name in ("train", "validation", "metadata", "feature_lists"):
            value = getattr(data, name)
            if isinstance(value, str) and "://" not in value:
                update[name] = os.path.abspath(value)
            elif isinstance(value, tuple):
                update[name] = tuple(v if "://" in v else os.path.abspath(v) for v in value)
        return data.model_copy(update=update)

    coordinates = tuple(
        c.model_copy(update={"data": fix(c.data)}) if getattr(c, "data", None) else c
        for c in recipe.coordinates
    )
    return recipe.model_copy(update={"data": fix(recipe.data), "coordinates": coordinates})


def _prepare_out(out, recipe: Recipe, space: SearchSpace, resume: bool, overwrite: bool):
    marker = out / MARKER
    described = {
        "recipe": json.loads(recipe.model_dump_json()),
        "space": {k: describe(v) for k, v in space.space.items()},
        "settings": {
            "metric": space.metric,
            "mode": space.mode,
            "num_samples": space.num_samples,
            "searcher": space.searcher,
            "scheduler": space.scheduler,
            "max_concurrent": space.max_concurrent,
        },
    }
    if resume:
        if not storage.is_dir(out / EXPERIMENT):
            raise RecipeError(f"--resume: no search to resume in {out} (no {EXPERIMENT}/)")
        if storage.is_file(marker):
            before = json.loads(storage.read_text(marker))
            for part in ("recipe", "space"):
                if before.get(part) != described[part]:
                    raise RecipeError(
                        f"--resume: the {part} differs from the one searched in {out}: "
                        "resume with the same recipe and space, or start a new search"
                    )
        return
    if storage.is_file(out):
        raise RecipeError(f"output {out} exists and is not a directory")
    if storage.list_dir(out):
        if not overwrite:
            raise RecipeError(
                f"output directory {out} is not empty: pass --overwrite to replace a previous "
                "search, or --resume to continue it"
            )
        if not storage.is_file(marker):
            raise RecipeError(
                f"--overwrite only replaces a previous search (a directory with {MARKER}): {out}"
            )
        for name in (EXPERIMENT, "best"):
            storage.delete_tree(out / name)
        for name in ("trials.csv", "best.json", "search.png", "result.json", MARKER):
            storage.delete_file(out / name)
    storage.make_dirs(out)
    storage.write_json(marker, described)


def _experiment_storage(out) -> dict:
    """Ray Tune's ``storage_path`` (and ``storage_filesystem`` for an object store: raymix's,
    which knows the endpoint) for the experiment under ``out``."""
    if not storage.is_uri(out):
        return {"storage_path": str(out)}
    fs, inner = storage.filesystem(out)
    return {"storage_path": inner, "storage_filesystem": fs}


def _tuner(ray, recipe, space, out, metric, mode, concurrent, resume, callbacks):
    from ray import tune

    from raymix.engine.reading import READ_TASK_CPUS
    from raymix.tune.trainable import RecipeTrainable

    cpus = ray.cluster_resources().get("CPU", 1.0)
    # leave room for one read task; a trial mostly waits on its bucket actors (0 CPU)
    per_trial = max(0.1, min(1.0, (cpus - READ_TASK_CPUS) / concurrent))
    actors = recipe.resources.actors or max(1, _cores() // concurrent)
    trainable = tune.with_resources(
        tune.with_parameters(
            RecipeTrainable,
            recipe_json=recipe.model_dump_json(),
            actors=actors,
            threads=max(1, _cores() // (concurrent * actors)),
        ),
        {"cpu": per_trial},
    )
    where = _experiment_storage(out)
    run_config = tune.RunConfig(
        name=EXPERIMENT,
        **where,
        verbose=0,
        callbacks=callbacks,
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=0, checkpoint_at_end=False),
    )
    if resume:
        SESSION["say"](f"resuming the search in {out}")
        return tune.Tuner.restore(
            f"{where['storage_path']}/{EXPERIMENT}",
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=where.get("storage_filesystem"),
        )
    return tune.Tuner(
        trainable,
        param_space=_param_space(space),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=space.num_samples,
            search_alg=_searcher(space, metric, mode, recipe.seed, concurrent),
            scheduler=_scheduler(space, recipe),
            # a generator has its own limit (given both, Tune warns and ignores this one)
            max_concurrent_trials=concurrent if space.searcher == "optuna" else None,
            reuse_actors=True,
        ),
        run_config=run_config,
    )


def _cores() -> int:
    from raymix.engine.cluster import physical_cores

    return physical_cores()


def _param_space(space: SearchSpace) -> dict:
    if space.searcher != "grid":
        return dict(space.space)
    from ray import tune
    from ray.tune.search.sample import Categorical, Domain

    grid = {}
    for key, domain in space.space.items():
        if isinstance(domain, Categorical):
            grid[key] = tune.grid_search(list(domain.categories))
        elif isinstance(domain, Domain):
            raise RecipeError(
                f"{space.source or 'space'}: searcher 'grid' needs categorical values "
                f"(tune.choice or tune.grid_search); '{key}' is {domain!r}"
            )
        else:
            grid[key] = domain
    return grid


def _is_grid(value) -> bool:
    return isinstance(value, dict) and set(value) == {"grid_search"}


def _searcher(space: SearchSpace, metric: str, mode: str, seed: int, concurrent: int):
    if space.searcher == "optuna":
        try:
            import optuna
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            raise RecipeError(
                "searcher 'optuna' needs Optuna: pip install 'raymix[tune]' "
                "(or use searcher 'random')"
            ) from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, space.num_samples))
        return OptunaSearch(metric=metric, mode=mode, sampler=sampler)
    from ray.tune.search import BasicVariantGenerator

    # its own limit: Tune ignores max_concurrent_trials for a given generator
    return BasicVariantGenerator(random_state=seed, max_concurrent=concurrent)


def _scheduler(space: SearchSpace, recipe: Recipe):
    if space.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max(1, max_passes(recipe, space)),
        grace_period=1,
        reduction_factor=2,
    )


def _collect(grid, recipe, space, out, metric, mode, seconds) -> TuneResult:
    from raymix.tune.report import plot_search, trials_csv

    keys = list(space.space)
    trials = []
    for result in grid:
        m = result.metrics or {}
        config = result.config or {}
        row = {"trial": m.get("trial_id", "")}
        row.update({k: plain(config.get(k)) for k in keys})
        row.update(
            {
                metric: m.get(metric, math.nan),
                "passes_run": m.get("passes_run", 0),
                "stopped_early": m.get("passes_run", 0) > 0 and not m.get("finished", False),
                "seconds": m.get("time_total_s", 0.0),
                "prepare_seconds": m.get("prepare_seconds", 0.0),
                "reset_seconds": m.get("reset_seconds", 0.0),
                "reused_data": bool(m.get("reused_data", False)),
                "error": "" if result.error is None else type(result.error).__name__,
            }
        )
        row["state"] = (
            "error"
            if row["error"]
            else "not run"
            if not row["passes_run"]
            else "stopped early"
            if row["stopped_early"]
            else "done"
        )
        if metric != "logloss" and "logloss" in m:
            row["logloss"] = m["logloss"]
        trials.append(row)
    trials.sort(key=lambda r: r["trial"])
    finished = [r for r in trials if not r["error"] and not math.isnan(r[metric])]
    if not finished:
        raise RecipeError(f"no trial finished: see the trial errors under {out / EXPERIMENT}")
    # the best complete trial (a trial ASHA stopped early did not run its passes)
    complete = [r for r in finished if not r["stopped_early"]] or finished
    sign = 1 if mode == "max" else -1
    best = max(complete, key=lambda r: sign * r[metric])
    best_config = {k: best[k] for k in keys if best[k] is not None}
    best_recipe = apply_config(recipe, best_config).model_copy(update={"output": str(out / "best")})
    files = {
        "csv": trials_csv(out / "trials.csv", trials),
        "best": storage.write_text(out / "best.json", best_recipe.model_dump_json(indent=2) + "\n"),
        "plot": plot_search(out / "search.png", trials, keys, metric, best, space),
    }
    if files["plot"] is None:
        SESSION["say"]("search.png skipped: matplotlib is not installed (pip install matplotlib)")
    stats = _stats(trials, seconds, SESSION["completed"])
    expected = space.num_samples * math.prod(
        len(v["grid_search"]) for v in _param_space(space).values() if _is_grid(v)
    )
    result = TuneResult(
        out, metric, mode, keys, trials, best, best_recipe, seconds, stats, files, expected
    )
    storage.write_json(
        out / "result.json",
        {
            "metric": metric,
            "mode": mode,
            "best": best,
            "best_recipe": str(files["best"]),
            "seconds": round(seconds, 3),
            "interrupted": result.interrupted,
            "expected_trials": expected,
            "keys": keys,
            "stats": stats,
            "files": {k: str(v) for k, v in files.items() if v},
            "trials": trials,
        },
    )
    return result


def _stats(trials: list[dict], seconds: float, completed: int) -> dict:
    """Timings over all trials; the rate over the trials completed by this call (a resumed
    search also lists the trials of earlier calls)."""
    prepare = sum(r["prepare_seconds"] for r in trials)
    reset = sum(r["reset_seconds"] for r in trials)
    steps = sum(r["seconds"] for r in trials)
    busy = prepare + reset + steps
    loads = sum(1 for r in trials if r["prepare_seconds"] > 0)
    per_load = prepare / loads if loads else 0.0
    n = len(trials)
    return {
        "trials": n,
        "trials_this_run": completed,
        "trials_per_minute": round(60.0 * completed / seconds, 3) if seconds > 0 else None,
        "data_loads": loads,
        "prepare_seconds": round(prepare, 3),
        "reset_seconds_mean": round(reset / max(1, n - loads), 4),
        "fit_seconds": round(steps, 3),
        "prepare_share": round(prepare / busy, 4) if busy else 0.0,
        # the same trials, each reading its own data (no reuse)
        "prepare_share_without_reuse": round(per_load * n / (per_load * n + steps + reset), 4)
        if busy
        else 0.0,
    }
