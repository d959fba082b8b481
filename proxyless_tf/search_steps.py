"""The two steps of the bi-level search, compiled (the paper's Section 3.2):

* the weight step, on a training batch: the sampled path of every block (binary gates), trained
  alone; only the sampled candidates' variables are read, differentiated and updated
  (`proxyless_tf.paths`). Before the search phase the paths are the seed's or uniform draws,
  with blocks skipped at random (`training_paths`: stochastic depth, `skip_rate`);
* the architecture step, on a validation batch: two sampled paths per block mixed by binary
  gates, dL/dg from the tape turned into dL/dalpha (Eq. 4, `mixed_op.binary_gate_alpha_grad`),
  the latency term's gradient added (E[LAT] over every candidate, so it reaches the unsampled
  paths too), an Adam step, then the rescale that keeps the pair's total probability (the
  cross-entropy moves probability only within the pair). With `zero_pairs="loss"` a pair that
  holds `zero` is judged by its two losses instead of dL/dg (`_zero_pair_losses`).

Both run through `tf.distribute` (`strategy`, the default one-device strategy unless given):
inputs are per-replica shares of a global batch, each replica's loss is its share of the
global-batch mean (so summed gradients are the global-batch gradient), and Keras' optimisers sum
the replicas' gradients. Paths are sampled once per step in cross-replica context and passed to
every replica (`path_sampling="shared"`), or by each replica from its own random stream
(`"per_replica"`, as TuNAS samples per TPU core). See BUILD.md, "Scaling out".
"""

import collections

import keras
import tensorflow as tf

from proxyless_tf import mixed_op


