"""The bi-level search loop: weights on the training split, alpha on a held-out validation split.

Per batch: one weight step (binary gates: one sampled path per block); every K batches, after the
warm-up epochs, one architecture step (two sampled paths, binary-gate gradient + rescale, or
REINFORCE). Checkpoints at every epoch end (tf.train.CheckpointManager): rerunning the same
command resumes from the last finished epoch with the same weights, alpha, optimiser state and
sampling RNG.

Both steps run through `tf.distribute` (`strategy`, the default one-device strategy unless
given): inputs are per-replica shares of a global batch, each replica's loss is its share of
the global-batch mean (so summed gradients are the global-batch gradient), and Keras' optimisers
sum the replicas' gradients. Paths are sampled once per step in cross-replica context and passed
to every replica (`path_sampling="shared"`), or by each replica from its own random stream
(`"per_replica"`, as TuNAS samples per TPU core). See BUILD.md, "Scaling out".
"""

import collections
import dataclasses
import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from proxyless_tf import derived, distribute, growth, io_utils, mixed_op, plots
from proxyless_tf.optimizers import SampledPathSGD


@dataclasses.dataclass
class SearchConfig:
    epochs: int = 120
    warmup_epochs: int = 40
    steps_per_epoch: int = 0          # 0: one pass over the training split
    weight_lr: float = 0.025
    weight_decay: float = 4e-5
    momentum: float = 0.9
    label_smoothing: float = 0.1
    arch_lr: float = 1e-3
    arch_beta1: float = 0.0
    arch_beta2: float = 0.999
    arch_update_every: int = 5
    arch_algo: str = "grad"           # "grad" (binary gates) or "reinforce"
    weight_mode: str = "binary"       # "binary" or "full" (all paths, the memory baseline)
    seed: int = 0
    path_sampling: str = "shared"     # under several replicas: "shared" or "per_replica"
    derive: str = "target"            # "target": the most probable network within
                                      # +-derive_tolerance of the latency target (the argmax when
                                      # it is); "argmax": the paper's argmax of alpha per block
    derive_tolerance: float = 0.05
    seed_epochs: int = None           # first warm-up epochs train the seed network alone, which
                                      # then grows into every candidate (proxyless_tf.growth);
                                      # None: half the warm-up; 0: random paths from the start

    def __post_init__(self):
        if self.seed_epochs is None:
            self.seed_epochs = self.warmup_epochs // 2 if self.weight_mode == "binary" else 0

    def phase(self, epoch):
        """What an epoch trains: the seed network, the random-path supernet (warm-up), or the
        weights and the architecture in turn (search)."""
        if epoch < self.seed_epochs:
            return "seed"
        return "warm-up" if epoch < self.warmup_epochs else "search"


class StopSearch(Exception):
    """Raised by an epoch callback to stop after a checkpoint (used to simulate interruption)."""


