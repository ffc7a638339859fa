"""The recipe: a frozen, JSON round-trippable description of one raymix run.

A recipe is data. It names the input files, the ordered coordinates of the mixed model,
the number of coordinate-descent passes, the output directory and the resources; building
live objects (datasets, actors, trainers) happens in :mod:`raymix.engine`.

Every model here is frozen and forbids unknown fields, so a misspelt field fails with its
dotted path (``coordinates.per_user.l3: unknown field``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from raymix.recipe.memory import InMemory, wrap_rows


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


#: raymix.solvers.loss.TASKS, as the literal pydantic needs (tests/solvers/test_loss.py)
Task = Literal["logistic", "linear", "poisson"]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class LBFGS(Spec):
    """L-BFGS for a fixed effect. GDMix's defaults: history 10, 100 iterations, factr = 1e-12/eps.

    ``precondition`` rescales (and centres) columns internally as an exact change of
    variables: the optimum of the objective is unchanged, only conditioning improves.
    ``polish``: once L-BFGS has converged (never past ``max_iter``), a few Newton steps on
    the all-reduced gradient and Hessian take the L2 solution to machine precision, so 1 and
    N workers give the same model; only for at most ``polish_max_params`` parameters.
    """

    kind: Literal["lbfgs"] = "lbfgs"
    max_iter: Annotated[int, Field(gt=0)] = 100
    history: Annotated[int, Field(gt=0)] = 10
    tolerance: Annotated[float, Field(gt=0)] = 1e-12
    gtol: Annotated[float, Field(gt=0)] = 1e-5
    precondition: bool = True
    polish: bool = True
    polish_max_params: Annotated[int, Field(ge=0)] = 2000


class Newton(Spec):
    """The batched, compiled per-entity Newton solver of a random effect."""

    kind: Literal["newton"] = "newton"
    max_iter: Annotated[int, Field(gt=0)] = 100
    tolerance: Annotated[float, Field(gt=0)] = 1e-8


def _solver_from_string(value, choices: dict):
    if isinstance(value, str):
        if value not in choices:
            raise ValueError(f"must be one of {sorted(choices)} or a solver object. Got '{value}'")
        return choices[value]()
    return value


class Data(Spec):
    """Where the rows are. ``train``/``validation`` are directories, globs or lists of files,
    or (in Python) rows in memory: a pandas DataFrame, a pyarrow Table or a ray.data.Dataset,
    of which ``run.json`` records a description (:mod:`raymix.recipe.memory`).

    TFRecord data (GDMix's layout) needs ``metadata`` (``tensor_metadata.json``); Parquet (the
    row convention, README) may omit it; ``photon`` is Photon ML's GAME Avro (``*.avro``).
    ``feature_lists``: GDMix's ``featureList`` dir (a ``name,term`` file per bag; Photon's are
    ``name<TAB>term``), naming coefficients in the Avro models; else features are indices.
    ``grouped_by`` reads GDMix's grouped layout (the output of its DataPartitioner: one
    ``SequenceExample`` per entity of this column, TFRecord only), one row per record.
    """

    train: str | tuple[str, ...] | InMemory
    validation: str | tuple[str, ...] | InMemory | None = None
    format: Literal["auto", "tfrecord", "parquet", "photon"] = "auto"
    metadata: str | None = None
    feature_lists: str | None = None
    grouped_by: str | None = None

    @field_validator("train", "validation", mode="before")
    @classmethod
    def _rows_in_memory(cls, value):
        return wrap_rows(value)


class Columns(Spec):
    """Names of the reserved columns (GDMix's ``gdmix_config`` schema params)."""

    uid: str = "uid"
    label: str = "response"
    weight: str | None = "weight"
    offset: str | None = None

    @model_serializer(mode="wrap")
    def _defaults_stay_defaults(self, handler):
        """``uid`` and ``weight`` left at their defaults are not written: they mean "this
        column when the data have it, else the row number (weight 1)", and must mean that
        again when a run.json (or an overridden recipe) is read back."""
        raw = handler(self)
        for name in ("uid", "weight"):
            if name not in self.model_fields_set:
                raw.pop(name, None)
        return raw


class _Coordinate(Spec):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1)]
    data: Data | None = None
    locked: bool = False
    warm_start: str | None = None

    @model_validator(mode="after")
    def _locked_needs_a_model(self):
        if self.locked and self.warm_start is None and self.kind != "external":
            raise ValueError(
                "a locked coordinate keeps a previous model: give warm_start (its models directory)"
            )
        return self