class SearchSteps:
    """The compiled steps of a search over `net`. `counters["step"]` is the tf.Variable counting
    weight steps (checkpointed by the loop); `rng` is the sampling stream."""

    def __init__(self, net, config, num_classes, strategy, weight_optimizer, arch_optimizer, rng,
                 counters, objective=None):
        self.net = net
        self.config = config
        self.num_classes = num_classes
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.weight_optimizer = weight_optimizer
        self.arch_optimizer = arch_optimizer
        self.rng = rng
        self.counters = counters
        self.objective = objective
        self.traces = collections.Counter()
        # Per example: each replica divides its sum by the global batch (compute_average_loss).
        self.loss_fn = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing, reduction=None)
        # No autograph: the steps hold no data-dependent Python control flow, and converting the
        # supernet's code on every trace costs seconds.
        self._compiled_weight_step = tf.function(self._weight_step, autograph=False)
        self.arch_step = tf.function(self._arch_step, autograph=False)
        self._sample_every_path = tf.fill([len(net.mixed_ops), 2], -1)
        # Per block the index of `zero` among its candidates, -1 where it cannot be skipped.
        self._zero_index = tf.constant(
            [-1 if m.layout.zero is None else m.layout.zero for m in net.mixed_ops], tf.int32)
        self._bn_statistics = [v for v in net.non_trainable_variables
                               if v.name in ("moving_mean", "moving_variance")]
        self._sync_fn = None
        self._accuracy_fn = None

    def _cross_entropy(self, labels, logits):
        """This replica's share of the global-batch mean cross-entropy (the mean itself on one
        device): the replicas' values sum to the mean over the global batch."""
        onehot = tf.one_hot(labels, self.num_classes)
        return tf.nn.compute_average_loss(self.loss_fn(onehot, logits))

    @staticmethod
    def _accuracy(labels, logits):
        """This replica's share of the global-batch accuracy."""
        hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels)
        return tf.nn.compute_average_loss(tf.cast(hits, tf.float32))

    def _sum(self, value):
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

    def sample_paths(self):
        """int32 [num_searchable, 2]: per block two distinct paths from softmax(alpha); column 0
        alone is an ordinary one-path sample."""
        return tf.stack([mixed_op.sample_pair(a, self.rng) for a in self.net.alphas])

    def weight_step(self, images, labels, fixed=None, skip_rate=0.0):
        """One weight step on a training batch; `fixed` (default: none) and `skip_rate` as in
        `_weight_step`. Returns the loss and the accuracy of the paths it trained."""
        fixed = self._sample_every_path if fixed is None else tf.constant(fixed, tf.int32)
        return self._compiled_weight_step(images, labels, fixed,
                                          tf.constant(skip_rate, tf.float32))

    def _weight_step(self, images, labels, fixed, skip_rate):
        """`fixed`: int32 [num_searchable, 2], the paths to train, or -1 where a path is to be
        sampled (the seed phase fixes them all); `skip_rate`: see `training_paths`. Both are
        tensors, so that a new phase does not retrace."""
        self.traces["weight"] += 1  # Python side effect: counts traces, not calls
        if self.config.path_sampling == "shared":
            paths = self.training_paths(fixed, skip_rate)  # in cross-replica context
            args = (images, labels, paths)
        else:
            args = (images, labels, None, fixed, skip_rate)
        loss, accuracy = self.strategy.run(self._weight_replica_step, args=args)
        self.counters["step"].assign_add(1)
        return self._sum(loss), self._sum(accuracy)

    def training_paths(self, fixed, skip_rate):
        """The paths a weight step trains: `fixed` where it is >= 0, a sample from softmax(alpha)
        elsewhere. With skip_rate > 0 (the seed and warm-up phases, when the search's
        `skip_rate` is set) every block that can be skipped is skipped with that probability,
        and otherwise trains that path or, where it drew `zero`, its second draw: stochastic
        depth, so that the supernet learns to run with blocks skipped and scores shallow
        networks as it scores deep ones."""
        paths = tf.where(fixed >= 0, fixed, self.sample_paths())
        if not self.config.skip_rate:  # no draws: the sampling stream is as without the option
            return paths
        first, second = paths[:, 0], paths[:, 1]
        # Gumbel top-2: the second draw is a sample of the candidates other than the first.
        other = tf.where(tf.equal(first, self._zero_index), second, first)
        draws = self.rng.uniform(tf.shape(first))
        skipped = (self._zero_index >= 0) & (draws < skip_rate)
        chosen = tf.where(skipped, self._zero_index, other)
        first = tf.where(skip_rate > 0, chosen, first)
        return tf.stack([first, second], axis=1)

    def _weight_replica_step(self, images, labels, paths=None, fixed=None, skip_rate=None):
        shared = paths is not None
        if paths is None:
            paths = self.training_paths(fixed, skip_rate)  # this replica's stream
        if self.config.weight_mode == "full":
            return self._full_weight_step(images, labels)
        # The sampled paths' weights, picked as tensors: the tape differentiates with respect to
        # them, and each block's Case then updates the sampled candidate's variables alone.
        selections = self.net.select(paths)
        picked = [[trainable for trainable, _ in selection] for selection in selections]
        with tf.GradientTape() as tape:
            tape.watch(picked)
            logits = self.net(images, mode="binary", paths=paths, selections=selections,
                              training=True)
            loss = self._cross_entropy(labels, logits)
        shared_variables = self.net.shared_variables
        shared_grads, picked_grads = tape.gradient(
            loss, (shared_variables, picked), unconnected_gradients=tf.UnconnectedGradients.ZERO)
        if self.replicas > 1 and not shared:
            self._apply_dense(paths, shared_grads, picked_grads)
        else:
            if self.replicas > 1:  # the same paths everywhere: sum the replicas' gradients
                ctx = tf.distribute.get_replica_context()
                picked_grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, picked_grads)
            learning_rate = self.weight_optimizer.learning_rate  # before `apply` counts the step
            for s, m in enumerate(self.net.mixed_ops):
                m.layout.apply_update(paths[s, 0], picked_grads[s], self.weight_optimizer,
                                      learning_rate)
            self.weight_optimizer.apply(shared_grads, shared_variables)
        return loss, self._accuracy(labels, logits)

    def _apply_dense(self, paths, shared_grads, picked_grads):
        """Replicas that sampled different paths: every path variable gets a gradient (zero
        where this replica did not sample it), summed over the replicas; a variable moves when
        any replica used it."""
        grads = dict(zip(map(id, self.net.shared_variables), shared_grads))
        for s, m in enumerate(self.net.mixed_ops):
            dense = m.layout.dense_gradients(paths[s, 0], picked_grads[s])
            grads.update(zip(map(id, m.layout.trainable_variables()), dense))
        weights = self.net.weight_variables
        self.weight_optimizer.apply_to_active([grads[id(v)] for v in weights], weights,
                                              self.net.active_variables(paths))

    def _full_weight_step(self, images, labels):
        """Every path, weighted by its probability (the DARTS-style memory baseline)."""
        weights = self.net.weight_variables
        with tf.GradientTape() as tape:
            logits = self.net(images, mode="full", training=True)
            loss = self._cross_entropy(labels, logits)
        self.weight_optimizer.apply_to_active(tape.gradient(loss, weights), weights, None)
        return loss, self._accuracy(labels, logits)

    def _sample_gates(self, pairs):
        return tf.stack([mixed_op.pair_gates(a, pairs[s], self.rng)
                         for s, a in enumerate(self.net.alphas)])

    def _arch_step(self, images, labels):
        """Binary-gate architecture step on a validation batch (the paper's two-path trick)."""
        self.traces["arch"] += 1
        alphas = self.net.alphas
        before = [tf.identity(a) for a in alphas]
        if self.config.path_sampling == "shared":
            pairs = self.sample_paths()
            args = (images, labels, pairs, self._sample_gates(pairs))
        else:
            args = (images, labels)
        ce, accuracy, expected_ms, touched = self.strategy.run(self._arch_replica_step, args)
        # The rescale: once, in cross-replica context, after the replicas' summed update.
        if self.config.path_sampling == "shared":
            for s, alpha in enumerate(alphas):
                mixed_op.rescale_pair(alpha, pairs[s], before[s])
        else:
            touched = self.strategy.experimental_local_results(touched)[0]  # equal everywhere
            sizes = [int(a.shape[0]) for a in alphas]
            for alpha, mask, old in zip(alphas, tf.split(touched, sizes), before):
                mixed_op.rescale_touched(alpha, mask, old)
        expected_ms = self.strategy.reduce(tf.distribute.ReduceOp.MEAN, expected_ms, axis=None)
        return self._sum(ce), self._sum(accuracy), expected_ms

    def _arch_replica_step(self, images, labels, pairs=None, gates=None):
        alphas = self.net.alphas
        if pairs is None:  # per-replica sampling: this replica's own pairs and gates
            pairs = self.sample_paths()
            gates = self._sample_gates(pairs)
        block_inputs = [] if self.config.zero_pairs == "loss" else None  # kept for its reruns
        with tf.GradientTape() as tape:
            tape.watch(gates)
            logits = self.net.forward(images, "two", pairs, gates, training=True,
                                      block_inputs=block_inputs)
            ce = self._cross_entropy(labels, logits)
        gate_grads = tape.gradient(ce, gates)  # this replica's share of dCE/dg
        if block_inputs is not None:
            gate_grads = self._zero_pair_losses(labels, pairs, gates, ce, gate_grads,
                                                block_inputs)
        ctx = tf.distribute.get_replica_context()
        if self.objective is not None:
            # loss = f(CE, E[LAT]) of the global-batch CE: dL/dg = f_CE * dCE/dg (summed over
            # the replicas by the optimiser); the direct alpha term enters once, split over
            # the replicas.
            if self.replicas > 1:
                ce = ctx.all_reduce(tf.distribute.ReduceOp.SUM, ce) / self.replicas
            global_ce = ce * self.replicas
            # The alphas are non-trainable variables, which a tape does not watch by itself:
            # without the explicit watch the latency term would silently never reach them.
            alpha_values = [a.value for a in alphas]
            with tf.GradientTape() as outer:
                outer.watch([global_ce] + alpha_values)
                expected_ms = self.objective.expected(alphas)
                loss = self.objective.loss(global_ce, expected_ms)
            dce, *direct = outer.gradient(loss, [global_ce] + alpha_values)
        else:
            expected_ms, dce, direct = tf.constant(0.0), None, [None] * len(alphas)
        grads = []
        for s, alpha in enumerate(alphas):
            grad = mixed_op.binary_gate_alpha_grad(gate_grads[s], alpha, pairs[s])
            if dce is not None:
                grad *= dce
            if direct[s] is not None:  # the latency term is differentiable in alpha directly
                grad += direct[s] / self.replicas
            grads.append(grad)
        self.arch_optimizer.apply(grads, alphas)  # sums the replicas' gradients
        touched = tf.concat([tf.reduce_max(tf.one_hot(pairs[s], int(a.shape[0])), 0)
                             for s, a in enumerate(alphas)], 0)
        if self.replicas > 1 and self.config.path_sampling != "shared":
            touched = ctx.all_reduce(tf.distribute.ReduceOp.SUM, touched)
        return ce, self._accuracy(labels, logits), expected_ms, touched

    def _zero_pair_losses(self, labels, pairs, gates, ce, gate_grads, block_inputs):
        """`gate_grads` with the pairs that hold `zero` judged by their two losses.

        `zero`'s output is 0, so its dCE/dg is 0, and Eq. 4 then moves alpha_zero by the sign
        of dCE/dg_op alone: a first-order guess of CE(op) - CE(zero) that on CIFAR-10 agrees
        with the actual sign in under two thirds of the pairs (benchmarks/zero_gradient.py).
        For such a pair the network is run once more with the block's other path (every other
        block as sampled) and the two cross-entropies take the place of dCE/dg: Eq. 4 with
        (CE_0, CE_1) gives p_0 p_1 (CE_0 - CE_1) for alpha_0, the exact gradient of the pair's
        expected loss p_0 CE_0 + p_1 CE_1 on this batch. The blocks before the flipped one
        compute what they did in the step's own pass (the gates are one-hot), so the rerun
        starts at the flipped block, from what that pass recorded (`block_inputs`): on average
        about half a forward pass per such block, with batch statistics as the step's own pass,
        updating the moving statistics of the blocks it runs. On CIFAR-10 it did not change
        what the searches pick (docs/history/search_quality.md, section 7), so `gate` stays the
        default."""
        first_on = gates[:, 0] > 0.5
        active = tf.where(first_on, pairs[:, 0], pairs[:, 1])
        inactive = tf.where(first_on, pairs[:, 1], pairs[:, 0])
        holds_zero = tf.reduce_any(tf.equal(pairs, self._zero_index[:, None]), axis=1)
        flips = tf.cast(tf.where(holds_zero)[:, 0], tf.int32)
        positions = tf.constant(self.net.slot_positions, tf.int32)

        def flipped_loss(i, losses):
            s = flips[i]
            paths = tf.tensor_scatter_nd_update(active, [[s]], [inactive[s]])
            logits = self.net.rerun_from(positions[s], block_inputs, tf.stack([paths, paths], 1),
                                         training=True)
            return i + 1, losses.write(i, self._cross_entropy(labels, logits))

        count = tf.size(flips)
        _, flipped = tf.while_loop(lambda i, _: i < count, flipped_loss,
                                   [tf.constant(0), tf.TensorArray(tf.float32, size=count)])
        other_ce = tf.scatter_nd(flips[:, None], flipped.stack(), tf.shape(holds_zero))
        losses = tf.stack([tf.where(first_on, ce, other_ce), tf.where(first_on, other_ce, ce)], 1)
        return tf.where(holds_zero[:, None], losses, gate_grads)

    def global_accuracy(self, indices, images, labels):
        """Accuracy of the supernet with paths `indices` fixed on a (distributed) batch: the
        REINFORCE evaluation under a strategy."""
        if self._accuracy_fn is None:
            def accuracy(images, labels, paths):
                def replica(images, labels):
                    logits = self.net(images, mode="binary", paths=paths, training=False)
                    return self._accuracy(tf.cast(labels, tf.int32), logits)
                return self._sum(self.strategy.run(replica, (images, labels)))
            self._accuracy_fn = tf.function(accuracy)
        paths = tf.constant([[k, k] for k in indices], tf.int32)
        return float(self._accuracy_fn(images, labels, paths))

    def sync_batchnorm_statistics(self):
        """BatchNorm runs on each replica's share of the batch, and each replica updates its own
        copy of the moving statistics; this sets every copy to their mean across the replicas
        (at each epoch end, so checkpoints hold it)."""
        if self.replicas < 2 or not self._bn_statistics:
            return
        if self._sync_fn is None:
            def replica():
                ctx = tf.distribute.get_replica_context()
                means = ctx.all_reduce(tf.distribute.ReduceOp.MEAN,
                                       [tf.identity(v.value) for v in self._bn_statistics])
                for v, mean in zip(self._bn_statistics, means):
                    v.assign(mean)
            self._sync_fn = tf.function(lambda: self.strategy.run(replica))
        self._sync_fn()
