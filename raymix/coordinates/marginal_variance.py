"""A linear mixed model's fixed-effect variances as lmer's ``vcov``: marginal over the random effects.

A fixed effect's own Hessian gives its coefficients' variances *given* the random effects
(``sigma_e^2 (X'WX + ridge)^-1`` for a linear task): too small wherever a random effect
could explain the same signal. lmer's ``vcov`` integrates the random effects out:

    vcov(beta) = sigma_e^2 (X' V^-1 X)^-1,
    X' V^-1 X  = X'WX - X'WZ (Z'WZ + Lambda)^-1 Z'WX = X'W (X - P X),

``Z`` every random effect's design, ``Lambda`` their ridges (``l2 = sigma_e^2 / sigma^2``)
and ``P X = Z (Z'WZ + Lambda)^-1 Z'W X`` the random effects' joint penalized least-squares
fit of each design column, taken as a label. The fixed effect's own ridge is then added as
in :func:`~raymix.solvers.variance.coefficient_variances` (lmer has none; with ``l2=0``
this is lmer's ``vcov`` exactly).

It is computed where the rows are, a block of columns at a time: the fixed effect's workers
send the columns (:meth:`FixedEffectCoordinate.design`), the random effects' holders fit
them (:meth:`RandomEffectCoordinate.project`; one factor: one fit; crossed factors:
backfitting, the Gauss-Seidel sweeps of the coordinate descent itself, accelerated by
Anderson's mixing (:mod:`raymix.solvers.anderson`) until the fits settle), and the workers form ``X'W (X - P X)`` over their rows
(:meth:`FixedEffectCoordinate.cross`). A block and its backfitting's copies hold at most
:data:`BLOCK_ELEMENTS` values.

Where it would not be exact (a prior, an l1, ``max_samples`` sampling, a deep coordinate,
free random intercepts, more than one fixed effect or more than :data:`MAX_PARAMS`
coefficients) the fixed effect keeps its conditional variances and the summary says why
(:func:`conditional_reason`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raymix.coordinates.fixed_effect import FixedEffectCoordinate
from raymix.coordinates.random_effect import RandomEffectCoordinate
from raymix.solvers.anderson import Anderson
from raymix.solvers.layout import glm_penalized
from raymix.solvers.variance import coefficient_variances

#: the most fixed-effect coefficients whose marginal variances are computed (a dense p x p)
MAX_PARAMS = 512
#: the most values of one block of design columns held at once (rows x columns)
BLOCK_ELEMENTS = 1 << 22
#: backfitting over crossed random effects: sweeps at most, when the fits have settled, and
#: the iterates Anderson's mixing keeps
MAX_SWEEPS = 200
TOLERANCE = 1e-10
ANDERSON_MEMORY = 8
#: the marginal precision's smallest eigenvalue relative to its largest below which the
#: design counts as rank deficient
RANK_TOLERANCE = 1e-10


@dataclass(frozen=True)
class MarginalVariances:
    """The fixed effect's marginal variances (theta order, relative to ``sigma_e^2``) and
    the backfitting sweeps the slowest block needed."""

    variances: np.ndarray
    sweeps: int


def use_marginal_variances(coordinates: list, infos: dict[str, dict]) -> dict | None:
    """Give the run's fixed effect its marginal variances where they are exact
    (:func:`conditional_reason`); ``infos`` the last step's ``info`` of each coordinate by
    name. Returns what the summary says of the fixed effect's variances (None when it has
    none): ``{"coordinate", "kind": "marginal" | "conditional", and "sweeps" or "reason"}``."""
    fixed = [c for c in coordinates if c.kind == "fixed_effect" and c.variances is not None]
    if not fixed:
        return None
    said = {"coordinate": fixed[0].name, "kind": "conditional"}
    reason = conditional_reason(coordinates)
    randoms = [c for c in coordinates if c.kind == "random_effect"]
    penalties = {r.name: fitted_penalty(r.spec, infos.get(r.name, {})) for r in randoms}
    if reason is None and any(l2 is None and l2s is None for l2, l2s in penalties.values()):
        reason = "a random effect's l2 is not known (never fitted)"
    if reason is not None:
        return said | {"reason": reason}
    found = marginal_variances(fixed[0], randoms, penalties)
    if isinstance(found, str):
        return said | {"reason": found}
    fixed[0].variances = found.variances
    return said | {"kind": "marginal", "sweeps": found.sweeps}


def conditional_reason(coordinates: list) -> str | None:
    """Why the fixed effect's variances stay conditional on the random effects (None: the
    marginal ones are computed); ``coordinates`` the run's, in order."""
    fixed = [c for c in coordinates if c.kind == "fixed_effect"]
    randoms = [c for c in coordinates if c.kind == "random_effect"]
    if len(fixed) != 1 or not randoms or fixed[0].spec.variance is None:
        return "not a linear mixed model with one fixed effect whose variances are asked for"
    fe = fixed[0]
    if fe.spec.task != "linear" or any(r.spec.task != "linear" for r in randoms):
        return "not a linear model"
    if any(c.kind == "deep" for c in coordinates):
        return "a deep coordinate is not a linear random effect"
    if fe.prior is not None or fe.spec.l1:
        return "the fixed effect has a prior or an l1"
    if fe.params > MAX_PARAMS:
        return f"the fixed effect has {fe.params} coefficients (more than {MAX_PARAMS})"
    for r in randoms:
        spec = r.spec
        if spec.prior is not None or spec.l1 or spec.max_samples is not None:
            return f"random effect '{spec.name}' has a prior, an l1 or max_samples"
        if spec.fit_intercept and not spec.regularize_intercept:
            return f"random effect '{spec.name}' has free intercepts"
    return None