class Prior(Spec):
    """Yesterday's models as today's Gaussian prior (incremental training).

    ``models``: a previous output directory (its ``<coordinate>/models``), Photon ML's model
    layout (``fixed-effect/<shard>/coefficients``, ``random-effect/<name>/coefficients``) or
    a models directory; its records need ``variances``. ``weight`` multiplies the prior
    precision (Photon ML's incremental weight); ``forgetting`` in [0, 1) inflates the prior
    variances by ``1/(1 - forgetting)``. The objective's ridge becomes
    ``1/2 sum_k weight (1 - forgetting) (theta_k - mu_k)^2 / sigma_k^2`` where the prior
    knows coefficient ``k`` (matched by feature name and term), the coordinate's ``l2``
    elsewhere.
    """

    models: Annotated[str, Field(min_length=1)]
    weight: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 1.0
    forgetting: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class _LinearCoordinate(_Coordinate):
    #: a bag's name (its ``B_indices``/``B_values`` or dense ``B`` columns), or a list of
    #: scalar columns, one feature each, named after them in the models
    feature_bag: str | tuple[str, ...] | None = None
    task: Task = "logistic"
    l2: NonNegative | Literal["auto"] = 1.0  # a number for a fixed effect (its own l2 below)
    l1: NonNegative = 0.0
    fit_intercept: bool = True
    regularize_intercept: bool = False
    sparsity_threshold: NonNegative = 1e-4
    #: ``covariance``: ``full`` variances, and (random effects) each entity's posterior
    #: covariance matrix kept beside its Avro file, for a full-covariance prior tomorrow
    variance: Literal["simple", "full", "covariance"] | None = None
    prior: Prior | None = None

    @model_validator(mode="before")
    @classmethod
    def _prior_writes_variances(cls, data):
        """A run with a prior writes variances (``full``) unless told which: tomorrow's prior."""
        if isinstance(data, dict) and data.get("prior") is not None and "variance" not in data:
            return {**data, "variance": "full"}
        return data

    @model_validator(mode="after")
    def _prior_rules(self):
        if self.prior is not None and self.locked:
            raise ValueError("a locked coordinate is not fitted: it takes no prior")
        if self.prior is not None and self.l2 == "auto":
            raise ValueError("a prior replaces the ridge: give l2 a number, not 'auto'")
        return self

    @field_validator("feature_bag")
    @classmethod
    def _bag_columns(cls, value):
        if isinstance(value, tuple):
            if not value:
                raise ValueError("a list of feature columns must name at least one column")
            repeated = sorted({c for c in value if value.count(c) > 1})
            if repeated:
                raise ValueError(f"feature columns repeated: {repeated}")
        return value

    @model_validator(mode="after")
    def _intercept_rules(self):
        if self.regularize_intercept and not self.fit_intercept:
            raise ValueError("regularize_intercept=True needs fit_intercept=True")
        if self.feature_bag is None and not self.fit_intercept:
            raise ValueError(
                "a coordinate without feature_bag is intercept-only: fit_intercept must be True"
            )
        return self


