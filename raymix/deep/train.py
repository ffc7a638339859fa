"""The deep coordinate's training loop on one worker, whatever the backend.

Objective of a fit (the pointwise loss GDMix chains with its random effects): with the
coordinate's logit ``f(x_i)`` and the row's offset ``o_i`` (the sum of every other
coordinate's score),

    L = 1/B sum_{i in batch} w_i * sigmoid_cross_entropy(y_i, f(x_i) + o_i)

over mini-batches of ``B = batch_size`` rows in total. With ``N`` workers, worker ``r``
draws ``B // N (+1 for r < B % N)`` rows of its own shard per step, the per-worker gradients
(each already divided by the global ``B``) are summed by the collective, and every worker
applies the same optimizer step: one step on the union of the workers' batches, exactly.

Shuffling is seeded by (seed, rank, fit number): a run is repeatable. Everything a worker
carries from one fit to the next (weights, optimizer slots and counters, the fit number) is
a :class:`TrainerState`: a checkpoint saves it, a resumed run or a restarted worker group
restores it, and the next fit is then the one an uninterrupted run would take.

The trainer knows nothing of Ray: a worker hands it a :class:`Collective`
(:mod:`raymix.engine.collective`: in-process, TensorFlow's, Horovod's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from raymix.deep.inputs import Shard
from raymix.deep.model import Architecture, build_model, initial_weights
from raymix.deep.optim import Optimizer, OptimizerConfig


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int
    seed: int
    optimizer: OptimizerConfig
    score_batch: int = 8192
    #: all-gather the embedding's gradient as rows of the batch's distinct tokens instead of
    #: all-reducing it as a dense [vocab, d] matrix: ~20x less data on movieLens, but three
    #: collectives instead of one, and measured 2x slower on one 2-core machine (latency
    #: bound); it may pay with a large vocabulary across nodes
    sparse_gradients: bool = False


class Collective(Protocol):
    """What the workers of a group need to act as one (module docstring of
    :mod:`raymix.engine.collective`, which implements it)."""

    name: str
    rank: int
    world: int

    def tape(self, tape, sparse_as_dense: bool = False): ...

    def reduce(self, grads): ...

    def sum(self, x: np.ndarray) -> np.ndarray: ...

    def broadcast(self, variables) -> None: ...


@dataclass(frozen=True)
class TrainerState:
    """What a trainer carries from one fit to the next.

    ``optimizer`` holds the optimizer's slots and counters by name (None: a fresh optimizer,
    all zeros); ``fits`` is the number of fits done, which seeds the next fit's shuffling.
    """

    weights: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] | None = None
    fits: int = 0


@dataclass(frozen=True)
class FitSummary:
    """What one fit did: steps, examples seen, the mean training loss, how fast."""

    steps: int
    examples: int
    train_loss: float
    train_seconds: float
    examples_per_second: float


def local_batch_size(batch_size: int, rank: int, world: int) -> int:
    return batch_size // world + (1 if rank < batch_size % world else 0)


class Sampler:
    """Mini-batches of a shard: seeded permutations, an epoch's ragged end skipped."""

    def __init__(self, n: int, batch: int, rng: np.random.Generator):
        self.n, self.batch, self.rng = n, batch, rng
        self.order = np.zeros(0, np.int64)
        self.position = 0

    def next(self) -> np.ndarray:
        if self.n == 0 or self.batch == 0:
            return np.zeros(0, np.int64)
        if self.batch >= self.n:
            return np.arange(self.n)
        if self.position + self.batch > self.order.size:
            self.order = self.rng.permutation(self.n)
            self.position = 0
        out = self.order[self.position : self.position + self.batch]
        self.position += self.batch
        return out


