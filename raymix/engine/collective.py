"""Collectives of a worker group: in-process, TensorFlow's, Horovod's.

Each implements :class:`raymix.deep.train.Collective`, what the workers need to act as one:

* ``sum(x)``: all-reduce a numpy array (the fixed effect's loss and gradient, every
  float64 of them; the deep coordinate's loss sums and counts);
* ``tape(t, sparse_as_dense)``: wrap a ``GradientTape`` (Horovod: ``hvd.DistributedGradientTape``,
  whose ``gradient`` all-reduces);
* ``reduce(grads)``: all-reduce a list of gradients (TensorFlow: the collective ops of
  ``MultiWorkerMirroredStrategy``, which Ray's ``TensorflowTrainer`` configures through
  ``TF_CONFIG``; ``ray.util.collective`` has no CPU backend without torch, and
  ``ray.train.collective`` only broadcasts small objects);
* ``broadcast(variables)``: start every replica from rank 0's variables.

Gradients are summed, never averaged: the deep loss is already normalised by the global
batch size, so the summed gradient is exactly the gradient of the union of the workers'
batches. The embedding's gradient is made dense and all-reduced with the rest in one
collective; ``TrainConfig.sparse_gradients`` all-gathers it as ``IndexedSlices`` instead
(one row per distinct token of the batch).

With one worker every reduction is the identity and TensorFlow is never imported.
"""

from __future__ import annotations

import os

import numpy as np

from raymix.deep.train import Collective

__all__ = [
    "Collective",
    "HorovodCollective",
    "LocalCollective",
    "TensorflowCollective",
    "make_collective",
]


class LocalCollective:
    """One worker: every reduction is the identity."""

    name = "local"
    rank, world = 0, 1

    def tape(self, tape, sparse_as_dense: bool = False):
        return tape

    def reduce(self, grads):
        return grads

    def sum(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64)

    def broadcast(self, variables) -> None:
        pass


class TensorflowCollective:
    """TensorFlow's ring all-reduce across the workers named in ``TF_CONFIG``.

    Must be created before the worker runs any other TensorFlow op (collectives are
    configured at program start-up).
    """

    name = "tensorflow"

    def __init__(self, rank: int, world: int):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        self.rank, self.world = rank, world
        self._tf = tf
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy()

        @tf.function
        def _reduce(values):
            context = tf.distribute.get_replica_context()
            # tf.identity: without it the all-reduce fails with "destinations can not be empty".
            return context.all_reduce(tf.distribute.ReduceOp.SUM, [tf.identity(v) for v in values])

        self._reduce = _reduce

    def tape(self, tape, sparse_as_dense: bool = False):
        return tape

    def reduce(self, grads):
        out = self.strategy.run(self._reduce, args=(list(grads),))
        return [self.strategy.experimental_local_results(g)[0] for g in out]

    def sum(self, x: np.ndarray) -> np.ndarray:
        (reduced,) = self.reduce([self._tf.constant(np.asarray(x, np.float64))])
        return reduced.numpy()

    def broadcast(self, variables) -> None:
        pass  # replicas start from the same seeded draws or the same warm start


class HorovodCollective:
    """Horovod over Gloo (``hvd.init`` reads the rank and rendezvous from the environment)."""

    name = "horovod"

    def __init__(self):
        import horovod.tensorflow as hvd

        hvd.init()
        self.hvd = hvd
        self.rank, self.world = hvd.rank(), hvd.size()

    def tape(self, tape, sparse_as_dense: bool = False):
        return self.hvd.DistributedGradientTape(
            tape, op=self.hvd.Sum, sparse_as_dense=sparse_as_dense
        )

    def reduce(self, grads):
        return grads  # already all-reduced by the tape

    def sum(self, x: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        value = tf.constant(np.asarray(x, np.float64))
        return self.hvd.allreduce(value, op=self.hvd.Sum).numpy()

    def broadcast(self, variables) -> None:
        self.hvd.broadcast_variables(variables, root_rank=0)


def make_collective(backend: str, rank: int, world: int) -> Collective:
    """The collective of worker ``rank`` of ``world``: Horovod's for the ``horovod`` backend
    (whatever the size: one Horovod worker is its own reference), TensorFlow's for a group of
    several, the identity for one worker."""
    if backend == "horovod":
        return HorovodCollective()
    if world <= 1:
        return LocalCollective()
    return TensorflowCollective(rank, world)