class FixedEffect(_LinearCoordinate):
    """One global GLM over all rows, trained data-parallel (Ray Train, all-reduced L-BFGS).

    Objective: sum_i w_i loss(y_i, x_i.coef + b + o_i) + l2/2 ||coef||^2 (+ l1 ||coef||_1),
    with b regularized only if ``regularize_intercept``.

    ``workers=0`` trains in-process; ``workers=N`` on N Ray Train workers, elastic down to
    ``min_workers`` when fewer are available; a failed worker group is restarted up to
    ``max_failures`` times and retraces the fit from its logged evaluations, exactly.
    """

    kind: Literal["fixed_effect"] = "fixed_effect"
    l2: NonNegative = 1.0
    solver: LBFGS = LBFGS()
    workers: Annotated[int, Field(ge=0)] = 0
    min_workers: Annotated[int, Field(gt=0)] | None = None
    max_failures: Annotated[int, Field(ge=-1)] = 3

    @field_validator("solver", mode="before")
    @classmethod
    def _solver(cls, value):
        return _solver_from_string(value, {"lbfgs": LBFGS})

    @model_validator(mode="after")
    def _workers(self):
        if self.variance == "covariance":
            raise ValueError(
                "variance='covariance' keeps per-entity matrices (random effects); "
                "a fixed effect's prior takes 'full' variances"
            )
        if self.min_workers is not None and not 0 < self.min_workers <= self.workers:
            raise ValueError("min_workers needs workers >= min_workers > 0")
        return self


class RandomEffect(_LinearCoordinate):
    """One small GLM per value of ``entity`` (per user, per movie, ...), fitted by Ray actors.

    Per-entity objective: (1/n_e) [sum_i w_i loss(y_i, b + x_i.w + o_i) + l2/2 ||w||^2].
    Entities with fewer than ``min_samples`` rows get no model (their rows are passive:
    scored by the offset alone); entities with more than ``max_samples`` rows are fitted on
    a deterministic sample of that size, re-weighted by count/max_samples.

    ``l2="auto"`` estimates the regularization from the data, as a mixed model does: the
    penalized coefficients (slopes, and the intercept with ``regularize_intercept``) are
    draws from N(0, sigma^2), l2 = 1/sigma^2, and sigma^2 is estimated across all entities
    by EM with a Laplace approximation at every fit (:mod:`raymix.solvers.variance_components`).
    For the linear task ``l2 = sigma_e^2 / sigma^2``: the residual variance ``sigma_e^2`` is
    estimated with ``sigma^2`` by maximum likelihood, shared by the run's random effects.
    """

    kind: Literal["random_effect"] = "random_effect"
    entity: Annotated[str, Field(min_length=1)]
    l2: NonNegative | Literal["auto"] = 1.0
    l2_per_feature: bool = False  #: one variance per slot, lme4's ``(1 + x || g)`` (linear)

    @field_validator("l2", mode="before")
    @classmethod
    def _l2_or_auto(cls, value):
        if value == "auto":
            return value
        try:
            if 0 <= (number := float(value)) < float("inf"):
                return number
        except (TypeError, ValueError):
            pass
        raise ValueError(f"l2 must be a number >= 0 or 'auto'. Got {value!r} instead")

    solver: Newton = Newton()
    min_samples: Annotated[int, Field(ge=0)] = 0
    max_samples: Annotated[int, Field(gt=0)] | None = None

    @field_validator("solver", mode="before")
    @classmethod
    def _solver(cls, value):
        return _solver_from_string(value, {"newton": Newton})

    @model_validator(mode="after")
    def _bounds(self):
        if self.max_samples is not None and self.max_samples < self.min_samples:
            raise ValueError("max_samples must be >= min_samples")
        if self.l2_per_feature and (self.l2 != "auto" or self.task != "linear" or self.l1):
            raise ValueError("l2_per_feature is a linear task's l2='auto' per feature, no l1")
        return self


class ExternalEffect(_Coordinate):
    """Per-row scores from a model trained outside raymix (GDMix's third mode).

    ``train_scores``/``validation_scores`` are Avro or Parquet files with ``uid`` and
    ``predictionScore`` (a logit). The coordinate is never refitted.
    """

    kind: Literal["external"] = "external"
    train_scores: str
    validation_scores: str | None = None
    score_column: str = "predictionScore"


Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]


