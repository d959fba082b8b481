"""REINFORCE architecture updates (proxyless_tf.reinforce) on tiny spaces and a toy problem."""

import itertools
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import synthetic_table
from proxyless_tf import latency, reinforce, search_space
from proxyless_tf.errors import UsageError


def tiny_space(**overrides):
    settings = dict(input_size=16, width_multiplier=0.25, widths=(16, 24), depths=(2, 1),
                    strides=(2, 1))
    settings.update(overrides)
    return search_space.small_input_space(**settings)


def fake_supernet(space):
    """What Reinforce reads from a supernet: its space and mixed ops (candidates, alpha)."""
    ops = [types.SimpleNamespace(candidates=p.candidates,
                                 alpha=keras.Variable(np.zeros(len(p.candidates), "float32"),
                                                      trainable=False))
           for p in space.searchable_positions()]
    return types.SimpleNamespace(space=space, mixed_ops=ops)


@pytest.mark.parametrize("seed", [3, 4])
def test_reinforce_concentrates_on_the_best_architecture_of_a_toy_problem(seed):
    """Accuracy grows with each block's 'quality' of its op (plus batch noise); latency comes
    from a table; the reward ACC * (LAT/T)^w trades them. The best architecture under the
    reward (found by enumerating all 3*4*4) is not the most accurate one; REINFORCE must put
    most of its probability on it."""
    space = tiny_space(candidates=("k3e3", "k5e6", "k7e6", "zero"))
    objective = latency.LatencyObjective(synthetic_table(space, seed=3), space, 1.0, loss="abs")
    lo, hi = objective.range_ms()
    objective.target_ms = lo + 0.5 * (hi - lo)
    rng = np.random.default_rng(seed)
    quality = [rng.uniform(0, 1, len(c)) for c in objective.candidates]

    def true_accuracy(indices):
        return 0.5 + 0.4 * np.mean([q[k] for q, k in zip(quality, indices)])

    noise = np.random.default_rng(seed + 100)
    agent = reinforce.Reinforce(
        fake_supernet(space), objective, samples=8, reward="mul", w=-0.3, lr=0.1,
        baseline_decay=0.9, seed=seed,
        evaluate=lambda idx, images, labels: true_accuracy(idx) + noise.normal(0, 0.01))
    combos = list(itertools.product(*[range(len(c)) for c in objective.candidates]))
    best = max(combos, key=lambda c: agent.reward(true_accuracy(c), objective.latency_of(c)))
    assert best != max(combos, key=true_accuracy)  # latency matters in this toy

    first = None
    for _ in range(250):
        stats = agent.step(None, None)
        first = first or stats
        assert set(stats) >= {"reward", "accuracy", "latency_ms"}
        assert all(isinstance(v, float) for v in stats.values())
    probs = agent.probabilities()
    assert tuple(int(np.argmax(p)) for p in probs) == best
    assert np.prod([p[k] for p, k in zip(probs, best)]) > 0.5, probs
    assert stats["reward"] > first["reward"]


def test_mul_reward_prefers_faster_networks_at_equal_accuracy():
    space = tiny_space()
    objective = latency.LatencyObjective(synthetic_table(space), space, 2.0, loss="abs")
    agent = reinforce.Reinforce(fake_supernet(space), objective, reward="mul", w=-0.07)
    assert agent.reward(0.8, 2.0) == pytest.approx(0.8)
    assert agent.reward(0.8, 1.0) == pytest.approx(0.8 * 0.5 ** -0.07)
    assert agent.reward(0.8, 1.0) > agent.reward(0.8, 4.0)
    agent = reinforce.Reinforce(fake_supernet(space), objective, reward="abs", beta=-0.5)
    assert agent.reward(0.8, 2.4) == pytest.approx(0.8 - 0.5 * 0.2)
    assert agent.reward(0.8, 1.6) == pytest.approx(0.8 - 0.5 * 0.2)
    with pytest.raises(UsageError):
        reinforce.Reinforce(fake_supernet(space), objective, reward="max")


def test_measured_latency_is_cached_per_architecture():
    space = tiny_space(candidates=("k3e3", "zero"))

    class FakeMeter(latency.Meter):
        calls = 0

        def measure_arch(self, arch):
            FakeMeter.calls += 1
            return {"median": 1.0 + 0.1 * arch.ops.count("k3e3"), "mean": 0.0}

    net = fake_supernet(space)
    agent = reinforce.Reinforce(net, None, samples=6, latency_source="measure",
                                meter=FakeMeter(), target_ms=1.2,
                                evaluate=lambda idx, images, labels: 0.5)
    for _ in range(5):
        stats = agent.step(None, None)
    distinct = len(agent.measured)
    assert FakeMeter.calls == distinct <= 2 * 2  # at most one measurement per architecture
    assert stats["latency_ms"] >= 1.0
    with pytest.raises(UsageError, match="needs a target"):
        reinforce.Reinforce(net, None, latency_source="measure")


def test_step_on_a_real_supernet_updates_alpha():
    """Evaluation through the supernet (binary mode, sampled paths, no gradients). One image of
    each class: a network that predicts one class for every image (as a new one may) scores
    1/10, not 0, so the samples' rewards differ by their latencies and alpha must move (a reward
    of 0 for every sample would leave it still, whatever the initial weights)."""
    from proxyless_tf import reproducible
    from proxyless_tf.supernet import Supernet
    reproducible.seed_everything(0)
    space = tiny_space(candidates=("k3e3", "k5e3", "zero"))
    net = Supernet(space)
    objective = latency.LatencyObjective(synthetic_table(space), space, 3.0, loss="abs")
    agent = reinforce.Reinforce(net, objective, samples=3, lr=0.05)
    before = [a.numpy().copy() for a in net.alphas]
    weights = [w.numpy().copy() for w in net.weight_variables[:5]]
    images = tf.random.uniform([10, 16, 16, 3], -1, 1)
    labels = tf.range(10, dtype=tf.int32)
    for _ in range(2):
        stats = agent.step(images, labels)
    assert 0.0 <= stats["accuracy"] <= 1.0
    assert objective.range_ms()[0] <= stats["latency_ms"] <= objective.range_ms()[1]
    assert any(not np.allclose(a.numpy(), b) for a, b in zip(net.alphas, before))
    assert all(np.array_equal(w.numpy(), v) for w, v in zip(net.weight_variables[:5], weights))
    # The baseline and the optimiser can go into the search's checkpoint.
    ckpt = tf.train.Checkpoint(**agent.checkpoint_items())
    assert ckpt is not None and bool(agent.baseline_set.numpy())