class DeepTrainer:
    """A worker's resident model, optimizer and data; ``fit`` and ``score`` are collective."""

    def __init__(
        self,
        arch: Architecture,
        config: TrainConfig,
        collective: Collective,
        train: Shard,
        validation: Shard | None = None,
        weights: dict[str, np.ndarray] | None = None,
    ):
        import tensorflow as tf

        self.arch, self.config, self.collective = arch, config, collective
        self.train, self.validation = train, validation
        self.model = build_model(arch, weights or initial_weights(arch, config.seed))
        self.optimizer = Optimizer(config.optimizer, self.model.vars, self.model.names)
        collective.broadcast(self.model.vars)
        self.local_batch = local_batch_size(config.batch_size, collective.rank, collective.world)
        self.fits = 0
        batch_spec = [
            tf.TensorSpec([None, arch.width], tf.int32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None, None], tf.int64),
            tf.TensorSpec([None, None], tf.float32),
        ]
        norm = float(config.batch_size)
        sparse = config.sparse_gradients
        model = self.model

        @tf.function(
            input_signature=[
                *batch_spec,
                tf.TensorSpec([None], tf.float32),
                tf.TensorSpec([None], tf.float32),
                tf.TensorSpec([None], tf.float32),
            ]
        )
        def gradients(tokens, lengths, wide_ids, wide_values, offset, label, weight):
            with tf.GradientTape() as tape:
                logit = model(tokens, lengths, wide_ids, wide_values) + offset
                loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=label, logits=logit)
                loss = tf.reduce_sum(weight * loss) / norm
            tape = collective.tape(tape, sparse_as_dense=not sparse)
            grads = tape.gradient(loss, model.vars)
            if not sparse:
                grads = [tf.convert_to_tensor(g) for g in grads]
            return loss, grads

        @tf.function(input_signature=batch_spec)
        def logits(tokens, lengths, wide_ids, wide_values):
            return model(tokens, lengths, wide_ids, wide_values)

        self._gradients, self._logits = gradients, logits

    def fit(self, offsets: np.ndarray, steps: int | None = None) -> FitSummary:
        """Run ``steps`` (default: the configured number) optimizer steps with these offsets."""
        steps = self.config.steps if steps is None else steps
        shard = self.train
        if offsets.shape != shard.uid.shape:
            raise ValueError(f"{offsets.size} offsets for {len(shard)} rows")
        offset32 = offsets.astype(np.float32)
        label32 = shard.label.astype(np.float32)
        weight32 = shard.weight.astype(np.float32)
        rank = self.collective.rank
        sampler = Sampler(
            len(shard),
            self.local_batch,
            np.random.default_rng([self.config.seed, rank, self.fits]),
        )
        self.optimizer.begin(steps)
        started = time.perf_counter()
        loss_sum = 0.0
        for _ in range(steps):
            i = sampler.next()
            loss, grads = self._gradients(
                shard.tokens[i],
                shard.lengths[i],
                shard.wide_ids[i],
                shard.wide_values[i],
                offset32[i],
                label32[i],
                weight32[i],
            )
            self.optimizer.apply(self.collective.reduce(grads))
            loss_sum += float(loss)
        seconds = time.perf_counter() - started
        self.fits += 1
        total_loss = self.collective.sum(np.array([loss_sum]))[0]
        return FitSummary(
            steps=steps,
            examples=steps * self.config.batch_size,
            train_loss=float(total_loss / max(steps, 1)),
            train_seconds=seconds,
            examples_per_second=steps * self.config.batch_size / seconds if seconds else 0.0,
        )

    def score(self, shard: Shard | None) -> np.ndarray:
        """The model's logits (without offsets) for every row of ``shard``, float64."""
        if shard is None or len(shard) == 0:
            return np.zeros(0)
        out = []
        size = self.config.score_batch
        for start in range(0, len(shard), size):
            s = slice(start, start + size)
            out.append(
                self._logits(
                    shard.tokens[s], shard.lengths[s], shard.wide_ids[s], shard.wide_values[s]
                )
                .numpy()
                .astype(np.float64)
            )
        return np.concatenate(out)

    def weights(self) -> dict[str, np.ndarray]:
        return self.model.weights()

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        self.model.assign(weights)

    def state(self) -> TrainerState:
        return TrainerState(self.weights(), self.optimizer.state(), self.fits)

    def restore(self, state: TrainerState) -> None:
        """Become the trainer that ``state`` was taken from (weights, optimizer, fit number)."""
        self.model.assign(state.weights)
        self.optimizer.restore(state.optimizer)
        self.fits = state.fits
