"""REINFORCE architecture updates (`--arch_algo=reinforce`), the paper's alternative to the
binary-gate gradient, and the path for a latency that is not differentiable.

One update: sample M architectures from softmax(alpha) (block by block), evaluate each on a
validation batch without gradients (the supernet with those paths fixed), reward each with

    mul:  R = ACC * (LAT / T) ** w          (MnasNet; w = -0.07, the official code uses -0.1)
    abs:  R = ACC + beta * |LAT / T - 1|    (TuNAS; beta < 0)

and move alpha along the policy gradient (1/M) sum_j (R_j - b) grad log p(arch_j), where b is a
moving average of the reward, with Adam (beta1 = 0 by default, as in the official code).
LAT comes from the latency table, or (`--latency_source=measure`) from converting the sampled
network to TFLite and timing it, cached per architecture.
"""

import dataclasses
import json
import math

import keras
import numpy as np
import tensorflow as tf

from proxyless_tf import architecture
from proxyless_tf.errors import UsageError
from proxyless_tf.latency.config import LatencyConfig
from proxyless_tf.latency.meter import Meter

REWARDS = ("mul", "abs")


@dataclasses.dataclass(frozen=True)
class ReinforceConfig:
    """The settings of the REINFORCE updater (defaults: the --reinforce_* and --arch_* flags').
    Where a sampled network's latency comes from is LatencyConfig.source."""

    samples: int = 10            # architectures sampled per update (M)
    reward: str = "mul"          # REWARDS
    w: float = -0.07             # exponent of the mul reward
    beta: float = -0.5           # weight of the abs reward (negative: a penalty)
    baseline_decay: float = 0.99
    lr: float = 1e-3             # Adam on alpha
    beta1: float = 0.0
    beta2: float = 0.999
    seed: int = 0                # the sampler's


def reward(accuracy, latency_ms, target_ms=None, form="mul", w=-0.07, beta=-0.5):
    """The multi-objective reward of a sampled network: `mul` is MnasNet's ACC * (LAT/T)^w,
    `abs` the TuNAS-style ACC + beta * |LAT/T - 1|; accuracy alone without a target T."""
    if target_ms is None:
        return accuracy
    ratio = latency_ms / target_ms
    if form == "mul":
        return accuracy * ratio ** w
    return accuracy + beta * abs(ratio - 1.0)


class SamplerState(tf.train.experimental.PythonState):
    """A NumPy generator's state as an item of a tf.train.Checkpoint, so that a resumed search
    draws the architectures an uninterrupted one would (the keras-tuner oracle keeps the same
    state in its JSON instead)."""

    def __init__(self, rng):
        self.rng = rng

    def serialize(self):
        return json.dumps(self.rng.bit_generator.state)

    def deserialize(self, string_value):
        self.rng.bit_generator.state = json.loads(string_value)


