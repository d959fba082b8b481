"""The latency term of the search: the supernet's expected latency E[LAT] from a table,
differentiable in the alphas, and the architecture loss that combines it with the
cross-entropy."""

import numpy as np
import tensorflow as tf

from proxyless_tf.errors import UsageError
from proxyless_tf.latency.machine import checked_table
from proxyless_tf.latency.target import check_target_values, reference_network, resolve_target

LOSS_FORMS = ("lambda", "mul_log", "add_linear", "abs", "hinge")


class LatencyObjective:
    """Expected latency of the supernet and the architecture loss built on it, for one space.

    Costs line up with `space.searchable_positions()` and each position's candidates (the order
    of `Supernet.mixed_ops` and `MixedOp.candidates`); `zero` costs 0."""

    def __init__(self, table, space, target_ms, loss="mul_log", lam=None, a=0.2, b=0.3, beta=2.0):
        if loss not in LOSS_FORMS:
            raise UsageError(f"--latency_loss={loss!r}: use one of {', '.join(LOSS_FORMS)}")
        if target_ms is None or not target_ms > 0:
            raise UsageError(f"the latency target must be positive, got {target_ms}")
        if loss == "mul_log" and target_ms <= 1.0:
            raise UsageError(f"--latency_loss=mul_log needs a target above 1 ms (log T > 0), got "
                             f"{target_ms:.4g} ms; use --latency_loss=abs, hinge or add_linear")
        self.table = table
        self.space = space
        self.target_ms = float(target_ms)
        self.form = loss
        self.lam = lam if lam is not None else (0.2 if loss == "add_linear" else 0.2 / target_ms)
        self.a, self.b, self.beta = a, b, beta
        self.candidates = [p.candidates for p in space.searchable_positions()]
        self.fixed_ms, self.costs = table.space_costs(space)
        self._cost_tensors = None

    # plain-number helpers
    def latency_of(self, indices):
        """Table latency (ms) of the network choosing candidate indices[i] in block i."""
        return self.fixed_ms + float(sum(c[int(k)] for c, k in zip(self.costs, indices)))

    def range_ms(self):
        return (self.fixed_ms + float(sum(c.min() for c in self.costs)),
                self.fixed_ms + float(sum(c.max() for c in self.costs)))

    def expected_np(self, probs):
        return self.fixed_ms + float(sum(np.dot(p, c) for p, c in zip(probs, self.costs)))

    def most_probable_near_target(self, probs, tolerance, bins=4000):
        """Candidate indices of the most probable network (the largest product of the blocks'
        probabilities) whose table latency is within +-`tolerance` of the target, or None when
        no network of the space is. The argmax when it already is within.

        A short search leaves the probabilities spread: E[LAT] can sit at the target while the
        argmax network, which drops the costly ops' remaining probability, is far below it.
        Latencies are additive over blocks, so a dynamic programme over latency bins finds
        the best network in the window exactly up to the bin width (a small fraction of the
        window; the result is checked against the exact sum)."""
        low, high = self.target_ms * (1 - tolerance), self.target_ms * (1 + tolerance)
        argmax = [int(np.argmax(p)) for p in probs]
        if low <= self.latency_of(argmax) <= high:
            return argmax
        width = (high - low) / 50.0
        size = int(np.ceil(max(high - self.fixed_ms, 0.0) / width)) + 1
        if size > bins * 50:
            return None
        best = np.full(size, -np.inf)
        best[0] = 0.0
        choices = []
        for p, cost in zip(probs, self.costs):
            log_p = np.log(np.maximum(np.asarray(p, np.float64), 1e-30))
            steps = np.round(np.asarray(cost) / width).astype(int)
            options = np.full((len(cost), size), -np.inf)
            for k, (step, value) in enumerate(zip(steps, log_p)):
                if step < size:
                    options[k, step:] = best[:size - step] + value
            choices.append(np.argmax(options, axis=0))
            best = options.max(axis=0)
        slack = len(self.costs) * width / 2  # how far rounding to bins can move a sum
        window = [b for b in range(size) if np.isfinite(best[b]) and
                  low - slack <= self.fixed_ms + b * width <= high + slack]
        for at in sorted(window, key=lambda b: -best[b]):  # the best bin that is truly inside
            indices = []
            for cost, choice in zip(reversed(self.costs), reversed(choices)):
                k = int(choice[at])
                indices.append(k)
                at -= int(np.round(cost[k] / width))
            indices.reverse()
            if low <= self.latency_of(indices) <= high:
                return indices
        return None

    # differentiable
    def expected(self, alphas):
        """E[LAT] in ms as a float32 scalar tensor, differentiable in the alphas: the fixed
        parts plus sum_j softmax(alpha)_j * cost_j in every block (the paper's Eq. 2).

        Over every candidate, also in the two-path architecture step, as the official code
        does: the latency term then lowers the alphas of costly paths that were not sampled.
        Over the sampled pair alone it could only trade mass within the pair, and E[LAT]
        stayed 2-3% above a tight target (docs/search_quality.md)."""
        if len(alphas) != len(self.costs):
            raise ValueError(f"expected {len(self.costs)} alpha vectors (one per searchable "
                             f"block), got {len(alphas)}")
        if self._cost_tensors is None:
            with tf.init_scope():  # eager constants: a first call inside a trace must not leave
                # graph tensors that a later trace (or an eager call) cannot reach
                self._cost_tensors = [tf.constant(c, tf.float32) for c in self.costs]
        total = tf.constant(self.fixed_ms, tf.float32)
        for i, (alpha, cost) in enumerate(zip(alphas, self._cost_tensors)):
            alpha = tf.convert_to_tensor(alpha, tf.float32)
            if alpha.shape[0] is not None and alpha.shape[0] != cost.shape[0]:
                raise ValueError(f"alpha {i} has {alpha.shape[0]} entries but block has "
                                 f"{cost.shape[0]} candidates {self.candidates[i]}")
            total += tf.reduce_sum(tf.nn.softmax(alpha) * cost)
        return total

    def loss(self, ce, expected_ms):
        """The architecture loss: CE combined with E[LAT] by the configured form."""
        ce = tf.convert_to_tensor(ce)
        e = tf.cast(expected_ms, ce.dtype)
        t = tf.constant(self.target_ms, ce.dtype)
        if self.form == "lambda":
            return ce + self.lam * e
        if self.form == "mul_log":
            ratio = tf.math.log(tf.maximum(e, 1e-6)) / tf.math.log(t)
            return ce * self.a * tf.pow(tf.maximum(ratio, 1e-6), self.b)
        if self.form == "add_linear":
            return ce + self.lam * (e - t) / t
        if self.form == "hinge":  # only a network above T pays: below it CE alone decides
            return ce + self.beta * tf.nn.relu(e / t - 1.0)
        return ce + self.beta * tf.abs(e / t - 1.0)

    def describe(self):
        lo, hi = self.range_ms()
        return (f"latency: table {self.table.source}, target {self.target_ms:.4g} ms, loss "
                f"{self.form}, space range {lo:.4g}-{hi:.4g} ms")


def objective_from_config(space, config, check=None, meter=None):
    """The LatencyObjective a LatencyConfig describes for `space`, or None when it names no
    table. The table is checked against this machine first (config.check; `check=False` turns
    it off whatever the config says) and a ratio target refers to the reference network
    measured here. `meter`: how the check times networks (default: config's)."""
    if not config.table:
        if config.target_ms is not None or config.target_ratio is not None:
            raise UsageError("--target_ms/--target_ratio need --latency_table")
        return None
    check_target_values(config.target_ms, config.target_ratio)  # before any timing
    checked = checked_table(space, config, meter, check, reference_network(space, config))
    target = resolve_target(checked.table, space, config.target_ms, config.target_ratio,
                            config.target_reference, checked.reference_ms)
    objective = objective_of(checked.table, space, target, config)
    lo, hi = objective.range_ms()
    if not lo <= target <= hi:
        from absl import logging
        logging.warning("latency target %.4g ms is outside the space's range %.4g-%.4g ms",
                        target, lo, hi)
    return objective


def objective_of(table, space, target_ms, config):
    """The LatencyObjective of `table` around `target_ms` with config's loss form."""
    return LatencyObjective(table, space, target_ms, config.loss, config.lam, config.a,
                            config.b, config.beta)
