"""DeText's wide-and-deep scorer in raw TensorFlow (``tf.Module``, no Keras).

For a row with token ids ``t`` (``[W]``, DeText framing, length ``n``) and sparse wide
features ``x``::

    e_j        = E[t_j]                                     embedding, [vocab, d]
    c^w_j      = relu(sum_{k<w} e_{j+k} K^w_k + b^w)        one CNN per window size w, F filters
    deep^w     = max_{j < max(n - w + 1, 0)} c^w_j          length mask (masked positions are 0)
    wide       = sum_i v_i x_i                              linear in the wide bag, no bias
    h_0        = [deep^w1, ..., deep^wk, wide]              (k F + 1)
    h_l        = relu(h_{l-1} A_l + a_l)                    optional hidden layers
    logit      = h_L u + c

The logit is the coordinate's own score; training adds the row's offset to it (see
:mod:`raymix.deep.train`). Keras 3 is avoided on purpose: its ``fit`` fails under
``MultiWorkerMirroredStrategy`` (platform notes), and plain variables make the gradient
all-reduce explicit and identical for both backends.

Variables are created from seeded numpy draws, so every worker builds bit-identical initial
weights without any broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Architecture:
    """Shapes of the network (everything needed to rebuild it around saved weights)."""

    vocab_size: int
    width: int
    embedding_size: int = 64
    filters: int = 50
    window_sizes: tuple[int, ...] = (3,)
    hidden: tuple[int, ...] = ()
    wide_dim: int = 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Variable name -> shape, in a fixed order (the order of gradients and of all-reduce)."""
        out: dict[str, tuple[int, ...]] = {"embedding": (self.vocab_size, self.embedding_size)}
        for w in self.window_sizes:
            out[f"conv{w}_kernel"] = (w, self.embedding_size, self.filters)
            out[f"conv{w}_bias"] = (self.filters,)
        if self.wide_dim:
            out["wide"] = (self.wide_dim,)
        size = self.filters * len(self.window_sizes) + (1 if self.wide_dim else 0)
        for k, units in enumerate(self.hidden):
            out[f"hidden{k}_kernel"] = (size, units)
            out[f"hidden{k}_bias"] = (units,)
            size = units
        out["output_kernel"] = (size, 1)
        out["output_bias"] = (1,)
        return out


def initial_weights(arch: Architecture, seed: int) -> dict[str, np.ndarray]:
    """Seeded initial values: uniform(-0.1, 0.1) embeddings, Glorot-uniform kernels, zero biases."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in arch.shapes().items():
        if name.endswith("bias"):
            value = np.zeros(shape)
        elif name == "embedding":
            value = rng.uniform(-0.1, 0.1, shape)
        elif name == "wide":
            value = rng.uniform(-0.05, 0.05, shape)
        else:
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            value = rng.uniform(-limit, limit, shape)
        out[name] = value.astype(np.float32)
    return out


def build_model(arch: Architecture, weights: dict[str, np.ndarray]):
    """A :class:`WideDeep` module holding ``weights`` (checked against the architecture)."""
    shapes = arch.shapes()
    missing = sorted(set(shapes) - set(weights))
    unknown = sorted(set(weights) - set(shapes))
    if missing or unknown:
        raise ValueError(f"weights do not fit the network: missing {missing}, unexpected {unknown}")
    for name, shape in shapes.items():
        if tuple(np.shape(weights[name])) != shape:
            raise ValueError(
                f"weight '{name}' has shape {np.shape(weights[name])}, expected {shape}"
            )
    return _module_class()(arch, weights)


_CLASS = None


def _module_class():
    """Define the tf.Module subclass on first use (TensorFlow is imported lazily)."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import tensorflow as tf

    class WideDeep(tf.Module):
        def __init__(self, arch: Architecture, weights: dict[str, np.ndarray]):
            super().__init__(name="wide_deep")
            self.arch = arch
            self.names = list(arch.shapes())
            self.vars = [
                tf.Variable(np.asarray(weights[n], np.float32), name=n, trainable=True)
                for n in self.names
            ]
            self._by_name = dict(zip(self.names, self.vars, strict=True))

        def __call__(self, tokens, lengths, wide_ids, wide_values):
            """Logits ``[B]`` of token ids ``[B, W]``, lengths ``[B]`` and padded wide features.

            ``wide_ids``/``wide_values`` are ``[B, K]``; an id of -1 marks padding.
            """
            v = self._by_name
            arch = self.arch
            # Look up each distinct token once: the embedding's gradient is then one row per
            # distinct token of the batch (IndexedSlices), which keeps the all-reduce small.
            distinct, where = tf.unique(tf.reshape(tokens, [-1]))
            x = tf.gather(tf.gather(v["embedding"], distinct), where)
            x = tf.reshape(x, [tf.shape(tokens)[0], arch.width, arch.embedding_size])
            features = []
            for w in arch.window_sizes:
                conv = tf.nn.conv1d(x, v[f"conv{w}_kernel"], stride=1, padding="VALID")
                conv = tf.nn.relu(conv + v[f"conv{w}_bias"])
                keep = tf.sequence_mask(
                    tf.maximum(lengths - w + 1, 0), maxlen=arch.width - w + 1, dtype=tf.float32
                )
                features.append(tf.reduce_max(conv * keep[:, :, None], axis=1))
            if arch.wide_dim:
                valid = wide_ids >= 0
                ids = tf.where(valid, wide_ids, tf.zeros_like(wide_ids))
                values = tf.where(valid, wide_values, tf.zeros_like(wide_values))
                wide = tf.reduce_sum(tf.gather(v["wide"], ids) * values, axis=1, keepdims=True)
                features.append(wide)
            h = tf.concat(features, axis=1)
            for k in range(len(arch.hidden)):
                h = tf.nn.relu(tf.matmul(h, v[f"hidden{k}_kernel"]) + v[f"hidden{k}_bias"])
            return tf.squeeze(tf.matmul(h, v["output_kernel"]), axis=1) + v["output_bias"][0]

        def weights(self) -> dict[str, np.ndarray]:
            return {n: var.numpy() for n, var in self._by_name.items()}

        def assign(self, weights: dict[str, np.ndarray]) -> None:
            for n, var in self._by_name.items():
                var.assign(np.asarray(weights[n], np.float32))

    _CLASS = WideDeep
    return _CLASS
