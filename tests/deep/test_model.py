"""The network and its optimizers against plain numpy, and the offset identity (no Ray)."""

import numpy as np
import pytest

from raymix.deep.inputs import Shard
from raymix.deep.model import Architecture, build_model, initial_weights
from raymix.deep.optim import Optimizer, OptimizerConfig
from raymix.deep.train import DeepTrainer, Sampler, TrainConfig, local_batch_size
from raymix.engine.collective import LocalCollective

ARCH = Architecture(
    vocab_size=12,
    width=9,
    embedding_size=5,
    filters=4,
    window_sizes=(2, 3),
    hidden=(3,),
    wide_dim=6,
)


def reference_logits(arch, w, tokens, lengths, wide_ids, wide_values):
    """The module docstring's formula, written out in numpy (float64)."""
    x = w["embedding"].astype(np.float64)[tokens]
    features = []
    for k in arch.window_sizes:
        kernel, bias = w[f"conv{k}_kernel"], w[f"conv{k}_bias"]
        positions = arch.width - k + 1
        conv = np.stack(
            [np.einsum("bke,kef->bf", x[:, t : t + k], kernel) for t in range(positions)], axis=1
        )
        conv = np.maximum(conv + bias, 0.0)
        keep = np.arange(positions)[None, :] < np.maximum(lengths - k + 1, 0)[:, None]
        features.append((conv * keep[:, :, None]).max(axis=1))
    valid = wide_ids >= 0
    wide = (w["wide"][np.where(valid, wide_ids, 0)] * np.where(valid, wide_values, 0)).sum(1)
    h = np.concatenate(features + [wide[:, None]], axis=1)
    for k in range(len(arch.hidden)):
        h = np.maximum(h @ w[f"hidden{k}_kernel"] + w[f"hidden{k}_bias"], 0.0)
    return (h @ w["output_kernel"])[:, 0] + w["output_bias"][0]


def random_batch(n, seed, arch=ARCH):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, arch.vocab_size, (n, arch.width)).astype(np.int32)
    lengths = rng.integers(0, arch.width + 1, n).astype(np.int32)
    wide_ids = rng.integers(-1, arch.wide_dim, (n, 3))
    wide_values = rng.normal(size=(n, 3)).astype(np.float32)
    return tokens, lengths, wide_ids, wide_values


def random_shard(n, seed, arch=ARCH):
    tokens, lengths, wide_ids, wide_values = random_batch(n, seed, arch)
    rng = np.random.default_rng(seed + 1)
    return Shard(
        uid=np.arange(n, dtype=np.int64),
        label=(rng.uniform(size=n) < 0.4).astype(np.float64),
        weight=rng.uniform(0.5, 2.0, n),
        offset=np.zeros(n),
        tokens=tokens,
        lengths=lengths,
        wide_ids=wide_ids,
        wide_values=wide_values,
    )


def test_forward_matches_numpy_reference():
    weights = initial_weights(ARCH, seed=3)
    rng = np.random.default_rng(0)
    weights = {
        k: (v + rng.normal(scale=0.3, size=v.shape)).astype(np.float32) for k, v in weights.items()
    }
    model = build_model(ARCH, weights)
    batch = random_batch(32, seed=1)
    got = model(*batch).numpy()
    np.testing.assert_allclose(got, reference_logits(ARCH, weights, *batch), rtol=1e-4, atol=1e-5)


def test_positions_past_the_length_do_not_matter():
    model = build_model(ARCH, initial_weights(ARCH, seed=0))
    tokens, lengths, wide_ids, wide_values = random_batch(16, seed=2)
    lengths = np.minimum(lengths, 5).astype(np.int32)
    changed = tokens.copy()
    changed[:, 5:] = (changed[:, 5:] + 1) % ARCH.vocab_size
    np.testing.assert_array_equal(
        model(tokens, lengths, wide_ids, wide_values).numpy(),
        model(changed, lengths, wide_ids, wide_values).numpy(),
    )


def test_initial_weights_are_seeded_and_shapes_checked():
    a, b = initial_weights(ARCH, seed=5), initial_weights(ARCH, seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["embedding"], initial_weights(ARCH, seed=6)["embedding"])
    with pytest.raises(ValueError, match="missing \\['wide'\\]"):
        build_model(ARCH, {k: v for k, v in a.items() if k != "wide"})
    with pytest.raises(ValueError, match="weight 'embedding' has shape"):
        build_model(ARCH, {**a, "embedding": np.zeros((3, 5), np.float32)})


def test_adamw_step_matches_its_formula():
    import tensorflow as tf

    p0, g = np.array([1.0, -2.0, 0.5], np.float32), np.array([0.3, -0.1, 0.0], np.float32)
    kernel, bias = tf.Variable(p0), tf.Variable(p0)
    config = OptimizerConfig("adamw", learning_rate=0.1, weight_decay=0.01, clip_norm=None)
    opt = Optimizer(config, [kernel, bias], ["a_kernel", "a_bias"])
    opt.begin(total_steps=4)
    for _ in range(2):
        opt.apply([tf.constant(g), tf.constant(g)])
    m1, v1 = 0.1 * g, 0.001 * g**2
    p1 = p0 - 0.1 * (m1 / (np.sqrt(v1) + 1e-6) + 0.01 * p0)
    m2, v2 = 0.9 * m1 + 0.1 * g, 0.999 * v1 + 0.001 * g**2
    p2 = p1 - 0.1 * 0.75 * (m2 / (np.sqrt(v2) + 1e-6) + 0.01 * p1)  # linear decay: 1 - 1/4
    np.testing.assert_allclose(kernel.numpy(), p2, rtol=1e-5)
    q1 = p0 - 0.1 * (m1 / (np.sqrt(v1) + 1e-6))  # no weight decay on biases
    q2 = q1 - 0.075 * (m2 / (np.sqrt(v2) + 1e-6))
    np.testing.assert_allclose(bias.numpy(), q2, rtol=1e-5)