def fitted_penalty(spec, info: dict) -> tuple[float | None, tuple[float, ...] | None]:
    """The ridge a random effect was last fitted with, from its step's ``info``: ``(l2,
    l2s)`` (``l2_per_slot``), the spec's ``l2`` where no estimate was recorded; ``l2`` is
    None when it is still ``"auto"`` (never fitted)."""
    if info.get("l2_per_slot") is not None:
        return None, tuple(float(v) for v in info["l2_per_slot"])
    l2 = info.get("l2", spec.l2)
    return (None if isinstance(l2, str) else float(l2)), None


def marginal_variances(
    fixed: FixedEffectCoordinate,
    randoms: list[RandomEffectCoordinate],
    penalties: dict[str, tuple[float | None, tuple[float, ...] | None]],
    *,
    max_sweeps: int = MAX_SWEEPS,
    tol: float = TOLERANCE,
) -> MarginalVariances | str:
    """The fixed effect's variances marginal over ``randoms`` (module docstring), at the
    ridges ``penalties`` (by name, :func:`fitted_penalty`); or why not: the backfitting has
    not settled in ``max_sweeps``, or the precision is not positive definite (a
    rank-deficient design without a ridge)."""
    p = fixed.params
    held = 1 if len(randoms) == 1 else len(randoms) * (2 * ANDERSON_MEMORY + 4)  # copies of a block
    width = max(1, min(p, BLOCK_ELEMENTS // max(fixed.train_rows * held, 1)))
    precision = np.zeros((p, p))
    slowest = 0
    for start in range(0, p, width):
        stop = min(p, start + width)
        columns = fixed.design(start, stop)
        projected, sweeps = _projection(columns, randoms, penalties, max_sweeps, tol)
        if projected is None:
            return f"the backfitting did not settle in {max_sweeps} sweeps"
        slowest = max(slowest, sweeps)
        precision[:, start:stop] = fixed.cross(columns - projected)
    precision = (precision + precision.T) / 2
    spec = fixed.spec
    if not _positive_definite(precision, spec):
        return "the design is rank deficient (give the fixed effect an l2, or drop a column)"
    mode = "simple" if spec.variance == "simple" else "full"
    variances = coefficient_variances(
        precision,
        spec.l2,
        fit_intercept=spec.fit_intercept,
        regularize_intercept=spec.regularize_intercept,
        mode=mode,
    )
    return MarginalVariances(variances, slowest)


def _positive_definite(precision: np.ndarray, spec) -> bool:
    """Whether the marginal precision with the fixed effect's own ridge is positive definite
    to working precision (its smallest eigenvalue above :data:`RANK_TOLERANCE` of the
    largest; not so: a rank-deficient design without a ridge, whose coefficients are not
    identified)."""
    penalized = glm_penalized(precision.shape[0], spec.fit_intercept, spec.regularize_intercept)
    eigenvalues = np.linalg.eigvalsh(precision + np.diag(spec.l2 * penalized))
    return bool(eigenvalues[0] > RANK_TOLERANCE * max(eigenvalues[-1], 0.0))


def _projection(columns, randoms, penalties, max_sweeps: int, tol: float):
    """``P X`` of these design columns: every random effect's fit of them given the others'
    (backfitting, Anderson-accelerated; one sweep for one random effect); ``(P X, sweeps)``,
    None when it has not settled."""
    fits = np.zeros((len(randoms), *columns.shape))
    scale = max(1.0, float(np.max(np.abs(columns), initial=0.0)))
    mixing = Anderson(ANDERSON_MEMORY)
    for sweep in range(1, max_sweeps + 1):
        swept = fits.copy()
        for k, random in enumerate(randoms):  # Gauss-Seidel: each given the others' latest
            others = swept.sum(axis=0) - swept[k]
            swept[k] = random.project(columns, others, *penalties[random.name])
        if len(randoms) == 1 or np.max(np.abs(swept - fits)) <= tol * scale:
            return swept.sum(axis=0), sweep
        fits = mixing.step(fits, swept)
    return None, max_sweeps
