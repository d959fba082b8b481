"""How latency is measured: the runtime (LiteRT, or TensorFlow on CPU/GPU), its threads, the
batch and the repetitions, and how timings taken in several rounds become one entry."""

import contextlib
import dataclasses
import importlib.util
import time

import numpy as np

from proxyless_tf.errors import UsageError
from proxyless_tf.latency.progress import progress_bar
from proxyless_tf.latency.table import (QUANTIZATION_SETTING, require_quantization,
                                        table_quantization)

RUNTIMES = ("tflite", "tf_cpu", "tf_gpu")


@dataclasses.dataclass
class Meter:
    """How latency is measured: the runtime, its threads, the batch and the repetitions."""

    runtime: str = "tflite"
    threads: int = 1
    batch: int = 1
    warmup: int = 10
    runs: int = 50
    clean: bool = True         # tflite, 1 thread: drop runs during which the thread was preempted
    quiet: float = 0.0         # > 0: first wait until the CPUs are at most this busy
    quiet_timeout: float = 60.0
    quantization: str = "none"  # the TFLite format timed: none (float32), float16, dynamic, int8
    waited: float = dataclasses.field(default=0.0, compare=False)  # seconds spent on `quiet`

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise UsageError(f"--latency_runtime={self.runtime!r}: use one of {', '.join(RUNTIMES)}")
        if self.threads < 0 or self.batch < 1 or self.warmup < 0 or self.runs < 1:
            raise UsageError("--latency_threads must be >= 0, --latency_batch and --latency_runs "
                             ">= 1, --latency_warmup >= 0")
        from proxyless_tf.quantize import check_mode
        check_mode(self.quantization, "--latency_quantization")
        if self.quantization != "none" and self.runtime != "tflite":
            raise UsageError(f"--latency_quantization={self.quantization} times TFLite files: it "
                             f"needs --latency_runtime=tflite, not {self.runtime}")

    def settings(self):
        return {"runtime": self.runtime, "threads": self.threads, "batch": self.batch,
                "warmup": self.warmup, "runs": self.runs, "quantization": self.quantization}

    def describe(self):
        quantized = "" if self.quantization == "none" else f", {self.quantization}"
        return f"{self.runtime}{quantized}, {self.threads} thread(s), batch {self.batch}"

    def compatible(self, settings):
        """Entries measured with other runtime/threads/batch settings or in another format
        (quantization; none where a table records none) must not be mixed."""
        return all(settings.get(k) == getattr(self, k) for k in ("runtime", "threads", "batch")) \
            and table_quantization(settings) == self.quantization

    def require_compatible(self, settings, what, remedy, setting=QUANTIZATION_SETTING):
        """A one-line UsageError unless `settings` (of the table `what`) match this meter's
        (`setting` words a format, `require_quantization`)."""
        require_quantization(settings, self.quantization, what, setting)
        if not self.compatible(settings):
            raise UsageError(
                f"{what} was measured with runtime={settings.get('runtime')}, "
                f"threads={settings.get('threads')}, batch={settings.get('batch')}, not "
                f"runtime={self.runtime}, threads={self.threads}, batch={self.batch}; {remedy}")

    def check_available(self):
        """A one-line UsageError when this machine cannot run the runtime."""
        if self.runtime == "tflite" and importlib.util.find_spec("ai_edge_litert") is None:
            raise UsageError("--latency_runtime=tflite times networks with LiteRT, and its "
                             "package ai_edge_litert is not installed (`pip install -r "
                             "requirements.txt`)")
        if self.runtime == "tf_gpu":
            import tensorflow as tf
            if not tf.config.list_physical_devices("GPU"):
                raise UsageError("--latency_runtime=tf_gpu needs a GPU and TensorFlow sees none "
                                 "on this machine; build the table where the GPU is (a table "
                                 "measured elsewhere works here with --latency_table)")

    def prepare(self, model, interior=False):
        """What `time` runs: TFLite bytes for tflite (converted as `quantization` ships,
        `quantize.convert_for_timing`), the Keras model for the TF runtimes. `interior`: a part
        of a network (a table entry), which in int8 keeps int8 input and output, as it runs
        inside an int8 network."""
        from proxyless_tf.quantize import convert_for_timing
        return convert_for_timing(model, self.quantization, interior) \
            if self.runtime == "tflite" else model

    def prepare_each(self, models, interior=False):
        """`prepare` of each model that `models` (an iterable, e.g. a generator) builds, yielded
        one at a time, all `building_for_timing`; each one's graph is dropped once converted."""
        import keras
        with building_for_timing():
            for i, model in enumerate(models):
                prepared = self.prepare(model, interior)
                keras.backend.clear_session(free_memory=(i + 1) % 20 == 0)
                keras.config.set_dtype_policy("float32")  # clearing the session reset it
                yield prepared

    def prepare_all(self, models, interior=False, tick=None):
        """The list of `prepare_each`; `tick(i)` after the i-th."""
        prepared = []
        for converted in self.prepare_each(models, interior):
            prepared.append(converted)
            if tick:
                tick(len(prepared))
        return prepared

    def _timing(self, prepared):
        from proxyless_tf import measure
        if self.runtime == "tflite":
            return measure.latency_ms(prepared, threads=self.threads or None, warmup=self.warmup,
                                      runs=self.runs, batch=self.batch,
                                      clean=self.clean and self.threads == 1)
        device = "/GPU:0" if self.runtime == "tf_gpu" else "/CPU:0"
        return measure.tf_latency_ms(prepared, device=device, warmup=self.warmup, runs=self.runs,
                                     batch=self.batch)

    def time(self, prepared):
        """One timing (warm-up, then `runs` runs) of a prepared model: count, mean, var,
        median, p90 in ms.

        With `quiet` > 0 it first waits until other processes leave the CPUs at most that
        busy, and is repeated (up to 3 times) when they were busier while it ran; the share
        they used during the kept timing is stored as `busy`."""
        from proxyless_tf import measure
        if self.quiet <= 0:
            return self._timing(prepared)
        best = None
        for _ in range(3):
            started = time.time()
            measure.wait_quiet(self.quiet, self.quiet_timeout)
            self.waited += time.time() - started
            load = measure.OtherLoad().start()
            stats = self._timing(prepared)
            busy = load.stop()
            if busy is None:
                return stats
            stats["busy"] = round(busy, 3)
            if best is None or busy < best["busy"]:
                best = stats
            if busy <= self.quiet:
                break
        return best

    def other_load(self):
        """A probe of the share of the CPUs other processes take while this meter times
        (`measure.OtherLoad`: `start()`, then `stop()` -> a share or None): measurements taken
        while the machine was busy are not kept for later runs."""
        from proxyless_tf import measure
        return measure.OtherLoad()

    def measure(self, model):
        """One timing of a Keras model (see `time`)."""
        return self.time(self.prepare(model))

    def measure_arch(self, arch):
        """One timing of the standalone network of `arch`, built `building_for_timing` (the
        session is not cleared: this runs between a search's steps)."""
        with building_for_timing():
            prepared = self.prepare(self.network(arch))
        return self.time(prepared)

    @staticmethod
    def network(arch):
        import keras
        from proxyless_tf import blocks
        # A plain model name: the TFLite converter fails on names like 'all:k3e3'.
        return blocks.build_network(dataclasses.replace(arch, name="network"), keras)


