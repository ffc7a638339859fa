"""When a fixed effect's variances are made marginal over the random effects, and the two
design products its workers compute (against numpy on the dense design). The variances
themselves are checked against lmer's in ``test_linear_components.py`` and, through
``raymix.fit``, in ``tests/test_reml_fit.py``."""

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from raymix import FixedEffect, RandomEffect
from raymix.coordinates.fixed_effect_fit import design_columns, weighted_cross
from raymix.coordinates.marginal_variance import (
    MAX_PARAMS,
    conditional_reason,
    fitted_penalty,
    use_marginal_variances,
)


def fixed(dim=3, prior=None, **spec):
    fields = {"name": "fe", "feature_bag": "g", "task": "linear", "variance": "full"} | spec
    variances = None if fields["variance"] is None else np.ones(dim + 1)  # as fitted
    return SimpleNamespace(kind="fixed_effect", name="fe", spec=FixedEffect(**fields), prior=prior, params=dim + 1, variances=variances)  # fmt: skip


def random(name="re", **spec):
    fields = {"name": name, "entity": "user", "task": "linear", "regularize_intercept": True}
    return SimpleNamespace(kind="random_effect", name=name, spec=RandomEffect(**(fields | spec)))


def test_a_linear_mixed_model_gets_marginal_variances():
    assert conditional_reason([fixed(), random(), random("item", entity="item")]) is None


@pytest.mark.parametrize(
    "coordinates, said",
    [
        ([fixed()], "not a linear mixed model"),
        ([fixed(variance=None), random()], "not a linear mixed model"),
        ([fixed(), fixed(), random()], "not a linear mixed model"),
        ([fixed(task="logistic"), random(task="logistic")], "not a linear model"),
        ([fixed(), random(), SimpleNamespace(kind="deep")], "a deep coordinate"),
        ([fixed(l1=0.1), random()], "the fixed effect has a prior or an l1"),
        ([fixed(prior=object()), random()], "the fixed effect has a prior or an l1"),
        ([fixed(dim=MAX_PARAMS), random()], f"more than {MAX_PARAMS}"),
        ([fixed(), random(l1=0.1)], "random effect 're' has a prior, an l1 or max_samples"),
        ([fixed(), random(max_samples=10)], "has a prior, an l1 or max_samples"),
        ([fixed(), random(regularize_intercept=False)], "random effect 're' has free intercepts"),
    ],
)
def test_where_it_would_not_be_exact_the_variances_stay_conditional(coordinates, said):
    assert said in conditional_reason(coordinates)


def test_the_summary_says_why_and_leaves_the_variances():
    fe = fixed()
    before = fe.variances.copy()
    said = use_marginal_variances([fe, random(l1=0.1)], {})
    assert said == {"coordinate": "fe", "kind": "conditional", "reason": "random effect 're' has a prior, an l1 or max_samples"}  # fmt: skip
    np.testing.assert_array_equal(fe.variances, before)
    assert use_marginal_variances([fixed(variance=None), random()], {}) is None
    unfitted = use_marginal_variances([fe, random(l2="auto")], {})
    assert unfitted["reason"] == "a random effect's l2 is not known (never fitted)"


def test_the_penalty_is_the_last_fits():
    spec = RandomEffect(name="re", entity="user", task="linear", l2="auto")
    assert fitted_penalty(spec, {"l2": 2.5}) == (2.5, None)
    assert fitted_penalty(spec, {}) == (None, None)
    assert fitted_penalty(spec, {"l2_per_slot": [1, 2]}) == (None, (1.0, 2.0))
    assert fitted_penalty(RandomEffect(name="re", entity="user", l2=3), {}) == (3.0, None)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("intercept", [False, True])
def test_the_design_products_are_numpys(sparse, intercept):
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(50, 4)) * (rng.random((50, 4)) < 0.5)
    X = sp.csr_matrix(dense) if sparse else dense
    full = np.column_stack([dense, np.ones(50)]) if intercept else dense
    p = full.shape[1]
    for start, stop in [(0, p), (1, 3), (p - 1, p)]:
        np.testing.assert_array_equal(design_columns(X, start, stop, intercept), full[:, start:stop])  # fmt: skip
    w, v = rng.random(50), rng.normal(size=(50, 2))
    np.testing.assert_allclose(weighted_cross(X, w, v, intercept), full.T @ (w[:, None] * v), rtol=1e-12)  # fmt: skip
