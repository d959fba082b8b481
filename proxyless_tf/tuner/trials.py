"""Running trials: `ProxylessTuner` runs one architecture per trial with an evaluator, either
`TrainEvaluator` (a short training with `proxyless_tf.train`) or `SupernetEvaluator` (a finished
supernet's weights, no training), and reports its accuracy and latency."""

import csv
import os

import keras_tuner
import numpy as np

from proxyless_tf import architecture
from proxyless_tf.errors import UsageError
from proxyless_tf.tuner.scoring import LATENCY_METRIC
from proxyless_tf.tuner.space import (architecture_from_values, probabilities_from_architecture,
                                      searchable_ops)


class ProxylessTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """Runs trials: `evaluate(arch, trial_dir) -> accuracy` (see `TrainEvaluator`,
    `SupernetEvaluator`), plus `latency(arch) -> ms` when given (a table, or a measurement),
    reported as the `latency_ms` metric."""

    def __init__(self, oracle, hypermodel, evaluate, latency=None, announce=False, **kwargs):
        self.evaluate = evaluate
        self.latency = latency
        self.announce = announce  # print a line per trial run here (a worker's log)
        super().__init__(oracle, hypermodel, **kwargs)

    def _populate_initial_space(self):
        # The space is known without building a network (BaseTuner builds one to find it).
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def run_trial(self, trial, *args, **kwargs):
        arch = architecture_from_values(self.hypermodel.space, trial.hyperparameters.values,
                                        name=f"trial_{trial.trial_id}")
        metrics = {self.oracle.objective.name: float(
            self.evaluate(arch, self.get_trial_dir(trial.trial_id)))}
        if self.latency is not None:
            metrics[LATENCY_METRIC] = float(self.latency(arch))
        if self.announce:
            ops = " ".join(searchable_ops(self.hypermodel.space, trial.hyperparameters.values))
            print(f"{self.tuner_id}: trial {trial.trial_id} [{ops}]: " +
                  ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)
        return metrics


class TrainEvaluator:
    """Trains the candidate for a short budget with the retraining code
    (`proxyless_tf.train.train`) in TRIAL_DIR/train and returns its validation accuracy after
    the last epoch. An interrupted trial resumes from its checkpoint when keras-tuner retries it."""

    def __init__(self, splits, config, dataset=None, data_dir=None):
        self.splits = splits
        self.config = config
        self.dataset, self.data_dir = dataset, data_dir

    def __call__(self, arch, trial_dir):
        import keras
        from proxyless_tf import train
        keras.utils.clear_session()
        output_dir = os.path.join(trial_dir, "train")
        train.train(arch, self.splits, output_dir, self.config, dataset=self.dataset,
                    data_dir=self.data_dir)
        return last_validation_accuracy(os.path.join(output_dir, "history.csv"))


def last_validation_accuracy(history_csv):
    with open(history_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows or not rows[-1].get("val_accuracy"):
        raise RuntimeError(f"{history_csv} has no val_accuracy (is the validation split smaller "
                           "than a batch?)")
    return float(rows[-1]["val_accuracy"])


class SupernetEvaluator:
    """Scores a candidate with the weights of a finished supernet search (no training): the
    supernet with its paths fixed to the candidate's ops, on the validation split."""

    def __init__(self, space, search_dir, splits, batch_size):
        import tensorflow as tf
        from proxyless_tf.supernet import Supernet
        latest = tf.train.latest_checkpoint(os.path.join(search_dir, "checkpoints"))
        derived = os.path.join(search_dir, "arch.json")
        if latest is None or not os.path.exists(derived):
            raise UsageError(f"--tune_supernet={search_dir!r} has no checkpoints/ and arch.json "
                             "of a search")
        # Checkpoints match variables by position, and blocks of equal shapes would restore
        # silently into another space: the search's arch.json must describe this space, with
        # probabilities over these candidates.
        probs = probabilities_from_architecture(space, architecture.Architecture.load(derived),
                                                f"--tune_supernet={search_dir}: {derived}")
        self.net = Supernet(space)
        try:
            tf.train.Checkpoint(supernet=self.net).restore(latest) \
                .expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise UsageError(f"--tune_supernet={search_dir!r} does not match the space of these "
                             f"flags (give the search's flags): {str(e).splitlines()[0]}") from None
        # The search writes arch.json with softmax(alpha) right after each checkpoint: the
        # restored alphas must give those probabilities, or the checkpoint did not hold the
        # searchable blocks (and their weights would be left at random values).
        restored = self.net.probabilities()
        if any(not np.allclose(got, want, atol=1e-4) for got, want in zip(restored, probs)):
            raise UsageError(f"--tune_supernet={search_dir!r}: the alphas in {latest} do not give "
                             f"the probabilities of {derived}; the checkpoint does not hold the "
                             "supernet's searchable blocks, or arch.json is from another point "
                             "of the search")
        self.valid = splits.valid
        self.steps = max(1, splits.valid_size // batch_size)

        def accuracy(images, labels, paths):
            logits = self.net(images, mode="binary", paths=paths, training=False)
            hits = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(labels, tf.int32))
            return tf.reduce_sum(tf.cast(hits, tf.float32)), tf.cast(tf.size(labels), tf.float32)

        self._accuracy = tf.function(accuracy)

    def __call__(self, arch, trial_dir):
        paths = self.net.paths_for(arch)
        hits = total = 0.0
        for images, labels in self.valid.take(self.steps):
            h, n = self._accuracy(images, labels, paths)
            hits, total = hits + float(h), total + float(n)
        return hits / total