class BilevelSearch:
    """`strategy`: a tf.distribute strategy whose scope the supernet was built in (None: the
    default one-device strategy). The optimisers, the RNG and the counters are made in it here."""

    def __init__(self, supernet, splits, config, output_dir, objective=None, reinforce=None,
                 verbose=1, strategy=None):
        self.net = supernet
        self.splits = splits
        self.config = config
        self.output_dir = output_dir
        self.objective = objective          # latency objective (proxyless_tf.latency), or None
        self.reinforce = reinforce          # REINFORCE updater for arch_algo == "reinforce"
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = distribute.is_chief(self.strategy)
        self.verbose = verbose if self.chief else 0
        if config.path_sampling not in distribute.SAMPLINGS:
            raise ValueError(f"path_sampling={config.path_sampling!r}: use one of "
                             f"{', '.join(distribute.SAMPLINGS)}")
        if not self.strategy.extended.variable_created_in_scope(self.net.alphas[0].value):
            raise ValueError("build the supernet inside the strategy's scope "
                             "(with strategy.scope(): Supernet(...))")
        distribute.check_global_batch(_batch_size(splits.train), self.strategy)
        self.traces = collections.Counter()
        self.steps_per_epoch = config.steps_per_epoch or max(
            1, splits.train_size // _batch_size(splits.train))
        total_steps = self.steps_per_epoch * config.epochs
        with self.strategy.scope():
            schedule = keras.optimizers.schedules.CosineDecay(config.weight_lr, total_steps)
            self.weight_optimizer = SampledPathSGD(
                l2=config.weight_decay, learning_rate=schedule, momentum=config.momentum,
                nesterov=True)
            self.arch_optimizer = keras.optimizers.Adam(
                config.arch_lr, beta_1=config.arch_beta1, beta_2=config.arch_beta2, epsilon=1e-8)
            # Build optimiser slots eagerly: a variable created inside a traced step forces a
            # retrace.
            self.weight_optimizer.build(self.net.weight_variables)
            self.arch_optimizer.build(self.net.alphas)
            # Made in the scope: in cross-replica context one stream (the shared sample), in
            # replica context a different stream per replica (per-replica sampling).
            self.rng = tf.random.Generator.from_seed(config.seed)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # Per example: each replica divides its sum by the global batch (compute_average_loss).
        self.loss_fn = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing, reduction=None)
        self.checkpoint = tf.train.Checkpoint(
            supernet=self.net, weight_optimizer=self.weight_optimizer,
            arch_optimizer=self.arch_optimizer, rng=self.rng, epoch=self.epoch, step=self.step)
        # Every worker resumes from the chief's checkpoints; only the chief writes there.
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=2)
        self._write_dir = None
        # No autograph: the steps hold no data-dependent Python control flow, and converting the
        # supernet's code on every trace costs seconds.
        self._compiled_weight_step = tf.function(self._weight_step, autograph=False)
        self.arch_step = tf.function(self._arch_step, autograph=False)
        self._sample_every_path = tf.fill([len(self.net.mixed_ops), 2], -1)
        self._bn_statistics = [v for v in self.net.non_trainable_variables
                               if v.name in ("moving_mean", "moving_variance")]
        self._sync_fn = None
        self._accuracy_fn = None
        if reinforce is not None and not distribute.is_default(self.strategy):
            # REINFORCE samples on the host (the same seeded samples on every worker); its
            # accuracies must come from the global validation batch, so that every worker
            # computes the same rewards and the same policy gradient.
            reinforce._evaluate = self.global_accuracy
        self.epoch_callbacks = []
        self.derived_model = self.results = None  # set by write_results

    # --- the two steps -----------------------------------------------------------------------
    def _cross_entropy(self, labels, logits):
        """This replica's share of the global-batch mean cross-entropy (the mean itself on one
        device): the replicas' values sum to the mean over the global batch."""
        onehot = tf.one_hot(labels, self.splits.num_classes)
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

    def weight_step(self, images, labels, fixed=None):
        """One weight step on a training batch; `fixed` (default: none) as in `_weight_step`.
        Returns the loss and the accuracy of the paths it trained."""
        fixed = self._sample_every_path if fixed is None else tf.constant(fixed, tf.int32)
        return self._compiled_weight_step(images, labels, fixed)

    def _weight_step(self, images, labels, fixed):
        """`fixed`: int32 [num_searchable, 2], the paths to train, or -1 where a path is to be
        sampled (the seed phase fixes them all; a tensor, so that it does not retrace)."""
        self.traces["weight"] += 1  # Python side effect: counts traces, not calls
        if self.config.path_sampling == "shared":
            paths = tf.where(fixed >= 0, fixed, self.sample_paths())  # in cross-replica context
            args = (images, labels, paths)
        else:
            args = (images, labels, None, fixed)
        loss, accuracy = self.strategy.run(self._weight_replica_step, args=args)
        self.step.assign_add(1)
        return self._sum(loss), self._sum(accuracy)

    def _weight_replica_step(self, images, labels, paths=None, fixed=None):
        shared = paths is not None
        if paths is None:
            paths = tf.where(fixed >= 0, fixed, self.sample_paths())  # this replica's stream
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
        with tf.GradientTape() as tape:
            tape.watch(gates)
            logits = self.net(images, mode="two", paths=pairs, gates=gates, training=True)
            ce = self._cross_entropy(labels, logits)
        gate_grads = tape.gradient(ce, gates)  # this replica's share of dCE/dg
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
                expected_ms = self.objective.expected(alphas, pairs)
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

    # --- the loop ----------------------------------------------------------------------------
    def restore(self):
        """Resumes from the latest checkpoint, if any; returns the epoch to start from."""
        directory = self.manager.directory
        if tf.train.latest_checkpoint(directory) != self.manager.latest_checkpoint:
            # written since this search was made (another process, another strategy)
            self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def run(self):
        start = self.restore()
        distribute.check_workers_agree(self.strategy, start, "the epoch to resume from")
        if start and self.verbose:
            print(f"resuming from {self.manager.latest_checkpoint} at epoch {start}", flush=True)
        # The chief writes OUTPUT_DIR; the other workers save to a scratch folder (removed).
        self._write_dir = distribute.scratch_dir(self.output_dir, self.strategy)
        saver = self.manager if self.chief else tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self._write_dir, "checkpoints"), max_to_keep=1)
        writer = tf.summary.create_file_writer(os.path.join(self.output_dir, "tensorboard")) \
            if self.chief else None
        train = iter(distribute.distribute_dataset(self.strategy, self.splits.train))
        valid = iter(distribute.distribute_dataset(self.strategy, self.splits.valid))
        try:
            for epoch in range(start, self.config.epochs):
                record = self._run_epoch(epoch, train, valid)
                self.sync_batchnorm_statistics()
                self.epoch.assign(epoch + 1)
                saver.save(checkpoint_number=epoch + 1)
                if self.chief:
                    self._write_epoch_outputs(record, writer)
                for callback in self.epoch_callbacks:
                    callback(self, record)
            if self.chief:
                self.write_results()
        finally:
            distribute.cleanup(self._write_dir, self.output_dir)
        return self.derive()

    def derive(self):
        """The derived architecture: the argmax of alpha per block, or (`derive=\"target\"`, with
        a latency objective) the most probable network whose table latency is within
        +-derive_tolerance of the target, which is the argmax whenever that is."""
        if self.objective is not None and self.config.derive == "target":
            indices = self.objective.most_probable_near_target(self.net.probabilities(),
                                                               self.config.derive_tolerance)
            if indices is not None:
                return self.net.derive(indices=indices)
        return self.net.derive()

    def _run_epoch(self, epoch, train, valid):
        phase = self.config.phase(epoch)
        searching = phase == "search"
        fixed = growth.seed_paths(self.net) if phase == "seed" else None
        # A live bar on a terminal; in logs (no TTY) one summary line per epoch instead.
        bar_mode = (1 if sys.stdout.isatty() else 2) if self.verbose else 0
        bar = keras.utils.Progbar(self.steps_per_epoch, verbose=bar_mode,
                                  stateful_metrics=["loss", "acc", "valid_acc"])
        totals = collections.defaultdict(list)
        started = time.time()
        if self.verbose:
            print(f"epoch {epoch + 1}/{self.config.epochs} ({phase})", flush=True)
        for i in range(self.steps_per_epoch):
            loss, acc = self.weight_step(*next(train), fixed=fixed)
            totals["loss"].append(float(loss))
            totals["acc"].append(float(acc))
            if searching and (i + 1) % self.config.arch_update_every == 0:
                self._architecture_update(next(valid), totals)
            bar.update(i + 1, [("loss", np.mean(totals["loss"])), ("acc", np.mean(totals["acc"]))]
                       + ([("valid_acc", np.mean(totals["valid_acc"]))] if totals["valid_acc"] else []))
        record = {"epoch": epoch + 1, "step": int(self.step.numpy()), "phase": phase,
                  "seconds": round(time.time() - started, 2),
                  "train_loss": float(np.mean(totals["loss"])),
                  "train_acc": float(np.mean(totals["acc"]))}
        if totals["valid_acc"]:
            record["valid_acc"] = float(np.mean(totals["valid_acc"]))
            record["arch_loss"] = float(np.mean(totals["arch_loss"]))
        record.update(self.architecture_summary())
        if self.verbose:
            print(_epoch_line(record, self.config.epochs), flush=True)
        if phase == "seed" and epoch + 1 == self.config.seed_epochs:
            self._grow()
        return record

    def _grow(self):
        """The end of the seed phase: every candidate starts as the trained seed's function
        (before the checkpoint of this epoch, so a resumed search finds the grown supernet)."""
        grown, left = growth.grow(self.net)
        if self.verbose:
            count = sum(len(ops) for ops in grown.values())
            print(f"grew {count} candidate paths from the seed network"
                  + (f"; left as initialised (not growable from the seed): "
                     f"{sum(len(ops) for ops in left.values())}" if left else ""), flush=True)

    def _architecture_update(self, batch, totals):
        if self.config.arch_algo == "reinforce":
            stats = self.reinforce.step(*batch)
            totals["valid_acc"].append(stats["accuracy"])
            totals["arch_loss"].append(-stats["reward"])
        else:
            ce, acc, _ = self.arch_step(*batch)
            totals["valid_acc"].append(float(acc))
            totals["arch_loss"].append(float(ce))

    def architecture_summary(self):
        probs = self.net.probabilities()
        entropy = [float(-(p * np.log(np.maximum(p, 1e-12))).sum()) for p in probs]
        derived = self.derive()
        summary = {"alpha_entropy": float(np.mean(entropy)), "derived_ops": derived.ops,
                   "probs": [[round(float(x), 5) for x in p] for p in probs]}
        if self.objective is not None:
            summary["expected_latency_ms"] = float(self.objective.expected(self.net.alphas))
            summary["derived_latency_ms"] = float(self.objective.table.predict(derived))
            summary["target_ms"] = float(self.objective.target_ms)
        return summary

    def _write_epoch_outputs(self, record, writer):
        with writer.as_default(step=record["epoch"]):
            for key in ("train_loss", "train_acc", "valid_acc", "arch_loss", "alpha_entropy",
                        "expected_latency_ms", "derived_latency_ms", "target_ms"):
                if key in record:
                    tf.summary.scalar(key, record[key])
            for slot, (m, p) in enumerate(zip(self.net.mixed_ops, record["probs"])):
                for op, value in zip(m.candidates, p):
                    tf.summary.scalar(f"probs/block{m.block_index}/{op}", value)
        writer.flush()
        with open(os.path.join(self.output_dir, "history.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        self.derive().save(os.path.join(self.output_dir, "arch.json"))

    def history(self):
        path = os.path.join(self.output_dir, "history.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def write_results(self):
        """arch.json, probabilities.png, and results.json: the supernet's last-epoch training
        accuracy (sampled paths) next to the derived network's test accuracy with the
        supernet's weights (batch norm re-estimated; `self.derived_model` keeps that model)."""
        arch = self.derive()
        arch.save(os.path.join(self.output_dir, "arch.json"))
        history = self.history()
        plots.probabilities_png(self.net, history,
                                os.path.join(self.output_dir, "probabilities.png"))
        self.derived_model = derived.derived_network(self.net, self.splits.train, arch)
        results = {"ops": arch.ops,
                   "supernet_train_acc": history[-1]["train_acc"] if history else None,
                   "derived_test_acc": derived.accuracy(self.derived_model, self.splits.test),
                   "test_images": self.splits.test_size}
        if self.objective is not None:
            results.update(derived_predicted_ms=float(self.objective.table.predict(arch)),
                           target_ms=float(self.objective.target_ms))
        io_utils.write_json(os.path.join(self.output_dir, "results.json"), results)
        if self.verbose:
            print(f"supernet: train accuracy {_percent(results['supernet_train_acc'])} "
                  f"(sampled paths, last epoch); derived network with the supernet's weights: "
                  f"test accuracy {_percent(results['derived_test_acc'])} "
                  f"({results['test_images']} images, batch norm re-estimated)", flush=True)
        self.results = results
        return arch


def _percent(value):
    return "-" if value is None else f"{100 * value:.2f}%"


def _batch_size(dataset):
    return int(dataset.element_spec[0].shape[0] or 1)


def _epoch_line(record, epochs):
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record['train_loss']:.4f}",
             f"acc {record['train_acc']:.4f}"]
    if "valid_acc" in record:
        parts.append(f"valid_acc {record['valid_acc']:.4f}")
    parts.append(f"entropy {record['alpha_entropy']:.3f}")
    if "expected_latency_ms" in record:
        parts.append(f"E[LAT] {record['expected_latency_ms']:.3f}ms")
        parts.append(f"derived {record['derived_latency_ms']:.3f}ms")
        if "target_ms" in record:
            parts.append(f"target {record['target_ms']:.3f}ms")
    parts.append(f"{record['seconds']:.1f}s")
    return "  ".join(parts)
