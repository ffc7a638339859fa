"""``raymix fit``: validate everything, start Ray, run the descent, write the outputs.

Outputs under ``recipe.output`` (GDMix's layout, plus raymix's own files)::

    run.json                         the resolved recipe (re-run it with ``raymix fit run.json``)
    <coordinate>/models/*.avro       BayesianLinearModelAvro (FE: part-00000, RE: one part per bucket)
    <coordinate>/training_scores/    per-row scores: uid, predictionScore (cumulative logit),
    <coordinate>/validation_scores/  predictionScorePerCoordinate, label, weight
    <coordinate>/metric/evalSummary.json
    checkpoint/                      state after each coordinate (for --resume)
    summary.json, report.html        metrics per coordinate and pass, timings per phase
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from raymix import storage
from raymix.coordinates.inputs import build_source, feature_names, warm_start_match
from raymix.data.source import Source
from raymix.engine.cluster import physical_cores, requested_address
from raymix.errors import RecipeError, surfaced
from raymix.recipe.spec import DeepEffect, ExternalEffect, FixedEffect, RandomEffect, Recipe
from raymix.result import FitResult

#: up to this much input on disk, ``resources`` left at their defaults mean one random-effect
#: actor and coordinates that read their rows together; above, an actor per core and
#: coordinates that read one at a time (a memory peak of one coordinate's reading)
SMALL_INPUT_BYTES = 256 << 20


@dataclass(frozen=True)
class CoordinatePlan:
    """A coordinate with its resolved inputs: what ``--dry-run`` prints and ``fit`` builds."""

    spec: FixedEffect | RandomEffect | ExternalEffect | DeepEffect
    train: Source | None
    validation: Source | None
    names: list[tuple[str, str]] | None
    warm_start_match: tuple[int, int] | None = None  # (matched, features) of its warm start

    def note(self) -> str | None:
        """A warm start of which only some features are in the bag, said once."""
        if self.warm_start_match is None or self.warm_start_match[0] == self.warm_start_match[1]:
            return None
        matched, features = self.warm_start_match
        s = self.spec
        return (
            f"coordinate '{s.name}': warm start '{getattr(s, 'warm_start', None)}' matches "
            f"{matched} of its {features} features in bag '{getattr(s, 'feature_bag', None)}' (the other "
            f"{features - matched} are dropped)"
        )


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    coordinates: tuple[CoordinatePlan, ...]
    actors: int
    buckets: int
    threads: int
    one_at_a_time: bool = False  # coordinates read their rows one after the other

    def describe(self) -> str:
        r = self.recipe
        lines = [
            f"recipe '{r.name}': {len(r.coordinates)} coordinates, {r.passes} pass(es), metric {r.metric}",
            f"output: {r.output}",
            f"ray: {r.resources.address or 'embedded local Ray'}; random-effect actors {self.actors}, "
            f"buckets {self.buckets}, solver threads per actor {self.threads}, coordinates read "
            + ("one at a time" if self.one_at_a_time else "together"),
        ]
        for k, c in enumerate(self.coordinates, 1):
            s, train = c.spec, c.train
            if isinstance(s, ExternalEffect):
                lines.append(f"{k}. {s.name} [external scores] train={s.train_scores}")
                continue
            if train is None:  # plan() resolves the rows of every coordinate but an external one
                raise ValueError(f"coordinate '{s.name}' has no training rows")
            where = f"{len(train.files)} {train.format} file(s)"
            val = (
                f", validation {len(c.validation.files)} file(s)"
                if c.validation
                else ", no validation"
            )
            bag = (
                f"bag '{s.feature_bag}' (dim {train.schema.dim})"
                if s.feature_bag
                else "intercept only"
            )
            extra = (
                f" by '{s.entity}'"
                if isinstance(s, RandomEffect)
                else f" workers={s.workers or 'in-process'}"
            )
            lock = " [locked]" if s.locked else ""
            if isinstance(s, DeepEffect):
                wide = bag if s.feature_bag else "no wide bag"
                backend = f" {s.backend}" if s.workers else ""
                lines.append(
                    f"{k}. {s.name} [deep{backend}{extra}] text '{s.text_column}', {wide}, "
                    f"{s.steps} steps x {s.batch_size}{lock}: {where}{val}"
                )
                continue
            lines.append(
                f"{k}. {s.name} [{s.kind}{extra}] {s.task}, {bag}, l2={s.l2}, l1={s.l1}{lock}: {where}{val}"
            )
            if c.note():
                lines.append(f"   {c.note()}")
        return "\n".join(lines)


def plan(recipe: Recipe, address: str | None = None) -> Plan:
    """Resolve and check every input before anything starts (the ``--dry-run``).

    ``address`` is the Ray cluster to join (None: the embedded local Ray), as ``fit`` gets it.
    """
    coordinates = []
    for spec in recipe.coordinates:
        if isinstance(spec, ExternalEffect):
            for path in (spec.train_scores, spec.validation_scores):
                if path and not storage.exists(path):
                    raise RecipeError(
                        f"no such file or directory: {path}", field=f"coordinates.{spec.name}"
                    )
            coordinates.append(CoordinatePlan(spec, None, None, None))
            continue
        data = recipe.data_for(spec)
        _check_warm_start(spec)
        entity = spec.entity if isinstance(spec, RandomEffect) else None
        task = getattr(spec, "task", None)
        train = build_source(
            data, recipe.columns, split="train", bag=spec.feature_bag, entity=entity, task=task
        )
        validation = None
        if data.validation is not None:
            validation = build_source(
                data,
                recipe.columns,
                split="validation",
                bag=spec.feature_bag,
                entity=entity,
                task=task,
            )
            _check_entity_kinds(train, validation)
        names = feature_names(data, spec.feature_bag, train.schema.dim)
        if isinstance(spec, DeepEffect):
            from raymix.coordinates.deep import check_deep_inputs

            if train.tables is not None:
                raise RecipeError(
                    "a deep coordinate reads files: write the rows with raymix.write_dataset",
                    field=f"coordinates.{spec.name}.data",
                )

            check_deep_inputs(spec, train, validation)
        match = None
        if spec.warm_start and spec.feature_bag and not isinstance(spec, DeepEffect):
            match = warm_start_match(spec.warm_start, names, train.schema.dim, spec.feature_bag)
        coordinates.append(CoordinatePlan(spec, train, validation, names, match))
    size = sum(
        _input_bytes(source)
        for c in coordinates
        for source in (c.train, c.validation)
        if source is not None
    )
    small = size <= SMALL_INPUT_BYTES
    cores = physical_cores()
    # small inputs on the embedded Ray: one actor, whose solver threads still use every core,
    # and one process fewer to start (~1 s of CPU: its imports and compiled kernels); on a
    # cluster, actors to spread over its nodes
    local = not requested_address(address, recipe.resources)
    actors = recipe.resources.actors or (1 if small and local else cores)
    buckets = recipe.resources.buckets or 4 * max(actors, cores)  # the same files either way
    if buckets < actors:
        raise RecipeError(
            "resources.buckets must be >= resources.actors", field="resources.buckets"
        )
    threads = max(1, cores // actors)
    reading = recipe.resources.reading
    if reading == "auto":
        reading = "together" if small else "one_at_a_time"
    return Plan(recipe, tuple(coordinates), actors, buckets, threads, reading == "one_at_a_time")


def _input_bytes(source: Source) -> int:
    """Bytes of a source's files, or of its tables in memory."""
    if source.tables is not None:
        return sum(table.nbytes for table in source.tables)
    return sum(storage.size(path) for path in source.files)


