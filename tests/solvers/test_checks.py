"""The solvers' checks: what each accepts, what it returns, and its one message."""

from __future__ import annotations

import pickle
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

from raymix.errors import DataError, RecipeError
from raymix.solvers import checks


def message(call) -> str:
    with pytest.raises(RecipeError) as info:
        call()
    assert pickle.loads(pickle.dumps(info.value)).args == info.value.args
    return str(info.value)


def test_the_message_is_scikit_learns():
    assert message(lambda: checks.real("fit_entities", "l2", -1)) == (
        "The 'l2' parameter of fit_entities must be a float in the range [0.0, inf). "
        "Got -1 instead."
    )
    # numpy scalars are shown as the numbers they hold
    assert message(lambda: checks.real("f", "l1", np.float64(-2.5))).endswith("Got -2.5 instead.")


@pytest.mark.parametrize("value", [0, 0.0, 3, 2.5, np.float32(1.5), np.int64(4), Fraction(1, 2)])
def test_real_accepts_non_negative_numbers_as_floats(value):
    got = checks.real("f", "x", value)
    assert type(got) is float and got == float(value)


@pytest.mark.parametrize("value", [-1e-300, np.nan, np.inf, True, "1", None, [1.0]])
def test_real_refuses_the_rest(value):
    assert "must be a float in the range [0.0, inf)" in message(
        lambda: checks.real("f", "x", value)
    )


def test_real_with_an_open_or_other_bound():
    assert checks.real("f", "tol", 1e-300, open_low=True) == 1e-300
    assert "in the range (0.0, inf). Got 0 instead." in message(
        lambda: checks.real("f", "tol", 0, open_low=True)
    )
    assert checks.real("f", "x", 2, low=2.0) == 2.0
    assert "[2.0, inf)" in message(lambda: checks.real("f", "x", 1.5, low=2.0))


def test_integer():
    assert checks.integer("f", "n", np.int32(3), low=1) == 3
    assert checks.integer("f", "n", None, low=1, none=True) is None
    for bad in (0, 2.0, True, None, "3"):
        text = message(lambda bad=bad: checks.integer("f", "n", bad, low=1))
        assert f"The 'n' parameter of f must be an int in the range [1, inf). Got {bad!r}" in text
    assert "must be None or an int in the range [1, inf). Got 0 instead." in message(
        lambda: checks.integer("f", "n", 0, low=1, none=True)
    )


def test_choice_and_boolean():
    assert checks.choice("f", "task", "linear", ("logistic", "linear")) == "linear"
    assert checks.choice("f", "variance", None, ("simple", "full"), none=True) is None
    assert message(lambda: checks.choice("f", "task", "probit", ("logistic", "linear"))) == (
        "The 'task' parameter of f must be one of 'logistic', 'linear'. Got 'probit' instead."
    )
    assert "must be None or one of 'simple', 'full'. Got 'FULL'" in message(
        lambda: checks.choice("f", "variance", "FULL", ("simple", "full"), none=True)
    )
    assert "one of 'a'. Got None" in message(lambda: checks.choice("f", "x", None, ("a",)))
    assert checks.boolean("f", "b", np.bool_(True)) is True
    assert message(lambda: checks.boolean("f", "b", 1)) == (
        "The 'b' parameter of f must be a bool. Got 1 instead."
    )


def test_an_intercept_is_regularized_only_when_there_is_one():
    checks.regularized_intercept("f", True, True)
    checks.regularized_intercept("f", False, False)
    assert message(lambda: checks.regularized_intercept("f", True, False)) == (
        "The 'regularize_intercept' parameter of f can be True only with fit_intercept=True."
    )


def test_vector():
    np.testing.assert_array_equal(checks.vector(None, 3, "w", default=1.0), np.ones(3))
    given = np.arange(3.0)
    assert checks.vector(given, 3, "w", default=0.0) is not given
    assert checks.vector(given, 3, "w", default=0.0, copy=False) is given
    assert checks.vector([1, 2, 3], 3, "w", default=0.0).dtype == np.float64
    with pytest.raises(DataError) as info:
        checks.vector(given, 4, "offsets", default=0.0)
    assert str(info.value) == "column 'offsets': 'offsets' must have shape (4,). Got (3,) instead."
    with pytest.raises(DataError, match="'w' must hold numbers"):
        checks.vector(["a", "b"], 2, "w", default=0.0)


def test_finite_and_nonnegative_name_the_first_bad_row():
    with pytest.raises(DataError) as info:
        checks.finite(np.array([0.0, 1.0, np.inf, np.nan]), "y")
    assert str(info.value) == "row 2, column 'y': 'y' has a NaN or infinite value."
    assert (info.value.row, info.value.column) == (2, "y")
    checks.finite(np.zeros(0), "y")
    with pytest.raises(DataError) as info:
        checks.nonnegative(np.array([0.0, 1.0, -0.5, -2.0]), "weights")
    assert str(info.value) == "row 2, column 'weights': 'weights' must be >= 0. Got -0.5."
    checks.nonnegative(np.array([0.0, -0.0]), "weights")


def test_sparse_values_are_finite_and_a_bad_one_names_its_row_and_column():
    X = sp.csr_matrix(np.array([[1.0, 0, 0], [0, 0, 0], [0, 2.0, np.nan]]))
    with pytest.raises(DataError) as info:
        checks.sparse_finite(X)
    assert str(info.value) == "row 2: X has a NaN or infinite value in column 2."
    checks.sparse_finite(sp.csr_matrix((3, 3)))


def test_matrix_keeps_float32_and_float64_and_converts_the_rest():
    X32 = np.ones((3, 2), np.float32)
    assert checks.matrix(X32) is X32
    fortran = np.asfortranarray(np.ones((3, 2)))
    got = checks.matrix(fortran)
    assert got.flags.c_contiguous and np.array_equal(got, fortran)
    assert checks.matrix(np.ones((2, 2), np.int64)).dtype == np.float64
    assert checks.matrix(np.ones((2, 2), bool)).dtype == np.float64
    csc = sp.csc_matrix(np.eye(3, dtype=np.float32))
    csr = checks.matrix(csc)
    assert csr.format == "csr" and csr.dtype == np.float32
    assert checks.matrix(sp.csr_matrix(np.eye(2, dtype=np.int32))).dtype == np.float64
    with pytest.raises(DataError, match="X must be a 2-D array"):
        checks.matrix(np.ones(3))
    with pytest.raises(DataError, match="X must hold numbers"):
        checks.matrix(np.array([["a"]]))
    dense = np.ones((4, 3))
    dense[3, 1] = -np.inf
    with pytest.raises(DataError, match=r"^row 3: X has a NaN or infinite value in column 1\.$"):
        checks.matrix(dense)
    huge = np.full((2, 2), 1e308)  # row sums overflow, values are fine
    assert checks.matrix(huge) is huge


def test_first_row():
    assert checks.first_row(np.array([False, False, True, True])) == 2