@contextlib.contextmanager
def building_for_timing():
    """Networks built here to be timed are built in float32 (the format timed is the meter's
    quantization, not the one a model trains in, e.g. mixed_float16) and leave no trace in the
    caller's Keras state: its random state (building draws initial weights from it, and how
    many are built depends on caches, which a seeded run must not see) and its dtype policy
    (which clearing the session resets) are put back afterwards."""
    import keras
    from proxyless_tf import reproducible
    policy = keras.config.dtype_policy()
    try:
        with reproducible.random_state_kept():
            keras.config.set_dtype_policy("float32")
            yield
    finally:
        keras.config.set_dtype_policy(policy)


def time_networks(meter, archs, rounds=1, title="", progress=True):
    """Every network of `archs` converted once, then timed in `rounds` rounds (a pass over all
    of them each, so that slow changes of the machine's state spread over all networks).
    Returns one list of `rounds` timings per network; a progress bar counts conversions and
    timings."""
    bar = progress_bar(len(archs) * (rounds + 1), title, enabled=progress, unit="network")
    prepared = meter.prepare_all((meter.network(arch) for arch in archs), tick=bar.update)
    timings = [[] for _ in archs]
    for r in range(rounds):
        for i in range(len(archs)):
            timings[i].append(meter.time(prepared[i]))
            bar.update((r + 1) * len(archs) + i + 1)
    return timings


def combine(timings):
    """One entry from timings taken in several rounds (passes over all models, minutes
    apart). The median is the median of the quietest round, i.e. the lowest of the rounds'
    medians: a shared machine only ever adds time, the median inside a round removes short
    spikes and the choice of round removes stretches spent under another job's load. Mean,
    variance and count are over all runs; `rounds` says how many."""
    if len(timings) == 1:
        return dict(timings[0])
    counts = np.array([t["count"] for t in timings], float)
    means = np.array([t["mean"] for t in timings])
    mean = float((counts * means).sum() / counts.sum())
    second = float((counts * (np.array([t["var"] for t in timings]) + means ** 2)).sum()
                   / counts.sum())
    entry = {"count": int(counts.sum()), "mean": mean, "var": max(0.0, second - mean ** 2),
             "median": float(min(t["median"] for t in timings)),
             "p90": float(min(t["p90"] for t in timings)), "rounds": len(timings),
             "round_medians": [float(f"{t['median']:.6g}") for t in timings]}
    for key, reduce in (("preempted", sum), ("busy", max)):
        values = [t[key] for t in timings if key in t]
        if values:
            entry[key] = reduce(values)
    return entry


def rounded(stats):
    return {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in stats.items()}


def stat_of(stats, table_stat):
    """The statistic of a timing that compares with a table's entries (`--latency_stat`)."""
    return stats["mean"] if table_stat == "mean" else stats["median"]


def configure_tf_threads(meter):
    """The TensorFlow runtimes measure with --latency_threads intra-op threads."""
    if meter.runtime != "tflite" and meter.threads:
        import tensorflow as tf
        try:
            tf.config.threading.set_intra_op_parallelism_threads(meter.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