def _check_entity_kinds(train: Source, validation: Source) -> None:
    """The two splits' entity ids are of one kind (they failed inside an actor otherwise)."""
    from raymix.data.source import entity_kind
    from raymix.errors import DataError

    ours, theirs = entity_kind(validation), entity_kind(train)
    if ours != theirs:
        raise DataError(
            f"entity ids are {ours} here but {theirs} in the training data ({train.files[0]}); "
            "both splits must use one type",
            path=validation.files[0],
            column=validation.schema.entity,
        )


def _check_warm_start(spec) -> None:
    """A warm start must be a complete output (its ``_SUCCESS`` written)."""
    if getattr(spec, "warm_start", None):
        from raymix.outputs import check_warm_start

        check_warm_start(spec.warm_start, f"coordinates.{spec.name}.warm_start")


def fit(
    recipe: Recipe,
    *,
    overwrite: bool = False,
    resume: bool = False,
    address: str | None = None,
    progress=None,
) -> FitResult:
    """Run a recipe end to end and write its outputs. See the module docstring.

    With ``resume`` the run continues from the last checkpoint in ``recipe.output`` (the
    state after the last completed coordinate update) and ends as an uninterrupted run would.
    """
    from raymix import outputs
    from raymix.checkpoint import Checkpoint
    from raymix.coordinates.marginal_variance import use_marginal_variances
    from raymix.descent import descend, load
    from raymix.engine.cluster import ray_session
    from raymix.report import summarize, write_outputs

    say = progress or (lambda message: None)
    watch = Stopwatch()
    storage.use_endpoint(recipe.resources.s3_endpoint)
    # an object-store --overwrite run stopped before publishing left its checkpoint staged
    checkpoint = Checkpoint(
        (resume and outputs.interrupted_staging(recipe.output)) or recipe.output
    )
    start = (0, 0)
    if resume:
        start = tuple(checkpoint.load()["completed"])
        recipe = _with_checkpoint_models(recipe, checkpoint)
    the_plan = plan(recipe, address)  # everything that can be checked, before output is touched
    for c in the_plan.coordinates:
        if c.note():
            say(str(c.note()))
    run_file = recipe.model_dump_json(indent=2) + "\n"
    transaction = outputs.output_transaction(
        recipe.output, overwrite, resume=resume, run=None if resume else run_file
    )
    with transaction as out, surfaced():
        checkpoint = Checkpoint(out)  # a staged object-store output holds its own checkpoint
        if not resume:
            storage.write_text(out / outputs.RUN_FILE, run_file)
        else:  # a moved or copied run: its run.json now names where it is
            recorded = json.loads(storage.read_text(out / outputs.RUN_FILE))
            if recorded.get("output") != recipe.output:
                recorded["output"] = recipe.output
                storage.write_text(out / outputs.RUN_FILE, json.dumps(recorded, indent=2) + "\n")
        watch.lap("validate")
        with ray_session(recipe.resources, address, meanwhile=_import_engine):
            watch.lap("ray_start")
            coordinates = build_coordinates(the_plan)
            try:
                say(_reading_message(the_plan))
                state = load(coordinates, the_plan.one_at_a_time)
                watch.lap("read")
                say(
                    f"{len(state.train.index)} training rows, {len(state.validation.index)} validation rows"
                )
                if resume:
                    start = checkpoint.restore(state)
                    _resume_estimates(coordinates, state)
                    say(f"resuming after pass {start[0] + 1}, coordinate {start[1]}")

                def after_step(state, step):
                    if recipe.checkpoint:
                        started = time.perf_counter()
                        checkpoint.save(state, coordinates, step)
                        watch.add("checkpoint", time.perf_counter() - started)
                    say(step_message(step, recipe.passes))

                stopping = recipe.early_stopping
                descend(
                    coordinates,
                    state,
                    passes=recipe.passes,
                    metric=recipe.metric,
                    locked=frozenset(c.name for c in recipe.coordinates if c.locked),
                    patience=stopping.patience if stopping else None,
                    min_delta=stopping.min_delta if stopping else 0.0,
                    start=start,
                    after_step=after_step,
                )
                kept = [s for s in state.steps if s.pass_index <= state.best_pass]  # the models'
                variances = use_marginal_variances(coordinates, {s.coordinate: s.info for s in kept})  # fmt: skip
                watch.lap("coordinates")
                files = outputs.published(write_outputs(out, recipe, coordinates, state), out)
                watch.lap("write")
            finally:
                for coordinate in coordinates:
                    coordinate.close()
        laps = {**watch.laps, **watch.extra}
        result = summarize(out, recipe, state, laps, files, fixed_effect_variances=variances)
        checkpoint.discard()  # last: a run stopped before this (in the report) can --resume
    result.output = outputs.final(out)
    return result


