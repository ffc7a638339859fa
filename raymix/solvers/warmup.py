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


def warm_up_entity_solver() -> None:
    """Load the per-entity solver's kernels (import ~0.5 s, first calls ~0.3 s on 2 cores) by
    fitting and scoring two tiny entities: in a bucket actor before its first fit."""
    import numpy as np
    import scipy.sparse as sp

    from raymix.solvers.entity import EntityProblem, fit_entities, score_entities

    X = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32))
    problem = EntityProblem(np.array([0, 2, 3]), X, np.array([1.0, 0.0, 1.0]))
    models = fit_entities(problem, task="logistic", l2=1.0, n_threads=1)
    score_entities(models, X, problem.entity_ptr)
