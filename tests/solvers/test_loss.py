"""The GLM losses (raymix.solvers.loss and loss_kernels) against scikit-learn's ``_loss``
module, and the compiled kernels against their numpy twins.

scikit-learn's ``HalfBinomialLoss``, ``HalfSquaredError`` and ``HalfPoissonLoss`` are the
logistic, linear and Poisson losses of raymix exactly (no constant term), written
independently (Cython, with their own stable branches): value, gradient and Hessian agree to
rounding. The compiled per-row kernel and its numpy twin do the same operations in the same
order, so with the same elementary functions (libm's, which numba calls) they agree to the
bit.
"""

from __future__ import annotations

import math
import pickle
import typing

import numpy as np
import pytest
from sklearn._loss.loss import HalfBinomialLoss, HalfPoissonLoss, HalfSquaredError

from raymix.errors import DataError
from raymix.recipe import spec
from raymix.solvers import loss, loss_kernels
from raymix.solvers.loss import LINEAR, LOGISTIC, POISSON, TASKS

REFERENCE = {LOGISTIC: HalfBinomialLoss(), LINEAR: HalfSquaredError(), POISSON: HalfPoissonLoss()}
CODES = {"logistic": LOGISTIC, "linear": LINEAR, "poisson": POISSON}


def margins_and_labels(code: int, n: int = 4000, seed: int = 0):
    """Margins over the range each task meets (with exact zeros, +-0 and extremes) and labels
    of the task's range."""
    rng = np.random.default_rng(seed)
    scale = 30.0 if code == POISSON else 60.0  # exp(z) stays finite
    z = np.concatenate([rng.uniform(-scale, scale, n), rng.normal(0, 1, n)])
    z[:6] = [0.0, -0.0, scale, -scale, 1e-300, -1e-300]
    if code == LOGISTIC:
        y = rng.integers(0, 2, z.size).astype(np.float64)
    elif code == POISSON:
        y = rng.poisson(3.0, z.size).astype(np.float64)
    else:
        y = rng.normal(0, 5, z.size)
    return z, y


def assert_loss_close(got, want, z):
    """scikit-learn writes the loss as ``log1pexp(z) - y z``, whose terms cancel where the
    label is right: it is exact only to ``eps |z|`` there (raymix's form is exact to the last
    bit of the tiny result)."""
    tolerance = 1e-13 * np.abs(want) + 4 * np.finfo(np.float64).eps * np.maximum(np.abs(z), 1.0)
    bad = np.flatnonzero(~(np.abs(got - want) <= tolerance))
    assert bad.size == 0, (
        f"{bad.size} losses differ, e.g. z={z[bad[0]]}: {got[bad[0]]} {want[bad[0]]}"
    )


def compiled_derivatives(code, y, z):
    out = np.array([loss_kernels.derivatives(code, yi, zi) for yi, zi in zip(y, z, strict=True)])
    return out[:, 0], out[:, 1], out[:, 2]


def libm(function):
    """``function`` of the math module over an array: the very results numba's calls give."""
    vectorised = np.frompyfunc(function, 1, 1)
    return lambda x: vectorised(x).astype(np.float64)


def test_the_task_list_is_one_list():
    assert TASKS == ("logistic", "linear", "poisson")
    assert [loss.task_code(t) for t in TASKS] == [LOGISTIC, LINEAR, POISSON] == [0, 1, 2]
    assert set(loss.LABELS) == set(TASKS)
    # the recipe's Task must stay a literal for pydantic: it is this list
    assert typing.get_args(spec.Task) == TASKS