def _reading_message(the_plan: Plan) -> str:
    sources = [s for c in the_plan.coordinates for s in (c.train, c.validation) if s is not None]
    files = sum(len(s.files) for s in sources if s.tables is None)
    tables = sum(len(s.tables) for s in sources if s.tables is not None)
    held = f"{files} files" + (f" and {tables} tables in memory" if tables else "")
    return f"reading data for {len(the_plan.coordinates)} coordinates ({held})"


def step_message(step, passes: int) -> str:
    """The progress line of one coordinate update: its metrics, the entities it fitted (a
    random effect's), the time it took."""
    shown = ", ".join(f"{k}={v:.4f}" for k, v in step.metrics.items() if isinstance(v, float))
    fitted = ""
    if "entities" in step.info:
        fitted = f"; {step.info['entities']:,} entities fitted"
        if step.info.get("not_converged"):
            fitted += f" ({step.info['not_converged']:,} not converged)"
    where = f"pass {step.pass_index + 1} {step.coordinate}"
    return (
        f"{where}: {shown}{fitted} ({step.seconds:.2f} s; pass {step.pass_index + 1} of {passes})"
    )


#: what every fit imports after Ray is up; imported while Ray starts instead (and numba warmed)
ENGINE_MODULES = (
    "ray.data",
    "ray.train",
    "ray.train.v2.api.data_parallel_trainer",
    "raymix.coordinates.fixed_effect",
    "raymix.coordinates.random_effect",
    "raymix.engine.fixed_effect",
    "raymix.engine.random_effect",
    "raymix.engine.reading",
    "raymix.data.tfrecord.example_reader",
    "raymix.solvers.glm",
    "raymix.solvers.entity",
    "raymix.report",
)


