"""The bi-level search loop: weights on the training split, alpha on a held-out validation split.

Per batch: one weight step (binary gates: one sampled path per block); every K batches, after the
warm-up epochs, one architecture step (two sampled paths, binary-gate gradient + rescale, or
REINFORCE). The steps themselves are `proxyless_tf.search_steps`, what the search writes is
`proxyless_tf.search_outputs`; this module is the epoch loop, its phases, checkpoints and resume.

Each epoch ends with its outputs (history, arch.json) and then its checkpoint
(tf.train.CheckpointManager). Rerunning the same command resumes from the last checkpoint with the
same weights, alpha, optimiser state and sampling RNG, and the data streams fast-forwarded to
where they were: a search killed at any point (mid-epoch, mid-save) and rerun ends as the
uninterrupted one would (bit for bit under `--deterministic`).
"""

import collections
import dataclasses
import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from proxyless_tf import derived, distribute, growth, search_outputs
from proxyless_tf.errors import UsageError
from proxyless_tf.optimizers import SampledPathSGD, weight_schedule
from proxyless_tf.search_steps import SearchSteps


@dataclasses.dataclass
class SearchConfig:
    epochs: int = 120
    warmup_epochs: int = 40
    steps_per_epoch: int = 0          # 0: one pass over the training split
    weight_lr: float = 0.025
    search_weight_lr: float = 0.0     # > 0: the search phase's weights restart a cosine from
                                      # this rate (the official code's search schedule; needs
                                      # warm-up epochs); 0: one cosine over all epochs, the
                                      # search at its tail
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
    seed_candidate: str = "smallest"  # the seed: "smallest" grows exactly into the others;
                                      # "widest", "largest" or an op ("k3e6") is cropped into
                                      # those smaller than it (growth.py); those need
                                      # seed_epochs > 0
    skip_rate: float = 0.5            # seed and warm-up phases: each block that can be skipped
                                      # is skipped with this probability per weight step
                                      # (stochastic depth, so that the supernet scores shallow
                                      # networks fairly; 0: zero is one candidate of the random
                                      # paths, never in the seed phase)
    zero_pairs: str = "gate"          # architecture step, a sampled pair holding `zero`:
                                      # "gate" judges it by dCE/dg as the paper (Eq. 4), "loss"
                                      # by its two cross-entropies (the rest of the
                                      # network run once more from that block)
    checkpoint_seconds: float = 0.0   # an epoch's end saves a checkpoint when this long has
                                      # passed since the last (0: every epoch); the last epoch
                                      # of every phase always saves
    search_seed: int = None           # reseeds the path sampler when the search phase starts,
                                      # so that searches resumed from one warm-up's checkpoint
                                      # differ (None: the stream of `seed` goes on)

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


class Diverged(UsageError):
    """A non-finite loss or alpha: the search stops before it checkpoints anything of it."""


