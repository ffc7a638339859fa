"""What a fixed-effect worker does with its rows, as pure functions, and the messages it exchanges.

A fixed effect's rows are sharded across a worker group (:mod:`raymix.engine.fixed_effect`);
every worker holds a :class:`~raymix.solvers.glm.GLMLoss` of its shard and steps the same
solver in lockstep on the all-reduced loss. Which solver, with which options, whether to
polish, what to threshold and which variances to report follows from the spec alone:
:func:`fit_fixed_effect` decides and runs it, given the group's :class:`Objective` (the
all-reduced data term). It knows nothing of Ray and runs as well on one in-process loss.

Objective (see :func:`~raymix.solvers.glm.minimize_glm`): ``f(theta) = sum_i w_i
loss(y_i, x_i . coef + intercept + offset_i) + l2/2 |coef|^2 + l1 |coef|_1``, with the
intercept last in ``theta`` (:mod:`raymix.solvers.layout`). With a Gaussian prior
(:mod:`raymix.solvers.prior`, yesterday's model) the ridge is ``1/2 (theta - mu)' P (theta -
mu)`` where the prior knows a coefficient, and the variances are the posterior's.

Driver and workers exchange :class:`FitCommand` and :class:`FitReply`; for a linear
model's marginal variances (:mod:`raymix.coordinates.marginal_variance`),
:class:`DesignCommand` and :class:`DesignReply`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from raymix.recipe.spec import LBFGS, FixedEffect
from raymix.solvers.glm import ColumnStats, linear_predictor, minimize_glm
from raymix.solvers.layout import glm_coef_intercept, glm_penalized, glm_theta
from raymix.solvers.owlqn import LBFGSOptions
from raymix.solvers.polish import newton_polish
from raymix.solvers.prior import Prior, glm_prior_terms
from raymix.solvers.variance import coefficient_variances, threshold


@dataclass(frozen=True)
class FitCommand:
    """Refit (or only score, ``refit=False``) with the offsets shared at ``train_offsets``.

    ``train_index``/``val_index`` are the shared global orders of the rows (sorted uids), from
    which a worker finds where its rows sit; ``theta`` is the start (None: zeros), ``spec``
    the hyper-parameters (the driver may swap them between fits)."""

    refit: bool
    spec: FixedEffect
    theta: np.ndarray | None
    train_offsets: Any
    train_index: Any
    val_index: Any
    prior: Prior | None = None


@dataclass(frozen=True)
class SolverSummary:
    """What one fit did (the step's info in the summary, in this order)."""

    iterations: int
    converged: bool
    objective: float
    message: str
    newton_steps: int
    replayed_evaluations: int  # answered from a restarted group's log (raymix.solvers.replay)
    solver_seconds: float


@dataclass(frozen=True)
class FitReply:
    """One worker's answer: its rows' scores and where they sit in the global order; rank 0
    also sends ``theta``; a refit adds the solver's summary (and the variances, if asked)."""

    theta: np.ndarray | None
    train: np.ndarray
    train_pos: np.ndarray
    val: np.ndarray | None = None
    val_pos: np.ndarray | None = None
    summary: SolverSummary | None = None
    variances: np.ndarray | None = None


@dataclass(frozen=True)
class Objective:
    """The data term of the whole group: every call is collective (all workers, in lockstep).

    ``value_grad(theta) -> (value, gradient)`` and ``hessian(theta) -> (n, n)`` are sums over
    every shard; ``stats`` the all-reduced column statistics (for the preconditioner);
    ``replayed()`` how many evaluations so far were answered from a restarted group's log."""

    value_grad: Callable[[np.ndarray], tuple[float, np.ndarray]]
    hessian: Callable[[np.ndarray], np.ndarray]
    n_params: int
    stats: ColumnStats
    replayed: Callable[[], int] = lambda: 0


@dataclass(frozen=True)
class FixedEffectFit:
    theta: np.ndarray
    summary: SolverSummary
    variances: np.ndarray | None


def lbfgs_options(solver: LBFGS) -> LBFGSOptions:
    """The solver's stopping rules and memory from the recipe's ``LBFGS``."""
    return LBFGSOptions(
        max_iter=solver.max_iter,
        history=solver.history,
        tolerance=solver.tolerance,
        gtol=solver.gtol,
    )


def wants_polish(spec: FixedEffect, converged: bool, n_params: int) -> bool:
    """Newton-polish a converged, smooth (no L1) fit of at most ``polish_max_params``."""
    solver = spec.solver
    return solver.polish and converged and spec.l1 == 0 and 0 < n_params <= solver.polish_max_params


def fit_fixed_effect(
    spec: FixedEffect,
    objective: Objective,
    x0: np.ndarray | None,
    prior: Prior | None = None,
) -> FixedEffectFit:
    """Minimise the spec's objective from ``x0``; polish, threshold and take variances as the
    spec asks. ``prior`` replaces the ridge where it knows a coefficient (the fit then starts
    from its mean unless ``x0`` is given)."""
    solver, n = spec.solver, objective.n_params
    started = time.perf_counter()
    fit = minimize_glm(
        objective.value_grad,
        n,
        l2=spec.l2,
        l1=spec.l1,
        fit_intercept=spec.fit_intercept,
        regularize_intercept=spec.regularize_intercept,
        stats=objective.stats,
        precondition=solver.precondition,
        x0=x0,
        options=lbfgs_options(solver),
        prior=prior,
    )
    theta = glm_theta(fit.coef, fit.intercept, spec.fit_intercept)
    gradient, hessian = _penalized(spec, objective, prior, n)
    polished = 0
    if wants_polish(spec, fit.converged, n):
        theta, polished = newton_polish(gradient, hessian, theta, l2=0.0, penalized=np.zeros(n))
    if spec.sparsity_threshold > 0:
        coef, intercept = threshold(
            *glm_coef_intercept(theta, spec.fit_intercept), spec.sparsity_threshold
        )
        theta = glm_theta(coef, intercept, spec.fit_intercept)
    summary = SolverSummary(
        iterations=fit.n_iter,
        converged=bool(fit.converged),
        objective=float(fit.objective),
        message=fit.message,
        newton_steps=polished,
        replayed_evaluations=objective.replayed(),
        solver_seconds=time.perf_counter() - started,
    )
    variances = None
    if spec.variance:
        variances = coefficient_variances(
            hessian(theta),
            0.0,
            fit_intercept=spec.fit_intercept,
            mode="simple" if spec.variance == "simple" else "full",
        )
    return FixedEffectFit(theta, summary, variances)


def _penalized(spec: FixedEffect, objective: Objective, prior: Prior | None, n: int):
    """The gradient and Hessian of the whole objective (the data term and its ridge or
    prior), both collective."""
    if prior is None:
        penalized = glm_penalized(n, spec.fit_intercept, spec.regularize_intercept)
        mu, P = np.zeros(n), spec.l2 * penalized
    else:
        mu, P = glm_prior_terms(prior, n - int(spec.fit_intercept), l2=spec.l2,
                                fit_intercept=spec.fit_intercept,
                                regularize_intercept=spec.regularize_intercept)  # fmt: skip
    full = P if P.ndim == 2 else np.diag(P)

    def gradient(theta: np.ndarray) -> np.ndarray:
        r = theta - mu
        return objective.value_grad(theta)[1] + (full @ r if P.ndim == 2 else P * r)

    def hessian(theta: np.ndarray) -> np.ndarray:
        return objective.hessian(theta) + full

    return gradient, hessian


@dataclass(frozen=True)
class DesignCommand:
    """Ask every worker about its training rows' design (theta order: the features, then the
    intercept as a column of ones): ``columns=(start, stop)``, those columns, dense; or, with
    ``against`` (a shared global-order matrix), the product ``X' W v`` of the whole design
    with ``v`` (its rows at the worker's rows) and the rows' weights ``W``."""

    train_index: Any
    columns: tuple[int, int] | None = None
    against: Any = None


@dataclass(frozen=True)
class DesignReply:
    """A worker's answer to a :class:`DesignCommand`: the columns asked for (its rows, at
    ``train_pos`` in the global order), or its share of ``X' W v``."""

    value: np.ndarray
    train_pos: np.ndarray


def design_columns(X, start: int, stop: int, fit_intercept: bool) -> np.ndarray:
    """Columns ``start:stop`` of ``[X, 1]`` (``X`` dense or CSR; the ones only with an
    intercept), dense, shape ``(rows, stop - start)``."""
    d = X.shape[1]
    features = X[:, start : min(stop, d)]
    block = features.toarray() if hasattr(features, "toarray") else np.asarray(features)
    block = np.asarray(block, np.float64).reshape(X.shape[0], -1)
    if fit_intercept and stop > d:
        block = np.column_stack([block, np.ones(X.shape[0])])
    return block


def weighted_cross(X, weights: np.ndarray, v: np.ndarray, fit_intercept: bool) -> np.ndarray:
    """``[X, 1]' diag(weights) v``, shape ``(params, v.shape[1])`` (the ones only with an
    intercept)."""
    wv = np.asarray(v, np.float64) * np.asarray(weights, np.float64)[:, None]
    cross = np.asarray(X.T @ wv, np.float64)
    if fit_intercept:
        cross = np.vstack([cross, wv.sum(axis=0)])
    return cross


def linear_scores(X, theta: np.ndarray, fit_intercept: bool) -> np.ndarray:
    """``X coef + intercept`` of every row (the coordinate's own score, no offset)."""
    if fit_intercept:
        return linear_predictor(X, theta[:-1], float(theta[-1]))
    return linear_predictor(X, theta)
