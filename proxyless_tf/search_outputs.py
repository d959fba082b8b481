"""What a search leaves in its output folder, written atomically (a reader, or a search killed
mid-write, never leaves a half-written file):

    history.jsonl      one JSON line per epoch (losses, accuracies, entropy, E[LAT], probabilities)
    tensorboard/       the same as TensorBoard scalars, with per-block path probabilities
    arch.json          the derived architecture, rewritten every epoch
    probabilities.png  path probability per block and op, and the derived ops' over the epochs
    results.json       the supernet's last-epoch accuracy next to the derived network's test
                       accuracy with the supernet's weights
    phases.json        (the search command) wall seconds per phase of the job
"""

import json
import os
import time

import tensorflow as tf

from proxyless_tf import io_utils, plots

SCALARS = ("train_loss", "train_acc", "valid_acc", "arch_loss", "alpha_entropy",
           "expected_latency_ms", "derived_latency_ms", "target_ms")


class SearchOutputs:

    def __init__(self, output_dir, net):
        self.output_dir = output_dir
        self.net = net
        self._writer = None

    def path(self, name):
        return os.path.join(self.output_dir, name)

    # --- per epoch ------------------------------------------------------------------------
    def write_epoch(self, record, arch):
        """The epoch's record (history and TensorBoard) and the architecture derived now."""
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.path("tensorboard"))
        with self._writer.as_default(step=record["epoch"]):
            for key in SCALARS:
                if key in record:
                    tf.summary.scalar(key, record[key])
            for m, probs in zip(self.net.mixed_ops, record["probs"]):
                for op, value in zip(m.candidates, probs):
                    tf.summary.scalar(f"probs/block{m.block_index}/{op}", value)
        self._writer.flush()
        history = [h for h in self.history() if h["epoch"] < record["epoch"]] + [record]
        self._write_history(history)
        arch.save(self.path("arch.json"))

    def history(self):
        if not os.path.exists(self.path("history.jsonl")):
            return []
        with open(self.path("history.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def keep_history_until(self, epoch):
        """Drops the records of epochs after `epoch` (a resumed search recomputes them: the
        history is written before the epoch's checkpoint, so a search killed in between has
        one record more than its checkpoint)."""
        history = self.history()
        if any(h["epoch"] > epoch for h in history):
            self._write_history([h for h in history if h["epoch"] <= epoch])

    def _write_history(self, history):
        io_utils.write_text(self.path("history.jsonl"),
                            "".join(json.dumps(h) + "\n" for h in history))

    # --- at the end -------------------------------------------------------------------------
    def write_results(self, arch, results):
        arch.save(self.path("arch.json"))
        plots.probabilities_png(self.net, self.history(), self.path("probabilities.png"),
                                derived_ops=[b.op for b in arch.blocks if b.searchable])
        io_utils.write_json(self.path("results.json"), results)


def epoch_line(record, epochs):
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


def results_line(results):
    """The line a search prints at the end about the supernet and the derived network."""
    percent = lambda value: "-" if value is None else f"{100 * value:.2f}%"
    return (f"supernet: train accuracy {percent(results['supernet_train_acc'])} (sampled paths, "
            f"last epoch); derived network with the supernet's weights: test accuracy "
            f"{percent(results['derived_test_acc'])} ({results['test_images']} images, batch "
            f"norm re-estimated)")


class PhaseClock:
    """Wall seconds per phase of a job (setup, latency check, seed, warmup, search, results,
    release, export), so a user sees where the time goes and no pause passes without a word."""

    def __init__(self, started=None):
        self.seconds = {}
        self._at = time.time() if started is None else started

    def lap(self, phase, until=None):
        """Adds the time since the last lap (up to `until`, a time.time()) to `phase`."""
        now = time.time() if until is None else until
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._at
        self._at = now
        return self.seconds[phase]

    def total_s(self):
        return sum(self.seconds.values())

    def line(self):
        parts = ", ".join(f"{phase} {s:.0f} s" for phase, s in self.seconds.items())
        return f"time: {parts}; total {self.total_s():.0f} s"

    def write(self, path):
        rounded = {phase: round(s, 1) for phase, s in self.seconds.items()}
        io_utils.write_json(path, dict(rounded, total=round(self.total_s(), 1)))