def _import_engine() -> None:
    import importlib

    for name in ENGINE_MODULES:
        importlib.import_module(name)
    from raymix.solvers.warmup import warm_up_numba

    warm_up_numba()


class Stopwatch:
    """Named laps of wall time, in order."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.extra: dict[str, float] = {}
        self._last = time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        """Time spent inside a lap on ``name`` (reported besides the laps, not in them)."""
        self.extra[name] = self.extra.get(name, 0.0) + seconds

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now
        return self.laps[name]


def _resume_estimates(coordinates: list, state) -> None:
    """Give each random effect back what its restored steps recorded, in order (its
    ``l2="auto"`` estimate, a linear model's residual variance: the fixed effect scales its
    variances by it, also when it is not fitted again)."""
    by_name = {c.name: c for c in coordinates if c.kind == "random_effect"}
    for step in state.steps:
        if step.coordinate in by_name:
            by_name[step.coordinate].resume(step.info)


def _with_checkpoint_models(recipe: Recipe, checkpoint) -> Recipe:
    """The recipe with each checkpointed coordinate warm-started from its saved model."""
    coordinates = []
    for spec in recipe.coordinates:
        saved = checkpoint.model_dir(spec.name)
        if saved is not None and not isinstance(spec, ExternalEffect):
            spec = spec.model_copy(update={"warm_start": str(saved)})
        coordinates.append(spec)
    return recipe.model_copy(update={"coordinates": tuple(coordinates)})


def build_coordinates(the_plan: Plan) -> list:
    """The plan's coordinates, each handed the Ray holders of its rows (a worker group, the
    bucket pool shared by the random effects)."""
    from raymix.coordinates.external import ExternalCoordinate
    from raymix.coordinates.fixed_effect import FixedEffectCoordinate
    from raymix.coordinates.random_effect import RandomEffectCoordinate
    from raymix.engine.fixed_effect import FixedEffectService
    from raymix.engine.random_effect import BucketPool
    from raymix.solvers.variance_components import ResidualVariance

    built: list = []
    pool = None
    # shared by the linear l2="auto" random effects, estimated by the recipe's method
    residual = ResidualVariance(method=the_plan.recipe.variance_method)
    for c in the_plan.coordinates:
        if isinstance(c.spec, ExternalEffect):
            built.append(ExternalCoordinate(c.spec))
            continue
        if c.train is None:  # plan() resolves the rows of every coordinate but an external one
            raise ValueError(f"coordinate '{c.spec.name}' has no training rows")
        if isinstance(c.spec, FixedEffect):
            built.append(
                FixedEffectCoordinate(
                    c.spec,
                    c.train,
                    c.validation,
                    c.names,
                    workers=FixedEffectService(),
                    residual=residual,
                )
            )
        elif isinstance(c.spec, RandomEffect):
            pool = pool or BucketPool(the_plan.actors, the_plan.threads, the_plan.buckets)
            built.append(
                RandomEffectCoordinate(
                    c.spec,
                    c.train,
                    c.validation,
                    c.names,
                    pool=pool,
                    seed=the_plan.recipe.seed,
                    residual=residual,
                )
            )
        else:
            from raymix.coordinates.deep import DeepCoordinate
            from raymix.engine.deep_service import DeepService

            built.append(DeepCoordinate(c.spec, c.train, c.validation, workers=DeepService()))
    return built
