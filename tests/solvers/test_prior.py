"""Gaussian priors in both solvers, against scipy on the explicit objective, and the
incremental identity: day 1, then day 2 with day 1's posterior as the prior, equals one fit on
days 1 + 2 (linear task) wherever the prior is the whole posterior."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from raymix.errors import DataError, RecipeError
from raymix.solvers.entity import EntityProblem, fit_entities
from raymix.solvers.glm import fit_glm
from raymix.solvers.prior import EntityPriors, Prior, glm_prior_terms, precision_of

DIM = 8


def _problem(rows_per_entity, seed=0, task="logistic", density=0.3):
    rng = np.random.default_rng(seed)
    ptr = np.concatenate([[0], np.cumsum(rows_per_entity)]).astype(np.int64)
    n = int(ptr[-1])
    X = sp.random(n, DIM, density=density, random_state=seed, format="csr")
    X.data = rng.normal(size=X.nnz)
    z = X @ rng.normal(size=DIM)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float) if task == "logistic" else z + rng.normal(size=n)  # fmt: skip
    return EntityProblem(ptr, X, y, offsets=0.1 * rng.normal(size=n))


def _priors(seed=1):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3, 3))
    return [
        Prior(np.array([1, 6]), rng.normal(size=3), np.array([2.0, 3.0, 0.5])),
        Prior(np.array([0, 5]), rng.normal(size=3), A @ A.T + np.eye(3)),  # full
        Prior(np.array([2, 3, 7]), rng.normal(size=4), np.array([1.5, 2.0, 0.7, 4.0])),
        None,  # falls back to the ridge
        Prior(np.array([4]), rng.normal(size=2), np.array([0.0, 2.0]), has_intercept=False),
    ]


def _reference(problem, k, prior, l2, task="logistic"):
    """scipy BFGS on the explicit objective of entity ``k`` (sum of losses + prior/ridge) over
    the union of its rows' and prior's features: ``(features, theta = [b, w])``."""
    r0, r1 = problem.entity_ptr[k], problem.entity_ptr[k + 1]
    Xe, y, o = problem.X[r0:r1].toarray(), problem.y[r0:r1], problem.offsets[r0:r1]
    feats = np.flatnonzero((Xe != 0).any(axis=0))
    if prior is not None:
        feats = np.union1d(feats, prior.index)
    Z = np.hstack([np.ones((y.size, 1)), Xe[:, feats]])
    p = Z.shape[1]
    mu, P = np.zeros(p), np.diag(np.r_[0.0, np.full(p - 1, l2)])
    if prior is not None:
        loc = np.r_[0, 1 + np.searchsorted(feats, prior.index)]
        use = np.r_[prior.has_intercept, np.ones(prior.index.size, bool)]
        loc, m = loc[use], prior.mean[use]
        mu[loc] = m
        if prior.full:
            P[np.ix_(loc, loc)] = prior.precision[np.ix_(use, use)]
        else:
            P[loc, loc] = prior.precision[use]

    def f(th):
        z = Z @ th + o
        loss = np.logaddexp(0, z) - y * z if task == "logistic" else 0.5 * (y - z) ** 2
        return loss.sum() + 0.5 * (th - mu) @ P @ (th - mu)

    def g(th):
        z = Z @ th + o
        r = 1 / (1 + np.exp(-z)) - y if task == "logistic" else z - y
        return Z.T @ r + P @ (th - mu)

    res = scipy.optimize.minimize(f, mu, jac=g, method="BFGS", options={"gtol": 1e-11})
    return feats, res.x


@pytest.mark.parametrize("max_newton_dim", [500, 2])  # the Newton kernel; the L-BFGS fallback
def test_entity_prior_matches_scipy(max_newton_dim):
    problem = _problem([25, 6, 0, 9, 12])
    priors = _priors()
    l2 = 1.3
    models = fit_entities(problem, l2=l2, prior=EntityPriors.from_priors(priors), tol=1e-10,
                          n_threads=1, max_newton_dim=max_newton_dim)  # fmt: skip
    for k, prior in enumerate(priors):
        feats, theta = _reference(problem, k, prior, l2)
        b, index, value = models.coefficients(k)
        np.testing.assert_array_equal(index, feats)
        np.testing.assert_allclose(np.r_[b, value], theta, atol=2e-6)


def test_entity_prior_posterior_covariance():
    """The covariance returned is the inverse Hessian of the objective with the prior."""
    problem = _problem([30, 12])
    prior = EntityPriors.from_priors(_priors()[:2])
    models = fit_entities(problem, l2=0.5, prior=prior, variance="full", covariance=True, tol=1e-12)  # fmt: skip
    for k in range(2):
        r0, r1 = problem.entity_ptr[k], problem.entity_ptr[k + 1]
        b, index, value = models.coefficients(k)
        Z = np.hstack([np.ones((r1 - r0, 1)), problem.X[r0:r1].toarray()[:, index]])
        z = Z @ np.r_[b, value] + problem.offsets[r0:r1]
        s = 1 / (1 + np.exp(-z))
        one = prior.prior(k)
        loc = np.r_[0, 1 + np.searchsorted(index, one.index)]
        P = np.diag(np.r_[0.0, np.full(index.size, 0.5)])
        if one.full:
            P[np.ix_(loc, loc)] = one.precision
        else:
            P[loc, loc] = one.precision
        H = Z.T @ (Z * (s * (1 - s))[:, None]) + P
        q, at = index.size + 1, models.covariance_ptr[k]
        np.testing.assert_allclose(models.covariances[at : at + q * q].reshape(q, q),
                                   np.linalg.inv(H), rtol=1e-6, atol=1e-10)  # fmt: skip
        v0 = models.variance_ptr[k]
        np.testing.assert_allclose(models.variances[v0 : v0 + q], np.diag(np.linalg.inv(H)), rtol=1e-6)  # fmt: skip


def test_l2_is_the_prior_with_zero_mean_and_l2_precision():
    problem = _problem([20, 15, 8])
    plain = fit_entities(problem, l2=2.0, tol=1e-12, n_threads=1)
    ridge = []
    for k in range(3):
        index = plain.coefficients(k)[1]
        ridge.append(Prior(index, np.zeros(index.size + 1), np.r_[0.0, np.full(index.size, 2.0)]))  # fmt: skip
    as_prior = fit_entities(problem, l2=5.0, tol=1e-12, n_threads=1,
                            prior=EntityPriors.from_priors(ridge))  # fmt: skip
    np.testing.assert_array_equal(as_prior.coef_index, plain.coef_index)
    np.testing.assert_allclose(as_prior.coef_value, plain.coef_value, atol=1e-10)
    np.testing.assert_allclose(as_prior.intercepts, plain.intercepts, atol=1e-10)


def test_entity_without_rows_keeps_its_prior():
    problem = _problem([10, 0])
    prior = Prior(np.array([2, 5]), np.array([0.4, -1.0, 2.0]), np.array([4.0, 0.5, 2.0]))
    models = fit_entities(problem, l2=1.0, prior=EntityPriors.from_priors([None, prior]),
                          variance="full")  # fmt: skip
    b, index, value = models.coefficients(1)
    assert b == 0.4 and index.tolist() == [2, 5] and value.tolist() == [-1.0, 2.0]
    v0 = models.variance_ptr[1]
    np.testing.assert_allclose(models.variances[v0 : v0 + 3], 1 / prior.precision, rtol=1e-9)


def _days(seed=3):
    """Two days of rows of the same 6 entities (+ one new on day 2); their union."""
    day1, day2 = _problem([12, 9, 7, 15, 5, 11], seed, "linear"), _problem([6, 0, 10, 4, 8, 3, 9], seed + 1, "linear")  # fmt: skip
    day1 = EntityProblem(np.r_[day1.entity_ptr, day1.entity_ptr[-1]], day1.X, day1.y, offsets=day1.offsets)  # fmt: skip
    both_rows = []
    for k in range(7):
        for day in (day1, day2):
            both_rows.append(np.arange(day.entity_ptr[k], day.entity_ptr[k + 1]) + (0 if day is day1 else day1.n_rows))  # fmt: skip
    order = np.concatenate(both_rows)
    X = sp.vstack([day1.X, day2.X], format="csr")[order]
    y = np.r_[day1.y, day2.y][order]
    o = np.r_[day1.offsets, day2.offsets][order]
    counts = np.diff(day1.entity_ptr) + np.diff(day2.entity_ptr)
    both = EntityProblem(np.r_[0, np.cumsum(counts)], X, y, offsets=o)
    return day1, day2, both


def _as_prior(models, covariance: bool) -> EntityPriors:
    priors = []
    for k in range(models.n_entities):
        b, index, value = models.coefficients(k)
        q = index.size + 1
        if covariance:
            at = models.covariance_ptr[k]
            precision = np.linalg.inv(models.covariances[at : at + q * q].reshape(q, q))
        else:
            v0 = models.variance_ptr[k]
            precision = precision_of(models.variances[v0 : v0 + q])
        priors.append(Prior(index, np.r_[b, value], precision))
    return EntityPriors.from_priors(priors)


def test_linear_update_with_full_covariance_equals_the_fit_on_both_days():
    day1, day2, both = _days()
    opts = dict(task="linear", l2=0.7, tol=1e-12, n_threads=1)
    first = fit_entities(day1, variance="full", covariance=True, **opts)
    update = fit_entities(day2, prior=_as_prior(first, covariance=True), **opts)
    joint = fit_entities(both, **opts)
    np.testing.assert_array_equal(update.coef_index, joint.coef_index)
    np.testing.assert_allclose(update.coef_value, joint.coef_value, atol=1e-6)
    np.testing.assert_allclose(update.intercepts, joint.intercepts, atol=1e-6)


def test_linear_intercept_only_update_with_variances_equals_the_fit_on_both_days():
    day1, day2, both = _days()
    empty = [sp.csr_matrix((p.n_rows, DIM)) for p in (day1, day2, both)]
    day1, day2, both = (EntityProblem(p.entity_ptr, X, p.y, offsets=p.offsets)
                        for p, X in zip((day1, day2, both), empty, strict=True))  # fmt: skip
    opts = dict(task="linear", l2=0.7, tol=1e-12, n_threads=1)
    first = fit_entities(day1, variance="full", **opts)
    update = fit_entities(day2, prior=_as_prior(first, covariance=False), **opts)
    joint = fit_entities(both, **opts)
    np.testing.assert_allclose(update.intercepts, joint.intercepts, atol=1e-6)


def test_glm_prior_matches_scipy_and_its_terms():
    problem = _problem([200])
    X, y, o = problem.X, problem.y, problem.offsets
    rng = np.random.default_rng(5)
    A = rng.normal(size=(4, 4))
    for precision in (np.array([1.0, 2.0, 3.0, 0.5]), A @ A.T + np.eye(4)):
        prior = Prior(np.array([0, 3, 9]), rng.normal(size=4), precision)  # 9: not a feature
        fit = fit_glm(X, y, offsets=o, l2=1.5, prior=prior, options=_tight())
        mu, P = glm_prior_terms(prior, DIM, l2=1.5, fit_intercept=True, regularize_intercept=False)  # fmt: skip
        P = P if P.ndim == 2 else np.diag(P)
        assert P[-1, -1] == prior.precision[0, 0] if prior.full else P[-1, -1] == 1.0
        assert P[1, 1] == 1.5 and mu[1] == 0 and mu[3] == prior.mean[2]
        Z = np.hstack([X.toarray(), np.ones((X.shape[0], 1))])

        def f(th, Z=Z, mu=mu, P=P):
            z = Z @ th + o
            return (np.logaddexp(0, z) - y * z).sum() + 0.5 * (th - mu) @ P @ (th - mu)

        res = scipy.optimize.minimize(f, mu, method="BFGS", options={"gtol": 1e-9})
        np.testing.assert_allclose(fit.theta, res.x, atol=1e-5)


def _tight():
    from raymix.solvers.glm import LBFGSOptions

    return LBFGSOptions(max_iter=1000, tolerance=1e-15, gtol=1e-10)


def test_glm_linear_update_equals_the_fit_on_both_days():
    day1, day2, _ = _days()
    X1, X2 = day1.X.toarray(), day2.X.toarray()
    opts = dict(task="linear", l2=0.7, options=_tight())
    first = fit_glm(X1, day1.y, offsets=day1.offsets, **opts)
    # the full posterior precision of day 1: X'X + l2 (no l2 on the intercept), [b, w] order
    Z = np.hstack([np.ones((X1.shape[0], 1)), X1])
    H = Z.T @ Z + np.diag(np.r_[0.0, np.full(DIM, 0.7)])
    prior = Prior(np.arange(DIM), np.r_[first.intercept, first.coef], H)
    update = fit_glm(X2, day2.y, offsets=day2.offsets, prior=prior, **opts)
    joint = fit_glm(np.vstack([X1, X2]), np.r_[day1.y, day2.y],
                    offsets=np.r_[day1.offsets, day2.offsets], **opts)  # fmt: skip
    np.testing.assert_allclose(update.theta, joint.theta, atol=1e-6)


def test_bad_priors_fail_in_one_message():
    with pytest.raises(DataError, match="finite and > 0; got 0.0"):
        precision_of(np.array([1.0, 0.0]))
    with pytest.raises(DataError, match="got -2.0"):
        precision_of(np.array([-2.0]))
    with pytest.raises(RecipeError, match="'forgetting' parameter"):
        precision_of(np.array([1.0]), forgetting=1.0)
    np.testing.assert_allclose(precision_of(np.array([2.0]), weight=3.0, forgetting=0.5), [0.75])
    problem = _problem([3, 4])
    with pytest.raises(RecipeError, match="same 2 entities"):
        fit_entities(problem, prior=EntityPriors.empty(3))
    with pytest.raises(DataError, match="prior features"):
        far = Prior(np.array([DIM]), np.zeros(2), np.ones(2))
        fit_entities(problem, prior=EntityPriors.from_priors([far, None]))


def test_take_reorders_and_fills_missing():
    priors = _priors()
    ragged = EntityPriors.from_priors(priors)
    taken = ragged.take(np.array([2, -1, 1]))
    assert taken.n_entities == 3 and taken.full is not None
    np.testing.assert_array_equal(taken.prior(0).index, priors[2].index)
    np.testing.assert_allclose(taken.prior(0).mean, priors[2].mean)
    assert taken.prior(1).index.size == 0 and not taken.has_intercept[1]
    np.testing.assert_allclose(taken.prior(2).precision, priors[1].precision)
    assert EntityPriors.empty(0).take(np.array([-1, -1])).n_entities == 2
