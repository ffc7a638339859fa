"""Optimizers over plain ``tf.Variable`` lists: AdamW (DeText's), Adam and SGD.

DeText trains with BERT's ``AdamWeightDecayOptimizer``: gradients clipped to global norm 1,
a learning rate decaying linearly from ``lr`` to 0 over the run's steps, and, per variable,

    m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
    p <- p - lr_t (m / (sqrt(v) + eps) + wd p)          (wd only for non-bias variables)

without Adam's bias correction (optional here). ``adam`` is the same with ``wd = 0`` and
bias correction; ``sgd`` is ``p <- p - lr_t g``: deterministic and stateless, which the
data-parallel equivalence tests rely on.

Every worker applies the same update to the same all-reduced gradient, so replicas stay
bit-identical without exchanging weights. :meth:`Optimizer.state` and
:meth:`Optimizer.restore` carry the slots and counters across a checkpoint or a restart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OptimizerConfig:
    kind: str  # "adamw" | "adam" | "sgd"
    learning_rate: float
    weight_decay: float = 0.0
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    bias_correction: bool = False
    momentum: float = 0.0
    schedule: str = "linear"  # "linear" (to 0 over the fit's steps) | "constant"
    clip_norm: float | None = 1.0


class Optimizer:
    """Owns the slot variables and applies one update per call to :meth:`apply`."""

    def __init__(self, config: OptimizerConfig, variables: list, names: list[str]):
        import tensorflow as tf

        self.config = config
        self.variables, self.names = variables, list(names)
        self.decay = [config.weight_decay > 0 and not name.endswith("bias") for name in names]
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")
        self.total = tf.Variable(1, dtype=tf.int64, trainable=False, name="total_steps")
        zeros = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        if config.kind in ("adamw", "adam"):
            self.m = zeros
            self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        elif config.kind == "sgd":
            self.m = zeros if config.momentum else []
            self.v = []
        else:
            raise ValueError(f"unknown optimizer kind {config.kind!r}")
        self.apply = tf.function(self._apply)

    def _slots(self) -> dict:
        """Every variable of the optimizer's own, by name."""
        slots = {"step": self.step, "updates": self.updates, "total_steps": self.total}
        for prefix, values in (("m", self.m), ("v", self.v)):
            if values:  # SGD without momentum has no slots
                slots.update(zip([f"{prefix}/{n}" for n in self.names], values, strict=True))
        return slots

    def state(self) -> dict:
        """The slots and counters, as numpy arrays by name."""
        return {name: variable.numpy() for name, variable in self._slots().items()}

    def restore(self, state: dict | None) -> None:
        """Put back what :meth:`state` gave (None: a fresh optimizer, every slot zero)."""
        import tensorflow as tf

        slots = self._slots()
        if state is not None and set(state) != set(slots):
            raise ValueError(f"optimizer state has {sorted(state)}, expected {sorted(slots)}")
        for name, variable in slots.items():
            fresh = 1 if name == "total_steps" else tf.zeros_like(variable)
            variable.assign(fresh if state is None else state[name])

    def begin(self, total_steps: int) -> None:
        """Restart the learning-rate schedule for a fit of ``total_steps`` steps."""
        self.step.assign(0)
        self.total.assign(max(int(total_steps), 1))

    def _learning_rate(self):
        import tensorflow as tf

        lr = tf.constant(self.config.learning_rate, tf.float32)
        if self.config.schedule == "linear":
            done = tf.cast(tf.minimum(self.step, self.total), tf.float32)
            lr = lr * (1.0 - done / tf.cast(self.total, tf.float32))
        return lr

    def _apply(self, grads):
        import tensorflow as tf

        c = self.config
        # Sparse (embedding) gradients arrive as IndexedSlices, possibly with a row repeated
        # once per worker: make them dense (summing repeats) before the norm is taken.
        grads = [tf.convert_to_tensor(g) for g in grads]
        if c.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, c.clip_norm)
        lr = self._learning_rate()
        self.updates.assign_add(1)
        t = tf.cast(self.updates, tf.float32)
        for k, (p, g) in enumerate(zip(self.variables, grads, strict=True)):
            if c.kind == "sgd":
                if c.momentum:
                    self.m[k].assign(c.momentum * self.m[k] + g)
                    g = self.m[k]
                p.assign_sub(lr * g)
                continue
            m = self.m[k].assign(c.beta_1 * self.m[k] + (1.0 - c.beta_1) * g)
            v = self.v[k].assign(c.beta_2 * self.v[k] + (1.0 - c.beta_2) * tf.square(g))
            if c.bias_correction:
                m = m / (1.0 - tf.pow(c.beta_1, t))
                v = v / (1.0 - tf.pow(c.beta_2, t))
            update = m / (tf.sqrt(v) + c.epsilon)
            if self.decay[k]:
                update = update + c.weight_decay * p
            p.assign_sub(lr * update)
        self.step.assign_add(1)
        return lr
