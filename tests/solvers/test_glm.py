"""The fixed-effect GLM solver against scikit-learn, closed forms and independent references.

Every reference below is written from the maths, not from ``raymix.solvers.glm``: a Newton
method on the objective written with numpy, scikit-learn's estimators, the normal equations,
and L-BFGS-B on the smooth split ``coef = p - q, p, q >= 0`` of an L1 problem.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit
from sklearn.linear_model import LogisticRegression, PoissonRegressor

from raymix.errors import DataError, RecipeError
from raymix.solvers.glm import (
    ColumnStats,
    GLMFit,
    GLMLoss,
    LBFGSOptions,
    coefficient_variances,
    fit_glm,
    minimize_glm,
    threshold,
)

TIGHT = LBFGSOptions(max_iter=20_000, history=20, tolerance=1e-16, gtol=1e-9)


# ------------------------------------------------------------------------------------------
# Data and independent references
# ------------------------------------------------------------------------------------------


def make_problem(task="logistic", n=1500, d=8, seed=0, scaled=True, density=None):
    """Rows with varied scales and means, weights, offsets and labels from a planted model."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if scaled:
        X = X * rng.uniform(0.2, 5.0, d) + rng.uniform(-2.0, 2.0, d)
    if density is not None:
        X[rng.random((n, d)) > density] = 0.0
    std = X.std(axis=0) + 1e-12
    beta = rng.standard_normal(d) / np.sqrt(d) / std
    z = (X - X.mean(axis=0)) @ beta + 0.3
    offsets = 0.5 * rng.standard_normal(n)
    weights = rng.uniform(0.2, 3.0, n)
    if task == "logistic":
        y = (rng.random(n) < expit(z + offsets)).astype(np.float64)
    elif task == "linear":
        y = z + offsets + rng.standard_normal(n)
    else:
        y = rng.poisson(np.exp(0.5 * z + offsets)).astype(np.float64)
    return X, y, weights, offsets


def loss_terms(task, y, z):
    """Per-row loss and its first two derivatives in z, written independently of raymix."""
    if task == "logistic":
        p = expit(z)
        return np.logaddexp(0.0, z) - y * z, p - y, p * (1 - p)
    if task == "linear":
        return 0.5 * (z - y) ** 2, z - y, np.ones_like(z)
    mu = np.exp(z)
    return mu - y * z, mu - y, mu