class Reinforce:
    """Policy-gradient updates of a supernet's alphas.

    `evaluate(indices, images, labels) -> accuracy` replaces the supernet evaluation (for
    tests and toy problems); by default the supernet runs with `mode="binary"` and the sampled
    paths. `optimizer` (a Keras optimizer) may be the search loop's own, so it is checkpointed
    with the rest; by default an Adam with `lr`, `beta1`, `beta2` is made here."""

    def __init__(self, supernet, objective=None, samples=10, reward="mul", w=-0.07, beta=-0.5,
                 baseline_decay=0.99, lr=1e-3, beta1=0.0, beta2=0.999, latency_source="table",
                 meter=None, target_ms=None, seed=0, evaluate=None, optimizer=None):
        if reward not in REWARDS:
            raise UsageError(f"--reinforce_reward={reward!r}: use one of {', '.join(REWARDS)}")
        if samples < 1:
            raise UsageError(f"--reinforce_samples must be at least 1, got {samples}")
        if not 0 <= baseline_decay < 1:
            raise UsageError(f"--reinforce_baseline_decay must be in [0, 1), got {baseline_decay}")
        if latency_source not in ("table", "measure"):
            raise UsageError(f"--latency_source={latency_source!r}: use table or measure")
        self.net = supernet
        self.objective = objective
        self.samples = samples
        self.reward_form = reward
        self.w, self.beta = w, beta
        self.baseline_decay = baseline_decay
        self.latency_source = latency_source
        self.target_ms = target_ms if target_ms is not None else (
            objective.target_ms if objective is not None else None)
        if latency_source == "measure":
            if self.target_ms is None:
                raise UsageError("--latency_source=measure needs a target: --target_ms, or a "
                                 "--latency_table with --target_ratio")
            self.meter = meter or Meter()
        elif objective is None and self.target_ms is not None:
            raise UsageError("a latency target with --latency_source=table needs --latency_table")
        else:
            self.meter = None
        self.uses_latency = self.target_ms is not None
        self.candidates = [m.candidates for m in supernet.mixed_ops]
        self.alphas = [m.alpha for m in supernet.mixed_ops]
        self.rng = np.random.default_rng(seed)
        self.lr = lr  # a resumed search steps at this rate, not the checkpoint's
        self.optimizer = optimizer or keras.optimizers.Adam(lr, beta_1=beta1, beta_2=beta2,
                                                            epsilon=1e-8)
        self.optimizer.build(self.alphas)
        # Checkpointable state: the baseline and whether it has been set yet.
        self.baseline = tf.Variable(0.0, trainable=False, name="reinforce_baseline")
        self.baseline_set = tf.Variable(False, trainable=False, name="reinforce_baseline_set")
        self.measured = {}  # ops tuple -> measured ms (latency_source=measure)
        self._evaluate = evaluate or self._supernet_accuracy
        self._accuracy_fn = None

    # --- pieces --------------------------------------------------------------------------------
    def probabilities(self):
        return [tf.nn.softmax(tf.convert_to_tensor(a)).numpy().astype(np.float64)
                for a in self.alphas]

    def sample(self, probs):
        """One architecture: a candidate index per searchable block."""
        return [int(self.rng.choice(len(p), p=p / p.sum())) for p in probs]

    def _supernet_accuracy(self, indices, images, labels):
        if self._accuracy_fn is None:
            def accuracy(images, labels, paths):
                logits = self.net(images, mode="binary", paths=paths, training=False)
                hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                tf.cast(labels, tf.int32))
                return tf.reduce_mean(tf.cast(hits, tf.float32))
            self._accuracy_fn = tf.function(accuracy)
        paths = tf.constant([[k, k] for k in indices], tf.int32)
        return float(self._accuracy_fn(images, labels, paths))

    def latency_ms(self, indices):
        """Latency of the sampled network: from the table, or measured (cached)."""
        if self.latency_source == "table":
            return self.objective.latency_of(indices) if self.objective is not None else math.nan
        ops = tuple(c[k] for c, k in zip(self.candidates, indices))
        if ops not in self.measured:
            arch = architecture.from_space(self.net.space, list(ops), name="sampled")
            stats = self.meter.measure_arch(arch)
            self.measured[ops] = float(stats["median"])
        return self.measured[ops]

    def reward(self, accuracy, latency_ms):
        return reward(accuracy, latency_ms, self.target_ms, self.reward_form, self.w, self.beta)

    # --- one update ------------------------------------------------------------------------
    def step(self, images, labels):
        """Samples M architectures, evaluates them on (images, labels), updates alpha.
        Returns python floats: reward, accuracy, latency_ms (means over the samples),
        baseline, and the mean log-probability of the samples."""
        probs = self.probabilities()
        indices = [self.sample(probs) for _ in range(self.samples)]
        accs = [self._evaluate(idx, images, labels) for idx in indices]
        return self.update(indices, accs, [self.latency_ms(idx) for idx in indices])

    def update(self, indices, accuracies, latencies_ms):
        """The policy-gradient step for architectures already evaluated (candidate indices per
        block, with their accuracy and latency): rewards, baseline, an Adam step on alpha.
        `step` feeds it fresh samples; the keras-tuner oracle feeds it finished trials."""
        probs = self.probabilities()
        accs = np.asarray(accuracies, np.float64)
        lats = np.asarray(latencies_ms, np.float64)
        rewards = np.array([self.reward(a, t) for a, t in zip(accs, lats)], np.float64)
        mean_reward = float(rewards.mean())
        if not bool(self.baseline_set.numpy()):
            self.baseline.assign(mean_reward)
            self.baseline_set.assign(True)
        baseline = float(self.baseline.numpy())
        advantages = rewards - baseline
        # d/dalpha of -(1/M) sum_j A_j log p(arch_j); d log softmax(alpha)_k = onehot(k) - p.
        grads = []
        for b, p in enumerate(probs):
            chosen = np.zeros_like(p)
            for j, idx in enumerate(indices):
                chosen[idx[b]] += advantages[j]
            grads.append(tf.constant(-(chosen - advantages.sum() * p) / len(indices),
                                     tf.float32))
        self.optimizer.apply(grads, self.alphas)
        decay = self.baseline_decay
        self.baseline.assign(decay * baseline + (1 - decay) * mean_reward)
        log_p = np.mean([sum(math.log(max(p[k], 1e-30)) for p, k in zip(probs, idx))
                         for idx in indices])
        return {"reward": mean_reward, "accuracy": float(accs.mean()),
                "latency_ms": float(lats.mean()), "baseline": float(self.baseline.numpy()),
                "log_prob": float(log_p)}

    def checkpoint_items(self):
        """What to add to a tf.train.Checkpoint to resume REINFORCE exactly (the alphas are
        the supernet's)."""
        return {"reinforce_optimizer": self.optimizer, "reinforce_baseline": self.baseline,
                "reinforce_baseline_set": self.baseline_set,
                "reinforce_sampler": SamplerState(self.rng)}


def from_config(supernet, objective, config=ReinforceConfig(), latency=LatencyConfig(),
                optimizer=None, evaluate=None):
    """The Reinforce updater of a ReinforceConfig (`objective` from latency.
    objective_from_config, or None for an accuracy-only reward unless latency.source is
    "measure" with a target_ms); latency.source and its meter say where a sampled network's
    latency comes from. `evaluate` as in Reinforce (the search loop's global-batch accuracy
    under a strategy)."""
    meter = latency.meter() if latency.source == "measure" else None
    if meter is not None:
        meter.check_available()
    target = objective.target_ms if objective is not None else latency.target_ms
    if objective is None and latency.source == "table":
        target = None  # no table: accuracy-only reward (latency_ms reported as nan)
    return Reinforce(supernet, objective, samples=config.samples, reward=config.reward,
                     w=config.w, beta=config.beta, baseline_decay=config.baseline_decay,
                     lr=config.lr, beta1=config.beta1, beta2=config.beta2,
                     latency_source=latency.source, meter=meter, target_ms=target,
                     seed=config.seed, optimizer=optimizer, evaluate=evaluate)
