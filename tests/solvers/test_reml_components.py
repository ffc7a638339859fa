"""REML of a linear random intercept (``next_linear_l2(fixed=p)`` with the fixed intercept's
coupling of :func:`intercept_coupling`) against the closed form of the balanced one-way
ANOVA and statsmodels' MixedLM(reml=True); ML (``fixed=None``) on the same fits is shown
to differ, so each test can fail."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from raymix.solvers.entity import EntityProblem, fit_entities, score_entities
from raymix.solvers.mixed_linear import Factor, fit_linear_mixed, one_way_anova_ml
from raymix.solvers.variance_components import (
    LinearStep,
    intercept_coupling,
    linear_moments,
    next_linear_l2,
    solve_l2,
)


def grouped(y: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows sorted by entity and the entity pointer."""
    order = np.argsort(codes, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(codes))])
    return y[order], ptr


def em_step(y: np.ndarray, ptr: np.ndarray, l2: float, method: str) -> LinearStep:
    """One EM step of a random intercept beside a fixed intercept ``mu``, at the joint fit:
    ``mu = sum w (y - z.A^-1 Z'y) / S`` (GLS, the profiled ``mu`` at this ``l2``), then the
    entities' fit with offsets ``mu``; REML adds the coupling fit of the labels 1."""
    X, w = sp.csr_matrix((y.size, 0)), np.ones(y.size)

    def fit(labels, offsets=None, variance=None):
        problem = EntityProblem(ptr, X, labels, w, offsets)
        kw = dict(task="linear", l2=l2, regularize_intercept=True, tol=1e-12, variance=variance)
        models = fit_entities(problem, **kw)
        return models, score_entities(models, X, ptr)

    ones, on_ones = fit(np.ones(y.size))
    _, on_y = fit(y)
    coupling, absorbed = intercept_coupling(ones, True, on_ones, w)
    mu = float(np.sum(w * (y - on_y))) / absorbed
    models, scores = fit(y, np.full(y.size, mu), variance="full")
    moments = linear_moments(models, True, y - mu - scores, w)
    if method == "ml":
        return next_linear_l2(moments, l2)
    with_coupling = dataclasses.replace(moments, coupling=coupling, absorbed=absorbed)
    return next_linear_l2(with_coupling, l2, fixed=1)


def fixed_point(y: np.ndarray, ptr: np.ndarray, method: str) -> LinearStep:
    l2, _ = solve_l2(lambda l2: em_step(y, ptr, l2, method).l2, tol=1e-11, max_iter=200)
    return em_step(y, ptr, l2, method)


def test_balanced_one_way_is_the_closed_form_reml():
    rng = np.random.default_rng(11)
    a, n = 25, 8
    y = 2.0 + rng.normal(0, 0.7, a)[:, None] + rng.normal(0, 1.0, (a, n))
    ptr = np.arange(a + 1) * n
    _, sigma_a2, sigma_e2 = one_way_anova_ml(y, method="reml")
    reml = fixed_point(y.ravel(), ptr, "reml")
    assert reml.sigma_e2 == pytest.approx(sigma_e2, rel=1e-6)
    assert reml.sigma2 == pytest.approx(sigma_a2, rel=1e-6)
    ml = fixed_point(y.ravel(), ptr, "ml")
    assert ml.sigma2 == pytest.approx(one_way_anova_ml(y, method="ml")[1], rel=1e-6)
    assert abs(ml.sigma2 - sigma_a2) > 1e-2 * sigma_a2  # ML is another answer


def test_unbalanced_one_factor_agrees_with_mixedlm_reml():
    import pandas as pd
    from statsmodels.regression.mixed_linear_model import MixedLM

    rng = np.random.default_rng(5)
    q, n = 30, 400
    codes = (q * rng.random(n) ** 2).astype(np.int64)  # unbalanced: 1 to 68 rows a level
    y = -0.5 + rng.normal(0, 0.6, q)[codes] + rng.normal(0, 1.5, n)
    model = MixedLM.from_formula("y ~ 1", groups=codes, data=pd.DataFrame({"y": y}))
    fit = model.fit(reml=True, method="bfgs")  # its lbfgs can stop at sigma^2 = 0 here
    assert fit.converged
    scale, sigma2 = fit.scale, float(fit.cov_re.iloc[0, 0])
    sorted_y, ptr = grouped(y, codes)
    reml = fixed_point(sorted_y, ptr, "reml")
    assert reml.sigma_e2 == pytest.approx(scale, rel=1e-3)
    assert reml.sigma2 == pytest.approx(sigma2, rel=1e-3)
    exact = fit_linear_mixed(y, None, [Factor(codes)], method="reml")
    assert reml.sigma2 == pytest.approx(exact.sigma2[0], rel=1e-6)
    assert reml.sigma_e2 == pytest.approx(exact.sigma_e2, rel=1e-6)
    ml = fixed_point(sorted_y, ptr, "ml")
    assert abs(ml.sigma2 - sigma2) > 1e-2 * sigma2
