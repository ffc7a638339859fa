"""Per-entity GLMs: every entity equals fitting it alone, whatever the batching.

References are written here independently of the kernels: an exact dense Newton in numpy for
smooth objectives, scipy L-BFGS-B on split variables plus a KKT check for L1.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from scipy.special import expit

from raymix.errors import DataError, RecipeError
from raymix.solvers import entity_kernels
from raymix.solvers.entity import EntityModels, EntityProblem, fit_entities, score_entities

DIM = 2000


def make_problem(seed=0, n_entities=300, task="logistic", dim=DIM):
    """Skewed entity sizes (a few with ~1000 rows, most with a handful), 0-40 features per
    entity drawn from a bag of ``dim``, sparse rows (some empty), weights (some 0), offsets."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(np.ceil(rng.lognormal(1.8, 1.2, n_entities)), 1500).astype(np.int64)
    sizes[:3] = [1, 1200, 2]
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    indptr, indices, data, margins = [0], [], [], []
    for k in range(n_entities):
        # 4 in 5 entities: up to 12 features, rows with ~70% of them (dense local Newton);
        # else 30-40 features, rows with ~10% of them (sparse local Newton)
        wide = k % 5 == 4
        n_feat = min(rng.integers(30, 41) if wide else rng.integers(0, 13), dim)
        feats = np.sort(rng.choice(dim, n_feat, replace=False))
        w_true = rng.normal(size=n_feat)
        for _ in range(sizes[k]):
            keep = feats[rng.random(n_feat) < (0.1 if wide else 0.7)]
            vals = rng.normal(size=keep.size)
            indices.extend(keep)
            data.extend(vals)
            indptr.append(len(indices))
            margins.append(vals @ w_true[np.searchsorted(feats, keep)] if n_feat else 0.0)
    n = ptr[-1]
    X = sp.csr_matrix((np.array(data), np.array(indices, np.int64), np.array(indptr)), (n, dim))
    offsets = 0.5 * rng.normal(size=n)
    z = np.array(margins) + offsets + rng.normal(size=n_entities).repeat(sizes)
    if task == "logistic":
        y = (rng.random(n) < expit(z)).astype(float)
    elif task == "poisson":
        y = rng.poisson(np.exp(0.5 * z)).astype(float)
    else:
        y = z + rng.normal(size=n)
    weights = rng.uniform(0.2, 2.0, n)
    weights[rng.random(n) < 0.05] = 0.0
    return EntityProblem(ptr, X, y, weights, offsets)


