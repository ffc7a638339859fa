"""Pay numba's one-time start-up in a process ahead of its first real kernel call.

The first call of any compiled function in a process loads numba's typing registries
(~0.2-0.3 s on 2 cores), even when the kernel itself comes from the on-disk cache. Calling a
trivial cached function pays that early: in the driver while Ray starts, in an actor while
its rows are still being routed.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def _identity(x):
    return x


def warm_up_numba() -> None:
    _identity(0.0)
