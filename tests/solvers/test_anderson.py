"""Anderson's mixing of a fixed-point iteration, against the solution of the linear system
the iteration solves (numpy's dense solve)."""

import numpy as np
import pytest

from raymix.solvers.anderson import Anderson


def slow_linear_map(seed: int, n: int = 60, slowest: float = 0.99):
    """``F(x) = M x + b`` with a contraction whose slowest mode is ``slowest``."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    rates = np.concatenate([[slowest], rng.uniform(0, 0.6, n - 1)])
    M = q @ np.diag(rates) @ q.T
    return M, rng.normal(size=(n, 3))  # three independent columns


def iterate(M, b, memory, steps):
    x, mixing = np.zeros_like(b), Anderson(memory)
    for k in range(1, steps + 1):
        fx = M @ x + b
        if np.max(np.abs(fx - x)) < 1e-12:
            return x, k
        x = mixing.step(x, fx)
    return x, steps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_it_reaches_the_fixed_point_in_far_fewer_steps(seed):
    M, b = slow_linear_map(seed)
    exact = np.linalg.solve(np.eye(M.shape[0]) - M, b)
    mixed, steps = iterate(M, b, memory=8, steps=200)
    np.testing.assert_allclose(mixed, exact, atol=1e-10)
    plain, plain_steps = iterate(M, b, memory=0, steps=200)
    assert plain_steps == 200 and np.max(np.abs(plain - exact)) > 1e-3  # 0.99^200 ~ 0.13
    assert steps < 60


def test_columns_are_mixed_apart():
    """Each column is its own system: mixing two columns together equals mixing each alone."""
    M, b = slow_linear_map(3)
    together, _ = iterate(M, b, memory=5, steps=15)
    for j in range(b.shape[1]):
        alone, _ = iterate(M, b[:, [j]], memory=5, steps=15)
        np.testing.assert_allclose(together[:, [j]], alone, rtol=1e-9, atol=1e-12)


def test_memory_zero_is_the_plain_iteration():
    M, b = slow_linear_map(4)
    x = np.ones_like(b)
    np.testing.assert_array_equal(Anderson(0).step(x, M @ x + b), M @ x + b)