@pytest.fixture(autouse=True, scope="module")
def single_threaded_blas():
    """The references make many tiny BLAS calls, which threaded BLAS slows down badly."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def problem():
    return make_problem()


def entity_data(problem, k, fit_intercept=True):
    r0, r1 = problem.entity_ptr[k], problem.entity_ptr[k + 1]
    Xe = problem.X[r0:r1]
    feats = np.unique(Xe.indices)
    Z = Xe[:, feats].toarray()
    if fit_intercept:
        Z = np.hstack([np.ones((r1 - r0, 1)), Z])
    return feats, Z, problem.y[r0:r1], problem.weights[r0:r1], problem.offsets[r0:r1]


def loss_terms(task, y, z):
    if task == "logistic":
        p = expit(z)
        return np.logaddexp(0, z) - y * z, p - y, p * (1 - p)
    if task == "linear":
        return 0.5 * (z - y) ** 2, z - y, np.ones_like(z)
    return np.exp(z) - y * z, np.exp(z) - y, np.exp(z)


def no_finite_intercept(task, y, w):
    """One logistic class only (or Poisson counts all 0): a free intercept's optimum is at
    -inf/+inf, and any solver just stops where the gradient is below its tolerance."""
    y = y[w > 0]
    return (task == "logistic" and len(set(y)) <= 1) or (task == "poisson" and not y.any())


def to_dense(models, dim=DIM):
    W = np.zeros((models.n_entities, dim))
    W[np.repeat(np.arange(models.n_entities), np.diff(models.coef_ptr)), models.coef_index] = (
        models.coef_value
    )
    return W


def penalized_mask(p, fit_intercept, regularize_intercept):
    mask = np.ones(p)
    if fit_intercept and not regularize_intercept:
        mask[0] = 0.0
    return mask


def newton_reference(Z, y, w, o, task, l2, mask):
    """Exact damped Newton on sum w loss + l2/2 ||mask theta||^2, to machine precision."""
    theta = np.zeros(Z.shape[1])

    def objective(th):
        return w @ loss_terms(task, y, Z @ th + o)[0] + 0.5 * l2 * (mask * th) @ th

    for _ in range(100):
        _, d1, d2 = loss_terms(task, y, Z @ theta + o)
        g = Z.T @ (w * d1) + l2 * mask * theta
        if np.abs(g).max(initial=0) <= 1e-13 * len(y):
            break
        H = Z.T @ (Z * (w * d2)[:, None]) + np.diag(l2 * mask)
        step = np.linalg.solve(H, -g)
        t, f0 = 1.0, objective(theta)
        while objective(theta + t * step) > f0 + 1e-4 * t * (g @ step) + 1e-15 * abs(f0):
            t /= 2
        theta = theta + t * step
    return theta


def dense_coefs(models, k, feats):
    b, idx, val = models.coefficients(k)
    out = np.zeros(feats.size)
    pos = np.searchsorted(feats, idx)
    assert np.array_equal(feats[pos], idx), "a coefficient on a feature the entity lacks"
    out[pos] = val
    return b, out


CASES = {
    "logistic": dict(task="logistic", l2=1.0),
    "logistic-reg-intercept": dict(task="logistic", l2=0.3, regularize_intercept=True),
    "logistic-no-intercept": dict(task="logistic", l2=2.0, fit_intercept=False),
    "linear": dict(task="linear", l2=0.5),
    "poisson": dict(task="poisson", l2=1.0),
}


@pytest.mark.parametrize("case", CASES)
def test_each_entity_equals_its_own_newton_fit(case):
    kw = CASES[case]
    problem = make_problem(seed=1, task=kw["task"])
    fi, ri = kw.get("fit_intercept", True), kw.get("regularize_intercept", False)
    models = fit_entities(problem, **kw)
    assert models.converged.all()
    n_compared = 0
    for k in range(problem.n_entities):
        feats, Z, y, w, o = entity_data(problem, k, fi)
        mask = penalized_mask(Z.shape[1], fi, ri)
        b, coef = dense_coefs(models, k, feats)
        got = np.concatenate([[b], coef]) if fi else coef
        assert fi or b == 0.0
        _, d1, _ = loss_terms(kw["task"], y, Z @ got + o)
        grad = (Z.T @ (w * d1) + kw["l2"] * mask * got) / len(y)
        assert np.abs(grad).max(initial=0) <= 1e-8, f"entity {k}"
        if fi and not ri and no_finite_intercept(kw["task"], y, w):
            continue
        ref = newton_reference(Z, y, w, o, kw["task"], kw["l2"], mask)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5, err_msg=f"entity {k}")
        n_compared += 1
    assert n_compared > 200


def test_matches_scikit_learn_on_one_entity_without_offsets():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 6))
    y = (rng.random(400) < expit(X @ rng.normal(size=6) + 0.3)).astype(float)
    w = rng.uniform(0.5, 1.5, 400)
    problem = EntityProblem(np.array([0, 400]), sp.csr_matrix(X), y, w)
    models = fit_entities(problem, l2=2.0)
    ref = LogisticRegression(C=1 / 2.0, tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=w)
    b, idx, val = models.coefficients(0)
    np.testing.assert_allclose(val, ref.coef_[0], atol=1e-6)
    np.testing.assert_allclose(b, ref.intercept_[0], atol=1e-6)


def test_intercept_only_model_without_feature_bag():
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 50, 200)
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    n = ptr[-1]
    y = (rng.random(n) < 0.3).astype(float)
    w, o = rng.uniform(0.5, 2, n), rng.normal(size=n)
    problem = EntityProblem(ptr, sp.csr_matrix((n, 0)), y, w, o)
    models = fit_entities(problem, l2=1.0, regularize_intercept=True)
    assert models.coef_ptr[-1] == 0 and models.converged.all()
    for k in range(problem.n_entities):
        sl = slice(ptr[k], ptr[k + 1])
        ref = newton_reference(np.ones((sizes[k], 1)), y[sl], w[sl], o[sl], "logistic", 1.0, np.ones(1))  # fmt: skip
        assert abs(models.intercepts[k] - ref[0]) < 1e-6
    scores = score_entities(models, problem.X, ptr)
    np.testing.assert_array_equal(scores, np.repeat(models.intercepts, sizes))


def l1_reference(Z, y, w, o, l2, l1, fit_intercept):
    """L-BFGS-B on theta = [b, u - v] with u, v >= 0, at tight tolerances."""
    n, p = Z.shape
    fb = int(fit_intercept)
    mask = penalized_mask(p, fit_intercept, False)

    def f(v):
        th = np.concatenate([v[:fb], v[fb:p] - v[p:]])
        loss, d1, _ = loss_terms("logistic", y, Z @ th + o)
        g = Z.T @ (w * d1) + l2 * mask * th
        val = w @ loss + 0.5 * l2 * (mask * th) @ th + l1 * v[fb:].sum()
        return val / n, np.concatenate([g[:fb], g[fb:] + l1, l1 - g[fb:]]) / n

    bounds = [(None, None)] * fb + [(0, None)] * (2 * (p - fb))
    opts = {"gtol": 1e-12, "ftol": 0.0, "maxiter": 20_000, "maxcor": 30}
    res = scipy.optimize.minimize(f, np.zeros(2 * p - fb), jac=True, method="L-BFGS-B", bounds=bounds, options=opts)  # fmt: skip
    return np.concatenate([res.x[:fb], res.x[fb:p] - res.x[p:]])


@pytest.mark.parametrize(
    "l2, l1, fi", [(0.0, 2.0, True), (1.0, 0.7, True), (0.5, 1.0, False)],
    ids=["lasso", "elastic-net", "elastic-net-no-intercept"],
)  # fmt: skip
def test_l1_and_elastic_net_match_reference_and_kkt(problem, l2, l1, fi):
    models = fit_entities(problem, l2=l2, l1=l1, fit_intercept=fi)
    assert models.converged.all()
    n_zero = 0
    for k in range(problem.n_entities):  # KKT for all; an independent reference for 80
        feats, Z, y, w, o = entity_data(problem, k, fi)
        b, coef = dense_coefs(models, k, feats)
        theta = np.concatenate([[b], coef]) if fi else coef
        n_zero += int(np.sum(coef == 0))
        # KKT: the min-norm subgradient of the (1/n)-scaled objective vanishes
        _, d1, _ = loss_terms("logistic", y, Z @ theta + o)
        g = (Z.T @ (w * d1) + l2 * penalized_mask(Z.shape[1], fi, False) * theta) / len(y)
        gw, lam = g[int(fi) :], l1 / len(y)
        sub = np.where(coef != 0, gw + lam * np.sign(coef), np.maximum(np.abs(gw) - lam, 0))
        assert max(np.abs(g[: int(fi)]).max(initial=0), np.abs(sub).max(initial=0)) < 1e-7
        if k >= 80 or (fi and no_finite_intercept("logistic", y, w)) or Z.shape[1] == 0:
            continue
        ref = l1_reference(Z, y, w, o, l2, l1, fi)
        np.testing.assert_allclose(theta, ref, rtol=0, atol=1e-5, err_msg=f"entity {k}")
    assert n_zero > 100, "the penalty should zero a good share of coefficients"
    assert np.all(models.coef_value != 0)  # exact zeros are dropped from the ragged arrays


def _assert_models_identical(a: EntityModels, b: EntityModels):
    for field in ("intercepts", "coef_ptr", "coef_index", "coef_value", "converged", "n_iter"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    if a.variances is not None:
        np.testing.assert_array_equal(a.variances, b.variances)


@pytest.mark.parametrize("kw", [{}, {"l1": 0.5}, {"variance": "full", "threshold": 1e-4}])
def test_bitwise_identical_across_batches_and_threads(problem, kw):
    whole = fit_entities(problem, n_threads=1, **kw)
    _assert_models_identical(whole, fit_entities(problem, n_threads=2, **kw))
    _assert_models_identical(whole, fit_entities(problem, n_threads=3, **kw))
    cuts = [0, 1, 2, 97, 250, problem.n_entities]
    parts = [fit_entities(problem.subset(a, b), **kw) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]  # fmt: skip
    _assert_models_identical(whole, EntityModels.concatenate(parts))


def test_wide_entities_fall_back_to_lbfgs(problem):
    problem = problem.subset(0, 150)
    for kw in (dict(l2=1.0), dict(l1=0.5, l2=0.1, threshold=1e-6)):
        kw["regularize_intercept"] = True  # a finite optimum for every entity
        newton = fit_entities(problem, **kw)
        wide = fit_entities(problem, max_newton_dim=6, **kw)  # most entities take the fallback
        assert wide.converged.all()
        np.testing.assert_allclose(to_dense(wide), to_dense(newton), atol=1e-5)
        np.testing.assert_allclose(wide.intercepts, newton.intercepts, atol=1e-5)


def test_warm_start_from_solution_takes_at_most_one_step(problem):
    cold = fit_entities(problem)
    warm = fit_entities(problem, warm_start=cold)
    assert warm.n_iter.max() <= 1 and warm.converged.all()
    np.testing.assert_allclose(warm.coef_value, cold.coef_value, atol=1e-9)
    np.testing.assert_allclose(warm.intercepts, cold.intercepts, atol=1e-9)
    assert cold.n_iter.mean() > 3
    # coefficients given in another order within each entity (e.g. read back by name)
    order = np.lexsort((-cold.coef_index, np.repeat(np.arange(300), np.diff(cold.coef_ptr))))
    shuffled = dataclasses.replace(cold, coef_index=cold.coef_index[order], coef_value=cold.coef_value[order])  # fmt: skip
    _assert_models_identical(warm, fit_entities(problem, warm_start=shuffled))


def test_warm_start_drops_features_no_longer_present(problem):
    cold = fit_entities(problem)
    keep = np.ones(DIM)
    keep[::3] = 0.0  # a third of the feature bag disappears
    X2 = (problem.X @ sp.diags(keep)).tocsr()
    X2.eliminate_zeros()
    p2 = EntityProblem(problem.entity_ptr, X2, problem.y, problem.weights, problem.offsets)
    warm = fit_entities(p2, warm_start=cold)
    assert warm.converged.all()
    assert not np.isin(warm.coef_index, np.arange(0, DIM, 3)).any()
    np.testing.assert_allclose(to_dense(warm), to_dense(fit_entities(p2)), atol=1e-6)


def test_threshold_zeroes_small_coefficients_including_intercept(problem):
    full = fit_entities(problem, l2=5.0)
    cut = fit_entities(problem, l2=5.0, threshold=0.05)
    assert np.all(np.abs(cut.coef_value) > 0.05)
    assert np.all((cut.intercepts == 0) | (np.abs(cut.intercepts) > 0.05))
    assert np.any(cut.intercepts == 0) and cut.coef_value.size < full.coef_value.size
    kept = np.abs(full.coef_value) > 0.05
    np.testing.assert_array_equal(cut.coef_value, full.coef_value[kept])
    np.testing.assert_array_equal(cut.coef_index, full.coef_index[kept])


@pytest.mark.parametrize("mode", ["simple", "full"])
def test_variances_match_gdmix_formulas(problem, mode):
    models = fit_entities(problem, variance=mode, l2=1.0)
    vptr = models.variance_ptr
    assert models.variances.size == vptr[-1]
    for k in range(60):
        feats, Z, y, w, o = entity_data(problem, k)
        b, coef = dense_coefs(models, k, feats)
        d2 = loss_terms("logistic", y, Z @ np.concatenate([[b], coef]) + o)[2]
        H = Z.T @ (Z * (w * d2)[:, None]) + np.diag(penalized_mask(Z.shape[1], True, False))
        if mode == "simple":
            ref = 1 / (np.diag(H) + 1e-12)
        else:
            ref = np.diag(np.linalg.inv(H + 1e-12 * np.eye(len(H))))
        kept = np.concatenate([[0], 1 + np.flatnonzero(coef)])  # exact zeros are dropped
        np.testing.assert_allclose(models.variances[vptr[k] : vptr[k + 1]], ref[kept], rtol=1e-6)


def test_scores_are_x_dot_w_plus_b_and_zero_without_model(problem):
    models = fit_entities(problem)
    E, ptr = problem.n_entities, problem.entity_ptr
    W = to_dense(models)
    owner = np.repeat(np.arange(E), np.diff(ptr))
    expected = np.asarray(problem.X.multiply(W[owner]).sum(axis=1)).ravel() + models.intercepts[owner]  # fmt: skip
    np.testing.assert_allclose(score_entities(models, problem.X, ptr), expected, atol=1e-12)
    mask = np.arange(E) % 4 != 0
    masked = score_entities(models, problem.X, ptr, model_index=mask)
    np.testing.assert_allclose(masked, np.where(mask[owner], expected, 0.0), atol=1e-12)
    assert np.all(masked[~mask[owner]] == 0.0)
    # groups in another order / of unseen entities (-1): rows of entities 5, unseen, 2
    sub_ptr = np.array([0, ptr[6] - ptr[5], ptr[6] - ptr[5] + 3, ptr[6] - ptr[5] + 3 + ptr[3] - ptr[2]])  # fmt: skip
    rows = np.concatenate([np.arange(ptr[5], ptr[6]), [0, 1, 2], np.arange(ptr[2], ptr[3])])
    got = score_entities(models, problem.X[rows], sub_ptr, model_index=np.array([5, -1, 2]))
    want = np.concatenate([expected[ptr[5] : ptr[6]], [0, 0, 0], expected[ptr[2] : ptr[3]]])
    np.testing.assert_allclose(got, want, atol=1e-12)
    # models whose coefficients are not in index order (e.g. read back from a file)
    order = np.lexsort((-models.coef_index, np.repeat(np.arange(E), np.diff(models.coef_ptr))))
    unsorted = dataclasses.replace(models, coef_index=models.coef_index[order], coef_value=models.coef_value[order])  # fmt: skip
    np.testing.assert_allclose(score_entities(unsorted, problem.X, ptr), expected, atol=1e-12)


def test_models_pickle_and_read_only_inputs_do_not_recompile(problem):
    ro = [a.copy() for a in (problem.y, problem.weights, problem.offsets)]
    for a in ro:
        a.flags.writeable = False
    X = problem.X.copy()
    X.data.flags.writeable = False
    models = fit_entities(EntityProblem(problem.entity_ptr, X, *ro))
    again = pickle.loads(pickle.dumps(models))
    _assert_models_identical(models, again)
    assert len(entity_kernels.fit_range.signatures) == 1


def test_non_convergence_is_counted_not_printed(problem, capsys):
    models = fit_entities(problem, max_iter=1)
    assert 0 < models.n_not_converged < problem.n_entities
    assert models.n_not_converged == np.count_nonzero(~models.converged)
    assert capsys.readouterr().out == ""


def test_degenerate_entities():
    # an entity with no rows, one whose rows have no features, one with a duplicated column
    X = sp.csr_matrix((np.array([1.0, 2.0, 0.5]), np.array([3, 3, 1]), np.array([0, 0, 0, 2, 3])), (4, 5))  # fmt: skip
    problem = EntityProblem(np.array([0, 0, 2, 4]), X, np.array([1.0, 0, 1, 0]))
    models = fit_entities(problem, l2=0.0, variance="simple")
    assert models.converged[0] and models.intercepts[0] == 0 and models.coef_ptr[1] == 0
    assert np.all(np.isfinite(models.intercepts))
    np.testing.assert_array_equal(models.coef_index, [1, 3])


def test_invalid_inputs_raise_clear_errors(problem):
    n = problem.n_rows
    ptr, X, w, o = problem.entity_ptr, problem.X, problem.weights, problem.offsets
    y = problem.y.copy()
    y[7] = 2.0
    with pytest.raises(
        DataError, match=r"row 7, column 'y': A label of task 'logistic' must be 0 or 1. Got 2.0"
    ):
        fit_entities(EntityProblem(ptr, X, y, w, o))
    y[7] = np.nan
    with pytest.raises(DataError, match=r"row 7, column 'y': 'y' has a NaN or infinite value"):
        fit_entities(EntityProblem(ptr, X, y, w, o))
    with pytest.raises(DataError, match=r"column 'weights': 'weights' must be >= 0"):
        fit_entities(EntityProblem(ptr, X, problem.y, -w, o))
    with pytest.raises(DataError, match=r"column 'offsets': 'offsets' must have shape"):
        EntityProblem(ptr, X, problem.y, w, o[:-1])
    bad_ptr = ptr.copy()
    bad_ptr[5] = bad_ptr[7]
    with pytest.raises(DataError, match=r"entity_ptr.*non-decreasing"):
        EntityProblem(bad_ptr, X, problem.y)
    with pytest.raises(DataError, match=r"must start at 0 and end at n_rows"):
        EntityProblem(ptr[:-1], X, problem.y)
    Xn = X.copy()
    Xn.data[Xn.indptr[11]] = np.inf
    with pytest.raises(DataError, match=r"row 11: X has a NaN or infinite value in column"):
        fit_entities(EntityProblem(ptr, Xn, problem.y))
    with pytest.raises(RecipeError, match=r"The 'task' parameter of fit_entities must be one of 'logistic', 'linear', 'poisson'. Got 'probit' instead."):  # fmt: skip
        fit_entities(problem, task="probit")
    with pytest.raises(
        RecipeError,
        match=r"The 'l2' parameter of fit_entities must be a float in the range \[0.0, inf\). Got -1 instead.",
    ):
        fit_entities(problem, l2=-1)
    with pytest.raises(
        RecipeError,
        match=r"The 'regularize_intercept' parameter of fit_entities can be True only with fit_intercept=True",
    ):
        fit_entities(problem, fit_intercept=False, regularize_intercept=True)
    with pytest.raises(RecipeError, match=r"warm_start: must be EntityModels of the same"):
        fit_entities(problem, warm_start=fit_entities(problem.subset(0, 3)))
    small = problem.subset(0, 3)
    dup = dataclasses.replace(fit_entities(small), coef_index=np.zeros(6, np.int64), coef_ptr=np.array([0, 0, 2, 6]), coef_value=np.ones(6))  # fmt: skip
    with pytest.raises(DataError, match=r"warm_start.coef_index'?: an entity has the same feature twice"):  # fmt: skip
        fit_entities(small, warm_start=dup)
    with pytest.raises(DataError, match=r"A label of task 'poisson' must be >= 0. Got -1.0"):
        fit_entities(EntityProblem(ptr, X, -np.ones(n)), task="poisson")
    err = pickle.loads(pickle.dumps(DataError("x", row=3, column="y")))
    assert str(err) == "row 3, column 'y': x"