@pytest.mark.parametrize("task", TASKS)
def test_derivatives_equal_scikit_learn(task):
    code = CODES[task]
    z, y = margins_and_labels(code)
    ref = REFERENCE[code]
    want_loss = ref.loss(y, z)
    want_grad, want_hess = ref.gradient_hessian(y, z)
    for got in (compiled_derivatives(code, y, z), loss.derivatives(code, y, z)):
        value, grad, hess = got
        assert_loss_close(value, want_loss, z)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(hess, want_hess, rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(loss.loss(code, y, z), loss.derivatives(code, y, z)[0])


@pytest.mark.parametrize("task", TASKS)
def test_the_mean_forms_equal_scikit_learn(task):
    code = CODES[task]
    z, y = margins_and_labels(code, seed=1)
    ref = REFERENCE[code]
    want_grad, want_hess = ref.gradient_hessian(y, z)
    value, grad, hess = loss.mean_derivatives(code, y, z)
    assert_loss_close(value, ref.loss(y, z), z)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)
    # p (1 - p) loses what 1 - p cancels when p is near 1: exact to eps, not relatively
    np.testing.assert_allclose(hess, want_hess, rtol=1e-12, atol=1e-15)
    w = np.random.default_rng(2).uniform(0, 3, z.size)
    curvature = loss.weighted_curvature(code, z, w)
    np.testing.assert_allclose(curvature, w * want_hess, rtol=1e-12, atol=3e-15)
    np.testing.assert_allclose(loss.mean(code, z), want_grad + y, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("task", TASKS)
def test_the_compiled_kernel_is_its_twin_to_the_bit(task, monkeypatch):
    code = CODES[task]
    z, y = margins_and_labels(code, seed=3)
    z = np.concatenate([z, [700.0, -700.0]] if code != POISSON else [z, [-700.0]])
    y = np.concatenate([y, np.zeros(z.size - y.size)])
    compiled = compiled_derivatives(code, y, z)
    monkeypatch.setattr(loss, "_exp", libm(math.exp))
    monkeypatch.setattr(loss, "_log1p", libm(math.log1p))
    for got, want in zip(loss.derivatives(code, y, z), compiled, strict=True):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))


@pytest.mark.parametrize("task", TASKS)
def test_the_vectorised_block_kernel_agrees_with_the_twin(task):
    code = CODES[task]
    z, y = margins_and_labels(code, seed=4)
    w = np.random.default_rng(5).uniform(0, 3, z.size)
    w[::7] = 0.0
    r, losses = np.empty(z.size), np.empty(z.size)
    loss_kernels.block_loss(code, z, y, w, r, losses)
    value, grad, _ = loss.derivatives(code, y, z)
    if code == LINEAR:  # no elementary function and nothing to fuse: the very same numbers
        np.testing.assert_array_equal(losses, w * value)
        np.testing.assert_array_equal(r, w * grad)
        return
    # a few ulps of the terms that are added (the polynomials' exp and log1p, libm's exp
    # against numpy's, and fused multiply-adds): the differences may cancel less than they do
    mean = np.exp(-np.abs(z)) if code == LOGISTIC else np.exp(z)
    eps = np.finfo(np.float64).eps
    terms = np.abs(z) * (1 + np.abs(y)) + mean if code == LOGISTIC else mean + np.abs(y * z)
    assert np.all(np.abs(losses - w * value) <= 4 * eps * w * terms)
    assert np.all(np.abs(r - w * grad) <= 4 * eps * w * (1 + mean + np.abs(y)))


def test_a_zero_weight_row_adds_exactly_nothing():
    z = np.array([800.0, 1.0, -3.0])
    y, w = np.array([2.0, 0.0, 1.0]), np.zeros(3)
    for code in (LOGISTIC, LINEAR, POISSON):
        r, losses = np.full(3, np.nan), np.full(3, np.nan)
        with np.errstate(over="ignore"):
            loss_kernels.block_loss(code, z, np.minimum(y, 1.0) if code == LOGISTIC else y, w, r, losses)  # fmt: skip
        np.testing.assert_array_equal(losses, 0.0)
        if code == POISSON:  # exp(800) is inf: the weight, not the product, decides
            np.testing.assert_array_equal(r, 0.0)


def test_the_logistic_loss_never_overflows():
    z = np.array([-1000.0, 1000.0])
    value, grad, hess = loss.derivatives(LOGISTIC, np.array([1.0, 0.0]), z)
    np.testing.assert_array_equal(value, [1000.0, 1000.0])
    np.testing.assert_array_equal(grad, [-1.0, 1.0])
    assert np.all(np.isfinite(hess))


def test_labels_outside_the_task_range_are_flagged():
    y = np.array([0.0, 1.0, 0.5, -1.0, np.nan, 3.0])
    np.testing.assert_array_equal(loss.invalid_labels("logistic", y), [0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(loss.invalid_labels("poisson", y), [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(loss.invalid_labels("linear", y), np.zeros(6, bool))
    loss.check_labels("linear", y)
    loss.check_labels("logistic", np.array([0.0, np.nan, 1.0]))  # a missing label passes
    with pytest.raises(DataError) as info:
        loss.check_labels("logistic", y, path="part-0.avro", column="response")
    assert str(info.value) == (
        "part-0.avro, row 2, column 'response': A label of task 'logistic' must be 0 or 1. Got 0.5."
    )
    assert (info.value.path, info.value.row, info.value.column) == ("part-0.avro", 2, "response")
    assert pickle.loads(pickle.dumps(info.value)).args == info.value.args
    with pytest.raises(
        DataError, match=r"row 3, column 'y': A label of task 'poisson' must be >= 0"
    ):
        loss.check_labels("poisson", y)