class AdamW(Spec):
    """DeText's AdamW (BERT's ``AdamWeightDecayOptimizer``): Adam plus decoupled weight decay
    ``p -= lr * wd * p`` on every non-bias variable, no bias correction unless asked.

    ``learning_rate`` may be given here for convenience; it is moved to the coordinate's
    ``learning_rate`` (the one place it lives), and giving both with different values fails.
    """

    kind: Literal["adamw"] = "adamw"
    learning_rate: Positive | None = None
    weight_decay: NonNegative = 0.01
    beta_1: Probability = 0.9
    beta_2: Probability = 0.999
    epsilon: Positive = 1e-6
    bias_correction: bool = False


class Adam(Spec):
    """Adam with bias correction and no weight decay."""

    kind: Literal["adam"] = "adam"
    learning_rate: Positive | None = None
    beta_1: Probability = 0.9
    beta_2: Probability = 0.999
    epsilon: Positive = 1e-7


class SGD(Spec):
    """Plain (optionally momentum) gradient descent: deterministic, stateless without momentum."""

    kind: Literal["sgd"] = "sgd"
    learning_rate: Positive | None = None
    momentum: Probability = 0.0


DeepOptimizer = Annotated[AdamW | Adam | SGD, Field(discriminator="kind")]
_OPTIMIZERS = {"adamw": AdamW, "adam": Adam, "sgd": SGD}


class DeepEffect(_Coordinate):
    """A wide-and-deep global model (DeText as GDMix configures it for movieLens).

    ``logit = [CNN(text) ; v.x_wide] -> hidden layers -> linear``, trained on
    sum_i w_i sigmoid_xent(y_i, logit_i + o_i) / batch_size by mini-batch steps
    (see :mod:`raymix.deep`). The text is tokenized with ``vocab`` (one token a line, with
    [PAD], [UNK], [CLS], [SEP]); ``feature_bag`` is the wide (linear) part. ``workers=0``
    trains in-process; otherwise data-parallel over ``backend``: TensorFlow collectives
    (Ray Train) or Horovod (Gloo, on Ray actors; needs ``scripts/install_horovod.sh``). A
    failed worker group is started again up to ``max_failures`` times (-1: always) and
    re-runs the current fit from the state it started from.
    """

    kind: Literal["deep"] = "deep"
    task: Literal["logistic"] = "logistic"
    text_column: Annotated[str, Field(min_length=1)] = "title"
    vocab: Annotated[str, Field(min_length=1)]
    feature_bag: str | None = None
    embedding_size: Annotated[int, Field(gt=0)] = 64
    filters: Annotated[int, Field(gt=0)] = 50
    window_sizes: Annotated[tuple[Annotated[int, Field(gt=0)], ...], Field(min_length=1)] = (3,)
    hidden: tuple[Annotated[int, Field(gt=0)], ...] = ()
    optimizer: DeepOptimizer = AdamW()
    learning_rate: Positive = 0.002
    schedule: Literal["linear", "constant"] = "linear"
    clip_norm: Positive | None = 1.0
    steps: Annotated[int, Field(gt=0)] = 1000
    batch_size: Annotated[int, Field(gt=0)] = 64
    max_len: Annotated[int, Field(gt=0)] = 16
    min_len: Annotated[int, Field(ge=0)] = 3
    seed: int = 1234
    workers: Annotated[int, Field(ge=0)] = 0
    backend: Literal["tensorflow", "horovod"] = "tensorflow"
    max_failures: Annotated[int, Field(ge=-1)] = 3

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer(cls, value):
        if isinstance(value, str) and value not in _OPTIMIZERS:
            raise ValueError(
                f"must be one of {sorted(_OPTIMIZERS)} or an optimizer object. Got '{value}'"
            )
        return _solver_from_string(value, _OPTIMIZERS)

    @model_validator(mode="before")
    @classmethod
    def _one_learning_rate(cls, data):
        if not isinstance(data, dict):
            return data
        optimizer = data.get("optimizer")
        given = (
            optimizer.get("learning_rate")
            if isinstance(optimizer, dict)
            else getattr(optimizer, "learning_rate", None)
        )
        if given is None:
            return data
        top = data.get("learning_rate")
        if top is not None and top != given:
            raise ValueError(
                f"learning_rate is {top} but optimizer.learning_rate is {given}: give it once"
            )
        if isinstance(optimizer, dict):
            optimizer = {**optimizer, "learning_rate": None}
        else:
            optimizer = optimizer.model_copy(update={"learning_rate": None})
        return {**data, "learning_rate": given, "optimizer": optimizer}

    @model_validator(mode="after")
    def _sizes(self):
        if self.batch_size < max(self.workers, 1):
            raise ValueError(f"batch_size ({self.batch_size}) must be >= workers ({self.workers})")
        return self