def test_a_constant_offset_equals_a_shifted_output_bias():
    """Training with offset c equals training with the output bias raised by c (SGD)."""
    shard = random_shard(64, seed=4)
    sgd = OptimizerConfig("sgd", learning_rate=0.5, schedule="constant", clip_norm=None)
    config = TrainConfig(steps=5, batch_size=16, seed=0, optimizer=sgd)
    start = initial_weights(ARCH, seed=0)
    c = 0.7
    with_offset = DeepTrainer(ARCH, config, LocalCollective(), shard, weights=start)
    with_offset.fit(np.full(len(shard), c))
    shifted = {**start, "output_bias": start["output_bias"] + np.float32(c)}
    with_bias = DeepTrainer(ARCH, config, LocalCollective(), shard, weights=shifted)
    with_bias.fit(np.zeros(len(shard)))
    a, b = with_offset.weights(), with_bias.weights()
    assert not np.allclose(a["output_kernel"], start["output_kernel"])
    for name in a:
        expected = a[name] + (c if name == "output_bias" else 0.0)
        np.testing.assert_allclose(b[name], expected, atol=2e-6, err_msg=name)
    scores = with_offset.score(shard)
    np.testing.assert_allclose(scores + c, with_bias.score(shard), atol=2e-6)


def test_training_reduces_the_loss_and_repeats_exactly():
    shard = random_shard(200, seed=7)
    adamw = OptimizerConfig("adamw", learning_rate=0.01, weight_decay=0.01)
    config = TrainConfig(steps=60, batch_size=32, seed=11, optimizer=adamw)
    first = DeepTrainer(ARCH, config, LocalCollective(), shard)
    early = first.fit(np.zeros(len(shard)), steps=5).train_loss
    late = first.fit(np.zeros(len(shard))).train_loss
    assert late < early
    again = DeepTrainer(ARCH, config, LocalCollective(), shard)
    again.fit(np.zeros(len(shard)), steps=5)
    again.fit(np.zeros(len(shard)))
    for name, value in first.weights().items():
        np.testing.assert_array_equal(again.weights()[name], value)


def test_global_batch_is_split_across_ranks():
    assert [local_batch_size(64, r, 3) for r in range(3)] == [22, 21, 21]
    sampler = Sampler(10, 4, np.random.default_rng(0))
    seen = np.concatenate([sampler.next() for _ in range(2)])
    assert len(set(seen.tolist())) == 8  # one epoch without repeats (its ragged end skipped)
    assert Sampler(3, 4, np.random.default_rng(0)).next().tolist() == [0, 1, 2]


def test_optimizer_state_round_trips_and_a_fresh_one_is_zero():
    import tensorflow as tf

    variables = [tf.Variable(np.ones(3, np.float32)), tf.Variable(np.ones(2, np.float32))]
    adam = Optimizer(OptimizerConfig("adam", learning_rate=0.1), variables, ["a", "b_bias"])
    adam.begin(10)
    for _ in range(3):
        adam.apply([tf.constant([1.0, -2.0, 3.0]), tf.constant([0.5, 0.5])])
    state = adam.state()
    assert sorted(state) == ["m/a", "m/b_bias", "step", "total_steps", "updates", "v/a", "v/b_bias"]
    assert state["updates"] == 3 and np.abs(state["m/a"]).min() > 0
    other = Optimizer(OptimizerConfig("adam", learning_rate=0.1), variables, ["a", "b_bias"])
    other.restore(state)
    for name, value in other.state().items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)
    other.restore(None)
    assert all(not np.any(v) for k, v in other.state().items() if k != "total_steps")
    with pytest.raises(ValueError, match="optimizer state has"):
        other.restore({"step": 0})


def test_a_trainer_restored_from_its_state_goes_on_as_the_uninterrupted_one(tmp_path):
    from raymix.deep.export import load_trainer_state, save_trainer_state

    shard = random_shard(200, seed=3)
    adamw = OptimizerConfig("adamw", learning_rate=0.01, weight_decay=0.01)
    config = TrainConfig(steps=20, batch_size=32, seed=5, optimizer=adamw)
    offsets = np.zeros(len(shard))
    whole = DeepTrainer(ARCH, config, LocalCollective(), shard)
    whole.fit(offsets)
    whole.fit(offsets)

    first = DeepTrainer(ARCH, config, LocalCollective(), shard)
    first.fit(offsets)
    save_trainer_state(tmp_path, first.state())
    saved = load_trainer_state(tmp_path, first.weights())  # what a resumed run reads back
    assert saved.fits == 1
    resumed = DeepTrainer(ARCH, config, LocalCollective(), shard, weights=saved.weights)
    resumed.restore(saved)
    resumed.fit(offsets)
    for name, value in whole.weights().items():
        np.testing.assert_array_equal(resumed.weights()[name], value, err_msg=name)

    # the weights alone (a fresh optimizer, fit number 0) do not give the same second fit
    weights_only = DeepTrainer(ARCH, config, LocalCollective(), shard, weights=first.weights())
    weights_only.fit(offsets)
    gap = max(np.abs(weights_only.weights()[n] - whole.weights()[n]).max() for n in whole.weights())
    assert gap > 1e-4
    assert load_trainer_state(tmp_path / "nothing", first.weights()).optimizer is None
