"""The solvers' checks of their arguments and of their data, each with one message.

A parameter check raises :class:`~raymix.errors.RecipeError` in scikit-learn's words::

    The 'l2' parameter of fit_entities must be a float in the range [0.0, inf). Got -1 instead.

A data check raises :class:`~raymix.errors.DataError` naming the column and the first bad
row: ``row 7, column 'y': 'y' has a NaN or infinite value.``
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Literal, overload

import numpy as np
import scipy.sparse as sp

from raymix.errors import DataError, RecipeError

__all__ = [
    "boolean",
    "choice",
    "finite",
    "first_row",
    "integer",
    "invalid",
    "matrix",
    "nonnegative",
    "real",
    "regularized_intercept",
    "shape_error",
    "sparse_finite",
    "vector",
]


def invalid(owner: str, name: str, expected: str, value: object) -> RecipeError:
    """The error of parameter ``name`` of ``owner``, which must be ``expected``."""
    shown = value.item() if isinstance(value, np.generic) else value
    return RecipeError(
        f"The '{name}' parameter of {owner} must be {expected}. Got {shown!r} instead."
    )


def choice(owner: str, name: str, value, choices: Collection, *, none: bool = False):
    """``value``, one of ``choices`` (or None when ``none``)."""
    if none and value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        listed = "one of " + ", ".join(repr(c) for c in choices)
        raise invalid(owner, name, f"None or {listed}" if none else listed, value)
    return value


def boolean(owner: str, name: str, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise invalid(owner, name, "a bool", value)
    return bool(value)


def real(owner: str, name: str, value, *, low: float = 0.0, open_low: bool = False) -> float:
    """``value`` as a float in ``[low, inf)`` (``(low, inf)`` when ``open_low``); NaN and
    infinities are refused."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not (low < value < np.inf if open_low else low <= value < np.inf):
        bound = "(" if open_low else "["
        raise invalid(owner, name, f"a float in the range {bound}{float(low)}, inf)", value)
    return float(value)


@overload
def integer(owner: str, name: str, value, *, low: int = 0, none: Literal[False] = False) -> int: ...
@overload
def integer(owner: str, name: str, value, *, low: int = 0, none: bool) -> int | None: ...
def integer(owner: str, name: str, value, *, low: int = 0, none: bool = False) -> int | None:
    """``value`` as an int in ``[low, inf)`` (or None when ``none``)."""
    if none and value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        expected = f"an int in the range [{low}, inf)"
        raise invalid(owner, name, f"None or {expected}" if none else expected, value)
    return int(value)


def regularized_intercept(owner: str, regularize_intercept: bool, fit_intercept: bool) -> None:
    """An intercept can be regularized only when there is one."""
    if regularize_intercept and not fit_intercept:
        raise RecipeError(
            f"The 'regularize_intercept' parameter of {owner} can be True only with "
            "fit_intercept=True."
        )


def first_row(bad: np.ndarray) -> int:
    """The first index where the mask ``bad`` is true (0 if none is)."""
    return int(np.argmax(bad))


def shape_error(name: str, got, expected, column: str | None = None) -> DataError:
    return DataError(f"'{name}' must have shape {expected}. Got {got} instead.", column=column)


def vector(values, n: int, name: str, *, default: float, copy: bool = True) -> np.ndarray:
    """``values`` as a float64 vector of shape ``(n,)`` (a copy unless ``copy=False`` and it
    is one already); None gives ``default`` everywhere."""
    if values is None:
        return np.full(n, default)
    try:
        v = np.array(values, dtype=np.float64) if copy else np.ascontiguousarray(values, np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"'{name}' must hold numbers ({exc}).", column=name) from exc
    if v.shape != (n,):
        raise shape_error(name, v.shape, (n,), column=name)
    return v


def finite(values: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"'{name}' has a NaN or infinite value.", row=first_row(bad), column=name)


def nonnegative(values: np.ndarray, name: str) -> None:
    bad = values < 0
    if bad.any():
        i = first_row(bad)
        raise DataError(f"'{name}' must be >= 0. Got {float(values[i])!r}.", row=i, column=name)


def sparse_finite(X: sp.csr_matrix) -> None:
    """Every stored value of the CSR matrix ``X`` is finite."""
    finite_values = np.isfinite(X.data)
    if not finite_values.all():
        p = first_row(~finite_values)
        row = int(np.searchsorted(X.indptr, p, side="right") - 1)
        raise DataError(f"X has a NaN or infinite value in column {int(X.indices[p])}.", row=row)


def matrix(X):
    """``X`` as a C-ordered float32/float64 ndarray or a CSR matrix (float32/float64 values
    are kept, other dtypes converted to float64), its values finite."""
    if sp.issparse(X):
        X = X.tocsr() if X.format == "csr" else sp.csr_matrix(X)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        sparse_finite(X)
        return X
    X = np.asarray(X)
    if X.ndim != 2:
        raise DataError(f"X must be a 2-D array (n_rows, n_features). Got shape {X.shape}.")
    if X.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"X must hold numbers. Got dtype {X.dtype}.")
        X = X.astype(np.float64)
    X = np.ascontiguousarray(X)
    # One cheap BLAS pass: a row sum is finite unless the row holds NaN/inf (or overflows).
    with np.errstate(over="ignore", invalid="ignore"):
        sums = X @ np.ones(X.shape[1], dtype=X.dtype)
    suspects = np.flatnonzero(~np.isfinite(sums))
    for i in suspects:
        bad = ~np.isfinite(X[i])
        if bad.any():
            raise DataError(
                f"X has a NaN or infinite value in column {first_row(bad)}.", row=int(i)
            )
    return X