Coordinate = Annotated[
    FixedEffect | RandomEffect | ExternalEffect | DeepEffect, Field(discriminator="kind")
]


class Resources(Spec):
    """How much of the machine or cluster a run uses. Zeros mean "size it for me"."""

    address: str | None = None
    num_cpus: Annotated[int, Field(ge=0)] = 0
    object_store_gib: Annotated[float, Field(ge=0)] = 0.0
    #: random-effect actors (0: one for inputs up to 256 MiB, else one per core)
    actors: Annotated[int, Field(ge=0)] = 0
    #: hash buckets of entities (0: four per actor, at least four per core); one model file
    #: per bucket
    buckets: Annotated[int, Field(ge=0)] = 0
    #: how the coordinates read their rows: all at once (least wall time), one after the other
    #: (the memory peak of one coordinate's reading, not of all), or ``auto``: one after the
    #: other when the input files total more than 256 MiB
    reading: Literal["auto", "together", "one_at_a_time"] = "auto"
    #: an S3-compatible endpoint (MinIO, Ceph: ``http://host:9000``) for ``s3://`` paths;
    #: default: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, else AWS. Credentials are never
    #: a recipe field: they come from the environment or the instance role
    s3_endpoint: Annotated[str, Field(pattern=r"^https?://[^/@\s]+/?$")] | None = None


class EarlyStopping(Spec):
    """Stop passing when the validation metric of the last coordinate has not improved."""

    patience: Annotated[int, Field(gt=0)] = 1
    min_delta: NonNegative = 0.0


class Recipe(Spec):
    """A whole run: data, the ordered coordinates, passes, output and resources."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = "raymix"
    data: Data
    columns: Columns = Columns()
    coordinates: tuple[Coordinate, ...]
    passes: Annotated[int, Field(gt=0)] = 1
    early_stopping: EarlyStopping | None = None
    metric: Literal["auc", "logloss", "rmse"] = "auc"
    output: str
    resources: Resources = Resources()
    seed: int = 0
    checkpoint: bool = True
    #: "photon": the models also in Photon ML's GAME layout (fixed-effect/, random-effect/, model-spec)
    model_layout: Literal["raymix", "photon"] = "raymix"

    @model_validator(mode="after")
    def _coordinates(self):
        if not self.coordinates:
            raise ValueError("a recipe needs at least one coordinate")
        names = [c.name for c in self.coordinates]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"coordinate names must be unique; repeated: {duplicated}")
        if all(c.locked or c.kind == "external" for c in self.coordinates):
            raise ValueError("every coordinate is locked or external: nothing to train")
        return self

    def coordinate(self, name: str):
        return {c.name: c for c in self.coordinates}[name]  # KeyError(name) if none

    def data_for(self, coordinate) -> Data:
        return coordinate.data or self.data

    def with_prior(self, models: str, weight: float = 1.0) -> Recipe:
        """Every fitted fixed or random effect with ``models`` (a previous output) as its
        prior (``raymix fit --prior``), variances written unless the recipe says which."""
        coordinates = []
        for c in self.coordinates:
            if c.kind in ("fixed_effect", "random_effect") and not c.locked:
                raw = c.model_dump(exclude_unset=True)
                raw["prior"] = {"models": str(models), "weight": weight}
                c = type(c).model_validate(raw)
            coordinates.append(c)
        return self.model_copy(update={"coordinates": tuple(coordinates)})
