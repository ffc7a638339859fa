"""Anderson acceleration of a fixed-point iteration ``x = F(x)``, one system per column.

Backfitting over crossed random effects is a linear fixed-point iteration whose slowest
mode (the split of a shared mean between the factors' penalized intercepts) contracts by
~0.98 a sweep: thousands of sweeps to settle. Anderson's mixing (Walker & Ni, SIAM J.
Numer. Anal. 2011), with the last ``memory`` iterates, is for a linear map a GMRES in
disguise: the same problems settle to 1e-12 in under ten sweeps.

With the residuals ``g_i = F(x_i) - x_i`` and their differences ``dG``, ``dX`` over the
history, each step is

    gamma = argmin || g - dG gamma ||,      x_next = x + g - (dX + dG) gamma,

solved separately for each column of the last axis: the columns are independent systems
(the fixed effect's design columns, fitted as labels), each with its own error modes.
"""

from __future__ import annotations

import numpy as np


class Anderson:
    """The mixing of the last ``memory`` iterates; :meth:`step` takes ``x`` and ``F(x)``
    (arrays of the same shape, the last axis the independent columns) and returns the next
    ``x``. With ``memory=0`` it is the plain iteration."""

    def __init__(self, memory: int = 8):
        self.memory = memory
        self._x: list[np.ndarray] = []
        self._g: list[np.ndarray] = []

    def step(self, x: np.ndarray, fx: np.ndarray) -> np.ndarray:
        columns = x.shape[-1]
        flat_x, g = x.reshape(-1, columns), (fx - x).reshape(-1, columns)
        self._x.append(flat_x.copy())
        self._g.append(g.copy())
        del self._x[: -self.memory - 1], self._g[: -self.memory - 1]
        if len(self._g) < 2:
            return np.array(fx)
        dX = np.stack([b - a for a, b in zip(self._x[:-1], self._x[1:], strict=True)], axis=1)
        dG = np.stack([b - a for a, b in zip(self._g[:-1], self._g[1:], strict=True)], axis=1)
        out = flat_x + g
        for j in range(columns):
            gamma = np.linalg.lstsq(dG[:, :, j], g[:, j], rcond=None)[0]
            out[:, j] -= (dX[:, :, j] + dG[:, :, j]) @ gamma
        return out.reshape(x.shape)