def reference_objective(X, y, w, o, task, l2, fit_intercept=True, regularize_intercept=False):
    """(f, grad, hess) of the full objective in theta = [coef, b] order."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    n, d = X.shape
    w = np.ones(n) if w is None else w
    o = np.zeros(n) if o is None else o
    Xa = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X
    pen = np.full(Xa.shape[1], l2)
    if fit_intercept and not regularize_intercept:
        pen[-1] = 0.0

    def fgh(theta):
        loss, d1, d2 = loss_terms(task, y, Xa @ theta + o)
        f = w @ loss + 0.5 * pen @ theta**2
        g = Xa.T @ (w * d1) + pen * theta
        H = Xa.T @ (Xa * (w * d2)[:, None]) + np.diag(pen)
        return f, g, H

    return fgh, Xa.shape[1]


def newton(fgh, p, tol=1e-11):
    """Damped Newton to a gradient of tol * (1 + |f|); quadratic convergence, high accuracy."""
    theta = np.zeros(p)
    f, g, H = fgh(theta)
    for _ in range(200):
        step = np.linalg.solve(H, g)
        t = 1.0
        while fgh(theta - t * step)[0] > f + 1e-12 * abs(f) and t > 1e-10:  # rounding slack
            t *= 0.5
        theta = theta - t * step
        f, g, H = fgh(theta)
        if np.abs(g).max() <= tol * (1 + abs(f)):
            return theta
    raise AssertionError("reference Newton did not converge")


def l1_reference(X, y, w, o, task, l2, l1, regularize_intercept=False):
    """Elastic net via L-BFGS-B on coef = p - q, p, q >= 0 (the intercept free or split too)."""
    fgh, p = reference_objective(X, y, w, o, task, l2, True, regularize_intercept)
    d = p - 1
    split = p if regularize_intercept else d

    def fun(v):
        theta = np.concatenate([v[:split] - v[split : 2 * split], v[2 * split :]])
        f, g, _ = fgh(theta)
        f += l1 * v[: 2 * split].sum()
        gv = np.concatenate([g[:split] + l1, -g[:split] + l1, g[split:]])
        return f, gv

    bounds = [(0, None)] * (2 * split) + [(None, None)] * (p - split)
    res = scipy.optimize.minimize(
        fun,
        np.zeros(2 * split + p - split),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 0.0, "gtol": 1e-11, "maxiter": 100_000, "maxfun": 200_000},
    )
    v = res.x
    return np.concatenate([v[:split] - v[split : 2 * split], v[2 * split :]])


def theta_of(fit: GLMFit, fit_intercept=True):
    return fit.theta if fit_intercept else fit.coef


# ------------------------------------------------------------------------------------------
# Agreement with scikit-learn and with independent solutions
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("precondition", [True, False], ids=["precond", "plain"])
def test_logistic_matches_sklearn(sparse, precondition):
    X, y, w, _ = make_problem(density=0.4 if sparse else None)
    l2 = 2.0
    sk = LogisticRegression(C=1 / l2, solver="newton-cholesky", tol=1e-14, max_iter=1000)
    sk.fit(X, y, sample_weight=w)
    Xin = sp.csr_matrix(X) if sparse else X
    fit = fit_glm(Xin, y, weights=w, l2=l2, precondition=precondition, options=TIGHT)
    np.testing.assert_allclose(fit.coef, sk.coef_[0], rtol=0, atol=1e-6)
    assert abs(fit.intercept - sk.intercept_[0]) <= 1e-6


def test_no_intercept_matches_sklearn():
    X, y, w, _ = make_problem(seed=1)
    sk = LogisticRegression(C=1.0, fit_intercept=False, solver="newton-cholesky", tol=1e-14)
    sk.fit(X, y, sample_weight=w)
    fit = fit_glm(X, y, weights=w, l2=1.0, fit_intercept=False, options=TIGHT)
    np.testing.assert_allclose(fit.coef, sk.coef_[0], rtol=0, atol=1e-6)
    assert fit.intercept == 0.0 and fit.coef.shape == (X.shape[1],)


@pytest.mark.parametrize("precondition", [True, False], ids=["precond", "plain"])
def test_regularized_intercept_matches_sklearn_with_a_ones_column(precondition):
    # sklearn without an intercept penalises every column, so a column of ones is exactly a
    # regularised intercept.
    X, y, w, _ = make_problem(seed=2)
    ones = np.hstack([X, np.ones((len(y), 1))])
    sk = LogisticRegression(C=1 / 3.0, fit_intercept=False, solver="newton-cholesky", tol=1e-14)
    sk.fit(ones, y, sample_weight=w)
    fit = fit_glm(
        X, y, weights=w, l2=3.0, regularize_intercept=True, precondition=precondition, options=TIGHT
    )
    np.testing.assert_allclose(fit.theta, sk.coef_[0], rtol=0, atol=1e-6)
    free = fit_glm(X, y, weights=w, l2=3.0, options=TIGHT)
    assert abs(free.intercept - fit.intercept) > 1e-3  # the penalty on b does something


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("task", ["logistic", "poisson"])
def test_offsets_and_weights_match_newton_reference(task, sparse):
    X, y, w, o = make_problem(task, seed=3, density=0.5 if sparse else None)
    fgh, p = reference_objective(X, y, w, o, task, l2=1.5)
    expected = newton(fgh, p)
    Xin = sp.csr_matrix(X) if sparse else X
    fit = fit_glm(Xin, y, weights=w, offsets=o, task=task, l2=1.5, options=TIGHT)
    np.testing.assert_allclose(fit.theta, expected, rtol=0, atol=1e-6)
    assert fit.objective == pytest.approx(fgh(expected)[0], rel=1e-12)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_linear_matches_normal_equations(fit_intercept):
    X, y, w, o = make_problem("linear", seed=4)
    n, d = X.shape
    Xa = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X
    pen = np.full(Xa.shape[1], 0.7)
    if fit_intercept:
        pen[-1] = 0.0
    expected = np.linalg.solve(Xa.T @ (Xa * w[:, None]) + np.diag(pen), Xa.T @ (w * (y - o)))
    fit = fit_glm(
        X,
        y,
        weights=w,
        offsets=o,
        task="linear",
        l2=0.7,
        fit_intercept=fit_intercept,
        options=TIGHT,
    )
    np.testing.assert_allclose(theta_of(fit, fit_intercept), expected, rtol=0, atol=1e-6)


def test_poisson_matches_sklearn():
    X, y, w, _ = make_problem("poisson", seed=5)
    l2 = 4.0
    # sklearn: (1 / sum w) sum w (exp(z) - y z) + const + alpha/2 |coef|^2, so alpha = l2 / sum w.
    sk = PoissonRegressor(alpha=l2 / w.sum(), solver="newton-cholesky", tol=1e-14, max_iter=1000)
    sk.fit(X, y, sample_weight=w)
    fit = fit_glm(X, y, weights=w, task="poisson", l2=l2, options=TIGHT)
    np.testing.assert_allclose(fit.coef, sk.coef_, rtol=0, atol=1e-6)
    assert abs(fit.intercept - sk.intercept_) <= 1e-6


@pytest.mark.parametrize(
    "l2, l1, regularize_intercept, precondition, sparse",
    [
        (0.0, 50.0, False, True, False),
        (0.0, 50.0, False, False, False),
        (2.0, 30.0, False, True, True),
        (2.0, 100.0, True, True, False),
        (2.0, 60.0, True, False, True),
    ],
    ids=["l1-precond", "l1-plain", "enet-csr", "enet-reg-b", "enet-reg-b-plain-csr"],
)
def test_l1_and_elastic_net_match_bound_constrained_reference(
    l2, l1, regularize_intercept, precondition, sparse
):
    X, y, w, o = make_problem(seed=6, d=10, density=0.5 if sparse else None)
    expected = l1_reference(X, y, w, o, "logistic", l2, l1, regularize_intercept)
    Xin = sp.csr_matrix(X) if sparse else X
    fit = fit_glm(
        Xin,
        y,
        weights=w,
        offsets=o,
        l2=l2,
        l1=l1,
        regularize_intercept=regularize_intercept,
        precondition=precondition,
        options=TIGHT,
    )
    assert fit.converged, fit.message
    np.testing.assert_allclose(fit.theta, expected, rtol=0, atol=1e-5)
    zero = np.abs(expected[:-1]) < 1e-9
    assert zero.any() and not zero.all()  # the problem really is sparse
    assert np.all(fit.coef[zero] == 0.0)  # OWL-QN gives exact zeros


# ------------------------------------------------------------------------------------------
# Identities
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_an_offset_is_a_feature_whose_coefficient_is_fixed_at_one(sparse):
    X, y, w, o = make_problem(seed=7, density=0.6 if sparse else None)
    Xo = np.hstack([X, o[:, None]])
    if sparse:
        X, Xo = sp.csr_matrix(X), sp.csr_matrix(Xo)
    d = X.shape[1]
    with_offset = GLMLoss(X, y, weights=w, offsets=o)
    with_column = GLMLoss(Xo, y, weights=w)
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = rng.standard_normal(d + 1)
        augmented = np.concatenate([theta[:d], [1.0], theta[d:]])
        v1, g1 = with_offset.value_grad(theta)
        v2, g2 = with_column.value_grad(augmented)
        assert v1 == pytest.approx(v2, rel=1e-13)
        np.testing.assert_allclose(g1, np.delete(g2, d), rtol=1e-12, atol=1e-9)

    def restricted(theta):  # the column's coefficient held at 1
        value, grad = with_column.value_grad(np.insert(theta, d, 1.0))
        return value, np.delete(grad, d)

    a = fit_glm(X, y, weights=w, offsets=o, l2=1.0, options=TIGHT)
    stats = with_offset.column_stats()
    b = minimize_glm(restricted, d + 1, l2=1.0, stats=stats, options=TIGHT)
    np.testing.assert_allclose(a.theta, b.theta, rtol=0, atol=1e-8)
    assert a.objective == pytest.approx(b.objective, rel=1e-12)


@pytest.mark.parametrize("l1", [0.0, 5.0], ids=["l2", "enet"])
def test_two_shards_in_lockstep_equal_one_shard(l1):
    X, y, w, o = make_problem(seed=8, n=3000)
    whole = GLMLoss(X, y, weights=w, offsets=o)
    cut = 1234
    shards = [
        GLMLoss(X[:cut], y[:cut], weights=w[:cut], offsets=o[:cut]),
        GLMLoss(X[cut:], y[cut:], weights=w[cut:], offsets=o[cut:]),
    ]
    arrays = [s.column_stats().to_array() for s in shards]
    stats = ColumnStats.from_array(arrays[0] + arrays[1], whole.n_params)
    expected_stats = whole.column_stats()
    np.testing.assert_allclose(stats.to_array(), expected_stats.to_array(), rtol=1e-12)
    np.testing.assert_allclose(
        (shards[0].column_stats() + shards[1].column_stats()).to_array(), stats.to_array()
    )
    calls = []

    def allreduced(theta):
        calls.append(theta.copy())
        parts = [s.value_grad(theta) for s in shards]
        return parts[0][0] + parts[1][0], parts[0][1] + parts[1][1]

    kwargs = dict(l2=1.0, l1=l1, options=TIGHT)
    single = minimize_glm(whole.value_grad, whole.n_params, stats=expected_stats, **kwargs)
    sharded = minimize_glm(allreduced, whole.n_params, stats=stats, **kwargs)
    # Shards add their partial sums in another order, so values differ by rounding (~1e-13
    # relative). L-BFGS-B's line search uses slopes and lands within 1e-10; OWL-QN's Armijo
    # backtracking sees only values, which bounds its agreement at ~1e-8.
    atol = 1e-10 if l1 == 0 else 1e-8
    np.testing.assert_allclose(sharded.theta, single.theta, rtol=0, atol=atol)
    # A second worker with the same all-reduced inputs makes the very same calls.
    first = list(calls)
    calls.clear()
    again = minimize_glm(allreduced, whole.n_params, stats=stats, **kwargs)
    assert len(calls) == len(first)
    assert all(np.array_equal(a, b) for a, b in zip(calls, first, strict=True))
    assert np.array_equal(again.theta, sharded.theta)


def test_precondition_false_is_gdmix_fmin_l_bfgs_b():
    X, y, w, o = make_problem(seed=9)
    loss = GLMLoss(X, y, weights=w, offsets=o)
    l2 = 1.0

    def gdmix(theta):
        value, grad = loss.value_grad(theta)
        pen = theta.copy()
        pen[-1] = 0.0
        return value + 0.5 * l2 * pen @ pen, grad + l2 * pen

    x, f, info = scipy.optimize.fmin_l_bfgs_b(
        gdmix, np.zeros(loss.n_params), m=10, factr=1e-12 / np.finfo(float).eps, maxiter=100
    )
    fit = fit_glm(X, y, weights=w, offsets=o, l2=l2, precondition=False)
    np.testing.assert_array_equal(fit.theta, x)
    assert fit.n_iter == info["nit"] and fit.objective == f


def test_preconditioning_needs_far_fewer_iterations_on_a_badly_scaled_problem():
    rng = np.random.default_rng(10)
    n, d = 2000, 20
    latent = rng.standard_normal((n, 1))
    X = 0.9 * latent + 0.45 * rng.standard_normal((n, d))  # correlated columns
    X = X * np.logspace(-2, 2, d) + np.linspace(-50, 50, d)  # 4 decades of scale, big means
    beta = rng.standard_normal(d) / np.logspace(-2, 2, d) / np.sqrt(d)
    y = (rng.random(n) < expit((X - X.mean(0)) @ beta)).astype(np.float64)
    options = LBFGSOptions(max_iter=400)
    fast = fit_glm(X, y, l2=1.0, options=options)
    slow = fit_glm(X, y, l2=1.0, precondition=False, options=options)
    assert fast.converged and fast.n_iter <= 100, fast
    assert slow.n_iter >= 5 * fast.n_iter, (slow.n_iter, fast.n_iter)
    assert fast.objective <= slow.objective + 1e-9 * abs(slow.objective)


@pytest.mark.parametrize("l1", [0.0, 30.0], ids=["l2", "enet"])
def test_a_warm_start_at_the_optimum_stays_there(l1):
    X, y, w, o = make_problem(seed=15)
    cold = fit_glm(X, y, weights=w, offsets=o, l2=1.0, l1=l1, options=TIGHT)
    warm = fit_glm(X, y, weights=w, offsets=o, l2=1.0, l1=l1, x0=cold.theta, options=TIGHT)
    assert warm.n_iter <= 2 < cold.n_iter
    np.testing.assert_allclose(warm.theta, cold.theta, rtol=0, atol=1e-8)


def test_zero_weight_rows_drop_out_and_constant_columns_are_fine():
    X, y, w, o = make_problem(seed=11, n=800)
    X[:, 2] = 3.0  # constant: collinear with the intercept, not centred or scaled
    X[:, 5] = 0.0  # all zero
    w[::7] = 0.0
    keep = w > 0
    X[~keep, 0] = 1e6  # would dominate the fit if the zero weights leaked
    y_ref = y.copy()
    fgh, p = reference_objective(X[keep], y_ref[keep], w[keep], o[keep], "logistic", 1.0)
    fit = fit_glm(X, y, weights=w, offsets=o, l2=1.0, options=TIGHT)
    np.testing.assert_allclose(fit.theta, newton(fgh, p), rtol=0, atol=1e-6)
    assert fit.coef[5] == 0.0


def test_an_empty_shard_adds_nothing():
    loss = GLMLoss(np.zeros((0, 4)), np.zeros(0))
    value, grad = loss.value_grad(np.ones(5))
    assert value == 0.0 and np.array_equal(grad, np.zeros(5))
    stats = loss.column_stats()
    assert stats.sum_w == 0.0 and np.array_equal(stats.to_array(), np.zeros(9))


# ------------------------------------------------------------------------------------------
# The loss object itself
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["logistic", "linear", "poisson"])
@pytest.mark.parametrize("layout", ["dense64", "dense32", "csr64", "csr32"])
def test_value_gradient_and_hessian_match_the_reference(task, layout):
    X, y, w, o = make_problem(task, seed=12, n=600, d=6, density=0.7)
    dtype = np.float32 if layout.endswith("32") else np.float64
    X = X.astype(dtype)
    Xin = sp.csr_matrix(X) if layout.startswith("csr") else X
    loss = GLMLoss(Xin, y, weights=w, offsets=o, task=task)
    fgh, p = reference_objective(X.astype(np.float64), y, w, o, task, l2=0.0)
    theta = np.random.default_rng(1).standard_normal(p) * 0.2
    f, g, H = fgh(theta)
    value, grad = loss.value_grad(theta)
    assert value == pytest.approx(f, rel=1e-12)
    np.testing.assert_allclose(grad, g, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(loss.hessian(theta), H, rtol=1e-10, atol=1e-9)
    v = np.arange(p, dtype=np.float64) - 2.0
    np.testing.assert_allclose(loss.hessp(theta, v), H @ v, rtol=1e-10, atol=1e-8)
    stats = loss.column_stats()
    X64 = X.astype(np.float64)
    assert stats.sum_w == pytest.approx(w.sum(), rel=1e-14)
    np.testing.assert_allclose(stats.sum_wx, w @ X64, rtol=1e-12)
    np.testing.assert_allclose(stats.sum_wxx, w @ X64**2, rtol=1e-12)


def test_logistic_loss_is_stable_for_huge_margins():
    X = np.array([[800.0], [-800.0], [800.0], [-800.0]])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    value, grad = GLMLoss(X, y, fit_intercept=False).value_grad(np.ones(1))
    assert value == 1600.0  # two rows exactly right, two wrong by a margin of 800
    assert np.array_equal(grad, [1600.0])


@pytest.mark.parametrize("y", [0.0, 1.0])
def test_logistic_loss_and_gradient_are_accurate_row_by_row(y):
    # The kernel evaluates exp and log1p with its own vectorisable polynomials.
    z = np.concatenate([np.linspace(-40, 40, 161), [-700.0, -1e-9, 0.0, 1e-9, 700.0]])
    for zi in z:
        loss = GLMLoss(np.zeros((1, 1)), [y], offsets=[zi], fit_intercept=True)
        value, grad = loss.value_grad(np.zeros(2))
        expected = (max(zi, 0.0) - y * zi) + math.log1p(math.exp(-abs(zi)))  # with libm
        assert value == pytest.approx(expected, rel=1e-15, abs=1e-300), zi
        assert grad[1] == pytest.approx(expit(zi) - y, rel=1e-15, abs=1e-300), zi


def test_no_parameters_at_all():
    fit = fit_glm(np.zeros((4, 0)), [0.0, 1.0, 1.0, 0.0], fit_intercept=False)
    assert fit.coef.shape == (0,) and fit.converged
    assert fit.objective == pytest.approx(4 * np.log(2.0), rel=1e-15)


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_multi_threaded_and_single_threaded_passes_agree(layout):
    # Large enough (>= 2^20 stored values) for the chunked, multi-threaded kernel.
    rng = np.random.default_rng(16)
    if layout == "dense":
        X = rng.standard_normal((40_000, 30))
    else:
        n, nnz = 60_000, 20
        indices = np.sort(rng.integers(0, 2_000, (n, nnz)), axis=1).ravel()
        indptr = np.arange(0, n * nnz + 1, nnz)
        X = sp.csr_matrix((rng.standard_normal(n * nnz), indices, indptr), shape=(n, 2_000))
    y = (rng.random(X.shape[0]) < 0.4).astype(np.float64)
    w, o = rng.uniform(0, 2, X.shape[0]), rng.standard_normal(X.shape[0])
    theta = 0.1 * rng.standard_normal(X.shape[1] + 1)
    one = GLMLoss(X, y, weights=w, offsets=o, n_threads=1)
    many = GLMLoss(X, y, weights=w, offsets=o, n_threads=2)
    v1, g1 = one.value_grad(theta)
    v2, g2 = many.value_grad(theta)
    assert v1 == pytest.approx(v2, rel=1e-13)
    np.testing.assert_allclose(g1, g2, rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(one.hessp(theta, theta), many.hessp(theta, theta), rtol=1e-11)


def test_default_threads_follow_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert GLMLoss(X0, Y0).n_threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert GLMLoss(X0, Y0).n_threads >= 1
    with pytest.raises(RecipeError, match="'n_threads' parameter of GLMLoss"):
        GLMLoss(X0, Y0, n_threads=0)


def test_set_offsets_replaces_the_offsets_in_place():
    X, y, w, o = make_problem(seed=13, n=300)
    loss = GLMLoss(X, y, weights=w)
    loss.set_offsets(o)
    theta = np.full(loss.n_params, 0.1)
    assert loss.value_grad(theta)[0] == GLMLoss(X, y, weights=w, offsets=o).value_grad(theta)[0]
    loss.set_offsets(None)
    assert loss.value_grad(theta)[0] == GLMLoss(X, y, weights=w).value_grad(theta)[0]
    with pytest.raises(DataError, match="'offsets' must have shape"):
        loss.set_offsets(o[:-1])


def test_column_stats_round_trip_and_add():
    a = ColumnStats(2.0, np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    b = ColumnStats.from_array(a.to_array(), n_params=3)
    assert b.sum_w == 2.0 and np.array_equal(b.sum_wx, a.sum_wx)
    assert np.array_equal((a + b).to_array(), 2 * a.to_array())
    with pytest.raises(DataError, match="2 d \\+ 1"):
        ColumnStats.from_array(np.zeros(4))


# ------------------------------------------------------------------------------------------
# Variances and thresholding
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["simple", "full"])
@pytest.mark.parametrize(
    "sparse, fit_intercept, regularize_intercept",
    [(False, True, False), (True, True, True), (False, False, False)],
)
def test_variances_match_numpy(mode, sparse, fit_intercept, regularize_intercept):
    X, y, w, o = make_problem(seed=14, n=700, d=5, density=0.6 if sparse else None)
    l2 = 2.0
    Xin = sp.csr_matrix(X) if sparse else X
    fit = fit_glm(
        Xin,
        y,
        weights=w,
        offsets=o,
        l2=l2,
        fit_intercept=fit_intercept,
        regularize_intercept=regularize_intercept,
        variance=mode,
    )
    theta = theta_of(fit, fit_intercept)
    Xa = np.hstack([X, np.ones((len(y), 1))]) if fit_intercept else X
    p = expit(Xa @ theta + o)
    H = Xa.T @ (Xa * (w * p * (1 - p))[:, None])
    penalty = np.full(len(theta), l2)
    if fit_intercept and not regularize_intercept:
        penalty[-1] = 0.0
    H += np.diag(penalty)
    if mode == "simple":
        expected = 1.0 / (np.diag(H) + 1e-12)
    else:
        expected = np.diag(np.linalg.inv(H + 1e-12 * np.eye(len(theta))))
    np.testing.assert_allclose(fit.variances, expected, rtol=1e-9)
    assert fit_glm(Xin, y, l2=l2, fit_intercept=fit_intercept).variances is None


def test_coefficient_variances_leaves_an_unregularized_intercept_alone():
    H = np.array([[4.0, 1.0], [1.0, 3.0]])
    np.testing.assert_allclose(
        coefficient_variances(H, 1.0, fit_intercept=True, mode="simple"),
        1.0 / (np.array([5.0, 3.0]) + 1e-12),
    )
    full = coefficient_variances(H, 1.0, fit_intercept=True, regularize_intercept=True, mode="full")
    np.testing.assert_allclose(full, np.diag(np.linalg.inv(H + (1 + 1e-12) * np.eye(2))))


def test_threshold_zeroes_small_values_including_the_intercept():
    coef, intercept = threshold(np.array([1e-5, -1e-4, 2e-4, -0.5]), 5e-5)
    np.testing.assert_array_equal(coef, [0.0, 0.0, 2e-4, -0.5])
    assert intercept == 0.0
    coef, intercept = threshold(np.array([0.3]), -0.3, threshold=0.25)
    assert coef[0] == 0.3 and intercept == -0.3


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------

X0 = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
Y0 = np.array([0.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"task": "foo"},
            "The 'task' parameter of fit_glm must be one of 'logistic', 'linear', 'poisson'. "
            "Got 'foo' instead.",
        ),
        (
            {"l2": -1.0},
            "The 'l2' parameter of fit_glm must be a float in the range [0.0, inf). "
            "Got -1.0 instead.",
        ),
        ({"l1": float("nan")}, "The 'l1' parameter of fit_glm must be a float in the range"),
        ({"fit_intercept": "yes"}, "The 'fit_intercept' parameter of fit_glm must be a bool."),
        (
            {"variance": "FULL"},
            "The 'variance' parameter of fit_glm must be one of 'simple', 'full'. "
            "Got 'FULL' instead.",
        ),
        (
            {"fit_intercept": False, "regularize_intercept": True},
            "The 'regularize_intercept' parameter of fit_glm can be True only with "
            "fit_intercept=True.",
        ),
    ],
)
def test_bad_hyper_parameters_raise_recipe_errors(kwargs, message):
    with pytest.raises(RecipeError) as info:
        fit_glm(X0, Y0, **kwargs)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_iter", 0, "The 'max_iter' parameter of LBFGSOptions must be an int in the range"),
        ("history", 2.5, "The 'history' parameter of LBFGSOptions must be an int"),
        ("tolerance", -1e-3, "The 'tolerance' parameter of LBFGSOptions must be a float"),
    ],
)
def test_bad_lbfgs_options_raise_recipe_errors(field, value, message):
    with pytest.raises(RecipeError, match=message):
        LBFGSOptions(**{field: value})


def test_minimize_glm_needs_stats_to_precondition():
    loss = GLMLoss(X0, Y0)
    with pytest.raises(RecipeError, match="'stats' parameter of minimize_glm must be"):
        minimize_glm(loss.value_grad, loss.n_params)
    with pytest.raises(RecipeError, match="describes 2 columns"):
        minimize_glm(loss.value_grad, 4, stats=loss.column_stats())
    with pytest.raises(RecipeError, match="'x0' parameter of minimize_glm"):
        minimize_glm(loss.value_grad, 3, precondition=False, x0=np.zeros(2))


def nan_at(array, index):
    array = np.array(array, dtype=np.float64)
    array[index] = np.nan
    return array


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: GLMLoss(nan_at(X0, (1, 1)), Y0),
            "row 1: X has a NaN or infinite value in column 1",
        ),
        (
            lambda: GLMLoss(sp.csr_matrix(np.where(X0 == 2.0, np.inf, X0)), Y0),
            "row 2: X has a NaN or infinite value in column 0",
        ),
        (lambda: GLMLoss(X0, [0.0, 2.0, 1.0]), "row 1, column 'y': A label of task 'logistic'"),
        (lambda: GLMLoss(X0, [0.0, -1.0, 1.0], task="poisson"), "must be >= 0. Got -1.0"),
        (lambda: GLMLoss(X0, nan_at(Y0, 2)), "row 2, column 'y': 'y' has a NaN or infinite"),
        (lambda: GLMLoss(X0, Y0, weights=[1.0, -2.0, 1.0]), "row 1, column 'weights'"),
        (lambda: GLMLoss(X0, Y0, offsets=[0.0, np.inf, 0.0]), "row 1, column 'offsets'"),
        (lambda: GLMLoss(X0, Y0[:2]), "'y' must have shape (3,). Got (2,) instead."),
        (lambda: GLMLoss(X0, Y0, weights=np.ones(4)), "'weights' must have shape (3,)"),
        (lambda: GLMLoss(X0[0], Y0), "X must be a 2-D array"),
        (lambda: GLMLoss(X0, Y0).value_grad(np.zeros(2)), "'theta' must have shape (3,)"),
    ],
)
def test_bad_data_raises_data_errors_that_say_where(make, message):
    with pytest.raises(DataError) as info:
        make()
    assert message in str(info.value)
    assert pickle.loads(pickle.dumps(info.value)).args == info.value.args
