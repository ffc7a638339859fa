"""The linear mixed model by maximum likelihood, exactly: lme4's ``lmer`` in numpy (no Ray).

The model, for ``n`` rows with fixed-effect design ``X (n, p)`` and random-effect factors
``k = 1..K`` (crossed or nested: each row has a level of every factor)::

    y = X beta + sum_k Z_k u_k + e,    e ~ N(0, sigma_e^2 W^-1),    u_kl ~ N(0, diag(s_k^2)),

where level ``l`` of factor ``k`` has ``r_k`` effects (an intercept and slopes, the columns of
the factor's ``Z``), ``W = diag(weights)``, and ``s_k^2`` is one variance shared by the ``r_k``
effects, or one per effect (lme4's ``(1 + x || g)``: ``per_feature``). With the relative
scales ``theta_c = s_c / sigma_e`` of every random-effect column ``c`` (``Theta = diag``),
``Zt = Z Theta`` and ``A = Zt' Zt + I``, lme4's penalized least squares

    PWRSS = min_{beta, v} ||y - X beta - Zt v||^2 + ||v||^2,     u = Theta v,

gives the profiled deviances (``-2 log L`` at the best ``beta`` and ``sigma_e^2``)::

    ML:    log det A + n (1 + log(2 pi PWRSS / n)),                  sigma_e^2 = PWRSS / n,
    REML:  log det M + (n - p) (1 + log(2 pi PWRSS / (n - p))),      sigma_e^2 = PWRSS / (n - p),

``M = [[A, Zt'X], [X'Zt, X'X]]`` the matrix of the normal equations. :func:`fit_linear_mixed`
minimizes them over ``phi = log(s^2 / sigma_e^2)`` (one per variance component) with the
exact gradient ``d dev / d phi_k = m_k - tr_k(A^-1) - ||v_k||^2 / sigma_e^2`` (``m_k`` the
columns of component ``k``, ``tr_k`` over them; REML: the ``v`` block of ``M^-1`` for
``A^-1``), whose zero is the EM fixed point ``m_k s_k^2 = ||u_k||^2 + sigma_e^2 tr_k(C)`` of
:mod:`raymix.solvers.variance_components`, ``C = Theta A^-1 Theta`` the conditional
covariance of ``u / sigma_e``.

What a statistician reads off (all as ``lmer`` reports them):

* ``beta_se``: ``sqrt(diag(sigma_e^2 (X' V^-1 X)^-1))``, ``V = W^-1 + Z Lambda Z'`` relative
  to ``sigma_e^2``: ``vcov(fit)``; the ``beta`` block of ``M^-1`` is ``(X' V^-1 X)^-1``;
* ``conditional_variances``: ``Var(u | y, beta)`` = ``sigma_e^2 diag(C)``, per level and
  effect: ``ranef(fit, condVar=TRUE)`` (conditional on ``beta``, not accounting for its
  uncertainty).

The linear algebra is dense (a Cholesky of the ``(q + p)`` square ``M``, ``q`` the number of
random effects): an exact reference for problems up to a few thousand effects. Large crossed
designs are fitted by the coordinate descent instead (``l2="auto"`` of a linear random
effect), whose estimates are checked against these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse as sp

from raymix.errors import DataError, FitError
from raymix.solvers import checks

__all__ = ["Factor", "LinearMixedFit", "fit_linear_mixed", "one_way_anova_ml"]

METHODS = ("ml", "reml")
#: a variance ratio ``s^2 / sigma_e^2`` is searched in ``[e^-30, e^30]``
_LOG_RATIO_BOUNDS = (-30.0, 30.0)
#: EM steps before L-BFGS-B (see :func:`_em_steps`)
_EM_WARM_UP = 10


@dataclass(frozen=True)
class Factor:
    """A random-effect factor: per row the code of its level, ``codes (n,)`` in ``[0, q)``,
    and the columns its effects multiply, ``Z (n, r)`` (None: an intercept, one column of
    ones). ``per_feature``: one variance per column, else one shared by all ``r``."""

    codes: np.ndarray
    Z: np.ndarray | None = None
    per_feature: bool = False
    name: str = ""


@dataclass(frozen=True)
class LinearMixedFit:
    """The fit of :func:`fit_linear_mixed`.

    ``sigma2[k]``: factor ``k``'s variance, a float (shared) or ``(r_k,)`` (``per_feature``);
    ``blups[k]`` and ``conditional_variances[k]``: ``(q_k, r_k)`` per level and effect.
    ``deviance`` is the profiled ``-2 log L`` (REML: the restricted one).
    """

    method: str
    beta: np.ndarray
    beta_se: np.ndarray
    sigma_e2: float
    sigma2: list
    blups: list[np.ndarray]
    conditional_variances: list[np.ndarray]
    deviance: float
    n_iter: int
    converged: bool


@dataclass(frozen=True)
class _Design:
    y: np.ndarray  # sqrt(w) y
    X: np.ndarray  # sqrt(w) X
    Z: sp.csr_matrix  # sqrt(w) Z, one column per level and effect, factor after factor
    component: np.ndarray  # per column of Z: its variance component
    sizes: list[tuple[int, int]]  # (q_k, r_k) per factor
    log_weights: float  # sum log w (the deviance's constant)


def _design(y, X, factors, weights) -> tuple[_Design, list[int]]:
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    X = np.ones((n, 1)) if X is None else np.asarray(X, dtype=np.float64)
    X = X if X.ndim == 2 and X.shape[0] == n else X.reshape(n, -1)  # (n, 0): no fixed effect
    w = checks.vector(weights, n, "weights", default=1.0)
    checks.finite(y, "y")
    checks.finite(w, "weights")
    if (w <= 0).any():
        raise DataError("must be > 0", column="weights")
    root = np.sqrt(w)
    blocks, component, sizes, first = [], [], [], []
    n_components = 0
    for k, factor in enumerate(factors):
        codes = np.asarray(factor.codes)
        if codes.shape != (n,) or not np.issubdtype(codes.dtype, np.integer) or (codes < 0).any():
            raise DataError(f"factor {k}: codes must be n={n} integers >= 0", column="codes")
        Z = np.ones((n, 1)) if factor.Z is None else np.asarray(factor.Z, np.float64).reshape(n, -1)
        q, r = int(codes.max()) + 1 if n else 0, Z.shape[1]
        cols = codes[:, None] * r + np.arange(r)
        blocks.append(sp.csr_matrix((Z.ravel(), cols.ravel(), np.arange(n + 1) * r), (n, q * r)))
        per = np.arange(r) if factor.per_feature else np.zeros(r, np.int64)
        first.append(n_components)
        component.append(np.tile(n_components + per, q))
        n_components += int(per.max()) + 1
        sizes.append((q, r))
    Z = sp.diags(root) @ sp.hstack(blocks, format="csr")
    design = _Design(
        root * y, root[:, None] * X, Z.tocsr(), np.concatenate(component), sizes,
        float(np.log(w).sum()),
    )  # fmt: skip
    return design, first


class _Profile:
    """The profiled deviance at ``phi`` (log variance ratios) and what it is made of."""

    def __init__(self, d: _Design, method: str):
        self.d, self.reml = d, method == "reml"
        self.ZtZ = (d.Z.T @ d.Z).toarray()
        self.ZtX = d.Z.T @ d.X
        self.XtX = d.X.T @ d.X
        self.Zty = d.Z.T @ d.y
        self.Xty = d.X.T @ d.y

    def solve(self, phi: np.ndarray):
        d, q, p, n = self.d, self.ZtZ.shape[0], self.XtX.shape[0], self.d.y.size
        theta = np.exp(0.5 * phi[d.component])
        M = np.empty((q + p, q + p))
        M[:q, :q] = theta[:, None] * self.ZtZ * theta[None, :]
        M[np.arange(q), np.arange(q)] += 1.0
        M[:q, q:] = theta[:, None] * self.ZtX
        M[q:, :q] = M[:q, q:].T
        M[q:, q:] = self.XtX
        try:
            factor = scipy.linalg.cho_factor(M, lower=True)
        except np.linalg.LinAlgError as exc:
            raise FitError(f"the mixed model's normal equations are singular ({exc})") from exc
        rhs = np.concatenate([theta * self.Zty, self.Xty])
        sol = scipy.linalg.cho_solve(factor, rhs)
        v, beta = sol[:q], sol[q:]
        resid = d.y - d.Z @ (theta * v) - d.X @ beta
        pwrss = float(resid @ resid + v @ v)
        inv = scipy.linalg.cho_solve(factor, np.eye(q + p))
        logdet_M = 2.0 * float(np.log(np.diag(factor[0])).sum())
        dof = n - p if self.reml else n
        if self.reml:
            logdet, diag_inv = logdet_M, np.diag(inv)[:q]
        else:
            A = scipy.linalg.cho_factor(M[:q, :q], lower=True)
            logdet = 2.0 * float(np.log(np.diag(A[0])).sum())
            diag_inv = np.diag(scipy.linalg.cho_solve(A, np.eye(q))) if q else np.zeros(0)
        sigma_e2 = pwrss / dof
        deviance = logdet + dof * (1.0 + np.log(2.0 * np.pi * sigma_e2)) - d.log_weights
        m = np.bincount(d.component, minlength=phi.size)
        grad = (
            m
            - np.bincount(d.component, diag_inv, phi.size)
            - np.bincount(d.component, v * v, phi.size) / sigma_e2
        )
        return deviance, grad, {
            "theta": theta, "v": v, "beta": beta, "sigma_e2": sigma_e2, "inv": inv,
            "diag_inv": diag_inv,
        }  # fmt: skip


def fit_linear_mixed(
    y,
    X,
    factors: list[Factor],
    *,
    weights=None,
    method: str = "ml",
    start: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 500,
) -> LinearMixedFit:
    """Maximum likelihood (``method="ml"``, ``lmer(REML=FALSE)``) or REML estimates of the
    linear mixed model of the module docstring; ``X`` None is an intercept alone.

    ``start``: log variance ratios, one per component (factor after factor; 0 by default).
    L-BFGS-B stops when the gradient's max-abs is ``<= tol`` (it is a sum over effects).
    """
    owner = "fit_linear_mixed"
    checks.choice(owner, "method", method, METHODS)
    checks.real(owner, "tol", tol, open_low=True)
    checks.integer(owner, "max_iter", max_iter, low=1)
    if not factors:
        raise FitError("fit_linear_mixed needs at least one random-effect factor")
    design, _ = _design(y, X, factors, weights)
    n_components = int(design.component.max()) + 1 if design.component.size else 0
    if design.y.size <= design.X.shape[1]:
        raise FitError(f"{design.y.size} rows cannot fit {design.X.shape[1]} fixed effects")
    profile = _Profile(design, method)
    phi0 = np.zeros(n_components) if start is None else np.asarray(start, np.float64)
    phi0 = _em_steps(profile, phi0, _EM_WARM_UP)
    result = scipy.optimize.minimize(
        lambda phi: profile.solve(phi)[:2],
        phi0,
        jac=True,
        method="L-BFGS-B",
        bounds=[_LOG_RATIO_BOUNDS] * n_components,
        options={"gtol": tol, "ftol": 0.0, "maxiter": max_iter, "maxcor": 20},
    )
    deviance, grad, at = profile.solve(result.x)
    return _collect(design, method, result, deviance, grad, at, tol)


def _em_steps(profile: _Profile, phi: np.ndarray, steps: int) -> np.ndarray:
    """EM steps on the log variance ratios: ``lambda_k <- lambda_k (||v_k||^2 / sigma_e^2 +
    tr_k(A^-1)) / m_k`` (the zero of the gradient is their fixed point). A few of them bring
    L-BFGS-B where the deviance is nearly quadratic in ``phi``: from a poor start its first
    step can overshoot to the flat far end (a variance near 0)."""
    m = np.bincount(profile.d.component, minlength=phi.size)
    for _ in range(steps):
        _, grad, _ = profile.solve(phi)
        phi = np.clip(phi + np.log1p(-grad / m), *_LOG_RATIO_BOUNDS)
    return phi


def _collect(design, method, result, deviance, grad, at, tol) -> LinearMixedFit:
    q = design.Z.shape[1]
    ratio = np.exp(result.x)
    sigma_e2 = at["sigma_e2"]
    u = at["theta"] * at["v"]
    cond = sigma_e2 * at["theta"] ** 2 * at["diag_inv"]
    beta_se = np.sqrt(sigma_e2 * np.diag(at["inv"])[q:])
    sigma2, blups, cond_var = [], [], []
    start, comp = 0, design.component
    for qk, rk in design.sizes:
        cols = slice(start, start + qk * rk)
        components = comp[cols][:rk]
        s2 = sigma_e2 * ratio[components]
        sigma2.append(float(s2[0]) if np.all(components == components[0]) else s2)
        blups.append(u[cols].reshape(qk, rk))
        cond_var.append(cond[cols].reshape(qk, rk))
        start += qk * rk
    interior = (result.x > _LOG_RATIO_BOUNDS[0] + 1) & (result.x < _LOG_RATIO_BOUNDS[1] - 1)
    converged = bool(result.success or np.all(np.abs(grad[interior]) <= 10 * tol))
    return LinearMixedFit(
        method=method,
        beta=at["beta"],
        beta_se=beta_se,
        sigma_e2=float(sigma_e2),
        sigma2=sigma2,
        blups=blups,
        conditional_variances=cond_var,
        deviance=float(deviance),
        n_iter=int(result.nit),
        converged=converged,
    )


def one_way_anova_ml(y: np.ndarray, method: str = "ml") -> tuple[float, float, float]:
    """``(mu, sigma_a^2, sigma_e^2)`` of the balanced one-way random-effects model ``y_ij =
    mu + a_i + e_ij`` (``y (a, n)``: ``a`` groups of ``n`` rows) in closed form (Searle,
    Casella & McCulloch, *Variance Components*, 3.7): with ``MSA = n sum_i (ybar_i -
    ybar)^2 / (a - 1)`` and ``MSE = sum (y_ij - ybar_i)^2 / (a (n - 1))``, ML gives
    ``sigma_e^2 = MSE`` and ``sigma_a^2 = ((1 - 1/a) MSA - MSE) / n``; REML ``(MSA - MSE) / n``
    (both when positive, else ``sigma_a^2 = 0`` and ``sigma_e^2`` the total mean square)."""
    checks.choice("one_way_anova_ml", "method", method, METHODS)
    y = np.asarray(y, dtype=np.float64)
    a, n = y.shape
    means = y.mean(axis=1)
    msa = n * float(((means - means.mean()) ** 2).sum()) / (a - 1)
    mse = float(((y - means[:, None]) ** 2).sum()) / (a * (n - 1))
    between = (1.0 - 1.0 / a) * msa if method == "ml" else msa
    sigma_a2 = (between - mse) / n
    if sigma_a2 <= 0:
        dof = a * n if method == "ml" else a * n - 1
        return float(y.mean()), 0.0, float(((y - y.mean()) ** 2).sum()) / dof
    return float(y.mean()), sigma_a2, mse
