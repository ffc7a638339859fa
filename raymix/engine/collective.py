"""All-reduce of float64 vectors across Ray Train TensorFlow workers.

TensorFlow's own collective ops through ``MultiWorkerMirroredStrategy`` (Ray's
``TensorflowTrainer`` sets ``TF_CONFIG`` on every worker). ``ray.util.collective`` has no
CPU backend without torch, and ``ray.train.collective`` only broadcasts small objects.
With one worker the all-reduce is the identity and TensorFlow is never imported.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def make_allreduce(world_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Return ``f(x) -> sum of x over all workers`` (every worker must call it in lockstep)."""
    if world_size <= 1:
        return lambda x: np.asarray(x, dtype=np.float64)
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    @tf.function
    def _reduce(x):
        context = tf.distribute.get_replica_context()
        # tf.identity: without it the all-reduce fails with "destinations can not be empty".
        return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(x))

    def allreduce(x: np.ndarray) -> np.ndarray:
        value = tf.constant(np.asarray(x, dtype=np.float64))
        result = strategy.run(_reduce, args=(value,))
        return strategy.experimental_local_results(result)[0].numpy()

    return allreduce