class BilevelSearch:
    """`strategy`: a tf.distribute strategy whose scope the supernet was built in (None: the
    default one-device strategy). The optimisers, the RNG and the counters are made in it here.
    `reinforce`: for arch_algo="reinforce", a callable `make(evaluate)` returning the
    `proxyless_tf.reinforce.Reinforce` updater; `evaluate` is None on one device, or the
    global-batch accuracy a strategy needs (every worker must compute the same rewards)."""

    def __init__(self, supernet, splits, config, output_dir, objective=None, reinforce=None,
                 verbose=1, strategy=None):
        if not supernet.mixed_ops:
            raise UsageError("the space has no choice in any block (one candidate everywhere, "
                             "see --candidates): nothing to search; train that network with "
                             "python -m proxyless_tf.train --arch=all:OP")
        self.net = supernet
        self.splits = splits
        self.config = config
        self.output_dir = output_dir
        self._objective = objective
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
        self.steps_per_epoch = config.steps_per_epoch or max(
            1, splits.train_size // _batch_size(splits.train))
        with self.strategy.scope():
            self._make_state(config)
            self.reinforce = None
            if config.arch_algo == "reinforce":
                self.reinforce = reinforce(None if distribute.is_default(self.strategy)
                                           else self.steps.global_accuracy)
        self.checkpoint = tf.train.Checkpoint(
            supernet=self.net, weight_optimizer=self.weight_optimizer,
            arch_optimizer=self.arch_optimizer, rng=self.rng, epoch=self.epoch, step=self.step,
            arch_batches=self.arch_batches,
            **(self.reinforce.checkpoint_items() if self.reinforce is not None else {}))
        # Every worker resumes from the chief's checkpoints; only the chief writes there.
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=2)
        self.outputs = search_outputs.SearchOutputs(output_dir, supernet)
        self.epoch_callbacks = []
        self.derived_model = self.results = self.results_at = None  # set by write_results

    def _make_state(self, config):
        schedule = weight_schedule(config.weight_lr, self.steps_per_epoch * config.epochs,
                                   self.steps_per_epoch * config.warmup_epochs,
                                   config.search_weight_lr)
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
        # validation batches used so far (architecture steps, REINFORCE updates): on resume the
        # validation stream skips them
        self.arch_batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="arch_batches")
        self.steps = SearchSteps(self.net, config, self.splits.num_classes, self.strategy,
                                 self.weight_optimizer, self.arch_optimizer, self.rng,
                                 {"step": self.step}, self._objective)

    @property
    def objective(self):
        """The latency objective (proxyless_tf.latency.LatencyObjective), or None."""
        return self._objective

    @objective.setter
    def objective(self, objective):  # before the first architecture step (it is traced in)
        self._objective = self.steps.objective = objective

    # --- the steps (proxyless_tf.search_steps), as tests and benchmarks call them -------------
    @property
    def traces(self):
        return self.steps.traces

    def weight_step(self, images, labels, fixed=None, skip_rate=0.0):
        return self.steps.weight_step(images, labels, fixed, skip_rate)

    def arch_step(self, images, labels):
        return self.steps.arch_step(images, labels)

    def sample_paths(self):
        return self.steps.sample_paths()

    def global_accuracy(self, indices, images, labels):
        return self.steps.global_accuracy(indices, images, labels)

    def sync_batchnorm_statistics(self):
        self.steps.sync_batchnorm_statistics()

    # --- the loop ----------------------------------------------------------------------------
    def restore(self):
        """Resumes from the latest checkpoint, if any; returns the epoch to start from."""
        directory = self.manager.directory
        if tf.train.latest_checkpoint(directory) != self.manager.latest_checkpoint:
            # written since this search was made (another process, another strategy)
            self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)
        if self.manager.latest_checkpoint:
            self._checkpoint_of(self.manager.latest_checkpoint).restore(
                self.manager.latest_checkpoint).assert_existing_objects_matched()
            # Adam keeps its learning rate in a variable, which the checkpoint restores: the
            # rate asked for now wins (a search resumed from a warm-up with another --arch_lr).
            self.arch_optimizer.learning_rate.assign(self.config.arch_lr)
            if self.reinforce is not None and self.reinforce.optimizer is not self.arch_optimizer:
                self.reinforce.optimizer.learning_rate.assign(self.reinforce.lr)
        return int(self.epoch.numpy())

    def _checkpoint_of(self, path):
        """The checkpoint object to restore `path` into: a REINFORCE search resumed from a
        warm-up that a gradient search saved (one warm-up shared by searches of both kinds)
        finds no REINFORCE state there and starts it afresh."""
        saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
        if self.reinforce is None or "reinforce_baseline" in saved:
            return self.checkpoint
        return tf.train.Checkpoint(**{name: getattr(self.checkpoint, name) for name in (
            "supernet", "weight_optimizer", "arch_optimizer", "rng", "epoch", "step",
            "arch_batches")})

    def _streams(self):
        """Training and validation batches from where the checkpoint left them (the datasets
        are deterministic for a seed: skipping the used batches replays the same sequence)."""
        train = self.splits.train.skip(int(self.step.numpy()))
        valid = self.splits.valid.skip(int(self.arch_batches.numpy()))
        return (iter(distribute.distribute_dataset(self.strategy, train)),
                iter(distribute.distribute_dataset(self.strategy, valid)))

    def run(self):
        start = self.restore()
        distribute.check_workers_agree(self.strategy, start, "the epoch to resume from")
        if start and self.verbose:
            print(f"resuming from {self.manager.latest_checkpoint} at epoch {start}", flush=True)
        # The chief writes OUTPUT_DIR; the other workers save to a scratch folder (removed).
        write_dir = distribute.scratch_dir(self.output_dir, self.strategy)
        saver = self.manager if self.chief else tf.train.CheckpointManager(
            self.checkpoint, os.path.join(write_dir, "checkpoints"), max_to_keep=1)
        if self.chief:
            self.outputs.keep_history_until(start)
        train, valid = self._streams()
        last_save = time.time()
        try:
            for epoch in range(start, self.config.epochs):
                record = self._run_epoch(epoch, train, valid)
                self.steps.sync_batchnorm_statistics()
                if self.chief:  # before the checkpoint: a resumed search rewrites them
                    self.outputs.write_epoch(record, self.derive())
                self.epoch.assign(epoch + 1)
                if self._checkpoint_due(epoch, time.time() - last_save):
                    saver.save(checkpoint_number=epoch + 1)
                    last_save = time.time()
                for callback in self.epoch_callbacks:
                    callback(self, record)
            if self.chief:
                self.write_results()
        finally:
            distribute.cleanup(write_dir, self.output_dir)
        return self.derive()

    def _checkpoint_due(self, epoch, since_last_save):
        """Whether the end of `epoch` saves a checkpoint: always at the end of a phase (a resumed
        search finds the grown supernet) and of the search, and always with several workers
        (they must agree: each one's clock would differ); else once `checkpoint_seconds` have
        passed since the last one. Each save takes about a second on the default job's
        supernet; its epochs take five."""
        config = self.config
        return (epoch + 1 == config.epochs or config.phase(epoch) != config.phase(epoch + 1)
                or distribute.num_workers(self.strategy) > 1
                or since_last_save >= config.checkpoint_seconds)

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
        if epoch == self.config.warmup_epochs and self.config.search_seed is not None:
            self._reseed(self.config.search_seed)
        fixed = growth.seed_paths(self.net, self.config.seed_candidate) if phase == "seed" else None
        skip_rate = 0.0 if phase == "search" else self.config.skip_rate
        weight_lr_flag = "--search_weight_lr" if phase == "search" and \
            self.config.search_weight_lr > 0 else "--weight_lr"
        # A live bar on a terminal; in logs (no TTY) one summary line per epoch instead.
        bar_mode = (1 if sys.stdout.isatty() else 2) if self.verbose else 0
        bar = keras.utils.Progbar(self.steps_per_epoch, verbose=bar_mode,
                                  stateful_metrics=["loss", "acc", "valid_acc"])
        totals = collections.defaultdict(list)
        started = time.time()
        if self.verbose:
            print(f"epoch {epoch + 1}/{self.config.epochs} ({phase})", flush=True)
        for i in range(self.steps_per_epoch):
            loss, acc = self.steps.weight_step(*next(train), fixed=fixed, skip_rate=skip_rate)
            self._check_finite(float(loss), "weight step loss", epoch, weight_lr_flag)
            totals["loss"].append(float(loss))
            totals["acc"].append(float(acc))
            if phase == "search" and (i + 1) % self.config.arch_update_every == 0:
                self._architecture_update(next(valid), totals, epoch)
            bar.update(i + 1, _bar_values(totals))
        record = {"epoch": epoch + 1, "step": int(self.step.numpy()), "phase": phase,
                  "seconds": round(time.time() - started, 2),
                  "train_loss": float(np.mean(totals["loss"])),
                  "train_acc": float(np.mean(totals["acc"]))}
        if totals["valid_acc"]:
            record["valid_acc"] = float(np.mean(totals["valid_acc"]))
            record["arch_loss"] = float(np.mean(totals["arch_loss"]))
        record.update(self.architecture_summary())
        if self.verbose:
            print(search_outputs.epoch_line(record, self.config.epochs), flush=True)
        if phase == "seed" and epoch + 1 == self.config.seed_epochs:
            self._grow()
        return record

    def _reseed(self, seed):
        """The search phase's own sampling streams (before its first step: a resumed search
        restores them from its checkpoint instead)."""
        self.rng.reset_from_seed(seed)
        if self.reinforce is not None:  # in place: the checkpoint's sampler state holds it
            self.reinforce.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state

    def _grow(self):
        """The end of the seed phase: every candidate starts from the trained seed, as its
        function or its crop (before the checkpoint of this epoch, so a resumed search finds
        the grown supernet); a seed whose channels are sorted for its crops takes its momentum
        along."""
        done = growth.grow(self.net, self.config.seed_candidate,
                           slot_of=self.weight_optimizer.momentum_slot)
        if self.verbose:
            count = {kind: sum(len(ops) for ops in by_block.values())
                     for kind, by_block in done.items()}
            print(f"grew {count['grown']} "
                  + (f"and cropped {count['cropped']} " if count["cropped"] else "")
                  + "candidate paths from the seed network"
                  + (f"; left as initialised (cannot start from the seed): {count['left']}"
                     if count["left"] else ""), flush=True)

    def _architecture_update(self, batch, totals, epoch):
        if self.config.arch_algo == "reinforce":
            stats = self.reinforce.step(*batch)
            totals["valid_acc"].append(stats["accuracy"])
            totals["arch_loss"].append(-stats["reward"])
        else:
            ce, acc, _ = self.steps.arch_step(*batch)
            self._check_finite(float(ce), "architecture step loss", epoch, "--arch_lr")
            totals["valid_acc"].append(float(acc))
            totals["arch_loss"].append(float(ce))
        self.arch_batches.assign_add(1)
        if not all(np.isfinite(a.numpy()).all() for a in self.net.alphas):
            self._check_finite(math.nan, "alpha", epoch, "--arch_lr")

    def _check_finite(self, value, what, epoch, flag):
        """The NaN guard: stops at the first non-finite value, before anything of it is written
        (the last checkpoint and outputs stay those of the last good epoch)."""
        if not math.isfinite(value):
            raise Diverged(
                f"the search diverged: {what} is {value} at epoch {epoch + 1}, step "
                f"{int(self.step.numpy())}; lower {flag} and rerun: the search resumes from "
                f"its last good checkpoint (epoch {int(self.epoch.numpy())})")

    def architecture_summary(self):
        probs = self.net.probabilities()
        entropy = [float(-(p * np.log(np.maximum(p, 1e-12))).sum()) for p in probs]
        derived_arch = self.derive()
        summary = {"alpha_entropy": float(np.mean(entropy)), "derived_ops": derived_arch.ops,
                   "probs": [[round(float(x), 5) for x in p] for p in probs]}
        if self.objective is not None:
            summary["expected_latency_ms"] = float(self.objective.expected(self.net.alphas))
            summary["derived_latency_ms"] = float(self.objective.table.predict(derived_arch))
            summary["target_ms"] = float(self.objective.target_ms)
        return summary

    def history(self):
        return self.outputs.history()

    def write_results(self):
        """arch.json, probabilities.png, and results.json: the supernet's last-epoch training
        accuracy (sampled paths) next to the derived network's test accuracy with the
        supernet's weights (batch norm re-estimated; `self.derived_model` keeps that model)."""
        arch = self.derive()
        history = self.history()
        self.derived_model = derived.derived_network(self.net, self.splits.train, arch)
        results = {"ops": arch.ops,
                   "supernet_train_acc": history[-1]["train_acc"] if history else None,
                   "derived_test_acc": derived.accuracy(self.derived_model, self.splits.test),
                   "test_images": self.splits.test_size}
        if self.objective is not None:
            results.update(derived_predicted_ms=float(self.objective.table.predict(arch)),
                           target_ms=float(self.objective.target_ms))
        self.outputs.write_results(arch, results)
        if self.verbose:
            print(search_outputs.results_line(results), flush=True)
        self.results = results
        self.results_at = time.time()  # the search command times what follows (its release)
        return arch


def _bar_values(totals):
    values = [("loss", np.mean(totals["loss"])), ("acc", np.mean(totals["acc"]))]
    if totals["valid_acc"]:
        values.append(("valid_acc", np.mean(totals["valid_acc"])))
    return values


def _batch_size(dataset):
    return int(dataset.element_spec[0].shape[0] or 1)
