"""Latency: lookup tables measured on the target runtime, prediction, validation against whole
networks, and the differentiable latency objective of the search.

    python -m proxyless_tf.latency build    --flagfile=flags/mobile.cfg --output=TABLE
    python -m proxyless_tf.latency predict  --flagfile=flags/mobile.cfg --table=TABLE --arch=A
    python -m proxyless_tf.latency validate --flagfile=flags/mobile.cfg --table=TABLE [--quick]
    python -m proxyless_tf.latency measure  --flagfile=flags/mobile.cfg [--table=TABLE] --arch=A

A table maps one key per network part to its latency statistics in milliseconds
(`count`, `mean`, `var`; tables built here add `median`, `p90` and, with --latency_quiet,
`busy`). Keys follow the official ProxylessNAS release, so its Pixel-1 table
(`mobile_trim.yaml`) loads as is:

    Conv-input:224x224x3-output:112x112x32                                     stem
    expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0   a block
    Conv_1-input:7x7x320-output:7x7x1280                                       head 1x1 conv
    Logits-input:7x7x1280-output:1000                                          pool + classifier

A network's predicted latency is the sum over its parts: stem, every block that is not `zero`
(the fixed first block included), head and classifier. `idskip` is 1 when the block keeps its
identity shortcut; the measured block then includes the residual Add. Tables built here also
hold `Overhead-invoke`, the cost of running a trivial model: each part was timed as a model of
its own, so the prediction counts that overhead once rather than once per part (it matters for
the TensorFlow runtime, hardly for TFLite).
"""

import dataclasses
import json
import math
import os
import platform
import sys
import time

if __name__ == "__main__":  # keep TensorFlow's C++ start-up chatter out of the CLI's output
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from proxyless_tf import architecture, io_utils, options  # noqa: E402  (defines the flags)
from proxyless_tf.errors import UsageError  # noqa: E402
from proxyless_tf.search_space import ZERO, parse_op  # noqa: E402

FORMAT = "proxyless_tf.latency/1"
LOSS_FORMS = ("lambda", "mul_log", "add_linear", "abs")
RUNTIMES = ("tflite", "tf_cpu", "tf_gpu")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- keys ----------------------------------------------------------------------------------
def _hwc(size, channels):
    return f"{size}x{size}x{channels}"


def stem_key(input_size, output_size, channels):
    return f"Conv-input:{_hwc(input_size, 3)}-output:{_hwc(output_size, channels)}"


def block_key(input_size, in_channels, output_size, out_channels, expand, kernel, stride, idskip):
    return (f"expanded_conv-input:{_hwc(input_size, in_channels)}-output:"
            f"{_hwc(output_size, out_channels)}-expand:{expand}-kernel:{kernel}-stride:{stride}"
            f"-idskip:{int(idskip)}")


# The cost of running a model at all (one interpreter invoke / one graph call), measured on a
# trivial model. A network is run once, its parts were each run on their own: the prediction
# adds one overhead and takes it off every part. Tables without it (the official one) are summed.
OVERHEAD_KEY = "Overhead-invoke"


def head_key(size, in_channels, out_channels):
    return f"Conv_1-input:{_hwc(size, in_channels)}-output:{_hwc(size, out_channels)}"


def logits_key(size, in_channels, num_classes):
    return f"Logits-input:{_hwc(size, in_channels)}-output:{num_classes}"


def _out(size, stride):
    return -(-size // stride)  # 'same' padding


@dataclasses.dataclass(frozen=True)
class Part:
    """One measurable piece of a network: stem, block, head (Conv_1) or classifier (Logits)."""

    kind: str
    key: str
    input_size: int
    in_channels: int
    out_channels: int
    stride: int = 1
    op: str = None

    def model(self):
        """A small Keras model of just this part, built with the project's block builder."""
        import keras
        from proxyless_tf import blocks
        inputs = keras.Input((self.input_size, self.input_size, self.in_channels))
        if self.kind == "overhead":
            x = keras.layers.ReLU(name="relu")(inputs)
        elif self.kind == "stem":
            x = blocks.stem(keras, inputs, self.out_channels, self.stride)
        elif self.kind == "block":
            x = blocks.block(keras, inputs, 1, self.op, self.out_channels, self.stride)
        elif self.kind == "head":
            x = blocks.conv_bn(keras, inputs, self.out_channels, 1, 1, "head")
        else:  # logits: what blocks.head does after its 1x1 conv
            x = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
            x = keras.layers.Dense(self.out_channels, name="classifier")(x)
        return keras.Model(inputs, x, name=self.kind)

    @property
    def weights(self):
        """Numbers this part reads from its weights per inference once the converter has folded
        batch norm into the convolutions: every kernel plus one bias per output channel."""
        cin, cout = self.in_channels, self.out_channels
        if self.kind == "overhead":
            return 0
        if self.kind == "stem":
            return 9 * cin * cout + cout
        if self.kind in ("head", "logits"):
            return cin * cout + cout
        from proxyless_tf import blocks
        return blocks.mbconv_folded_weights(cin, self.op, cout)


def block_part(input_size, in_channels, out_channels, stride, op_name):
    """The part of a block running `op_name`, or None for `zero` (it costs nothing)."""
    if op_name == ZERO:
        return None
    op = parse_op(op_name)
    idskip = stride == 1 and in_channels == out_channels
    key = block_key(input_size, in_channels, _out(input_size, stride), out_channels, op.expand,
                    op.kernel, stride, idskip)
    return Part("block", key, input_size, in_channels, out_channels, stride, op_name)


def _stem_part(input_size, channels, stride):
    out = _out(input_size, stride)
    return Part("stem", stem_key(input_size, out, channels), input_size, 3, channels, stride)


def _tail_parts(size, channels, head_channels, num_classes):
    return [Part("head", head_key(size, channels, head_channels), size, channels, head_channels),
            Part("logits", logits_key(size, head_channels, num_classes), size, head_channels,
                 num_classes)]


def arch_parts(arch):
    """Every part of a network that costs time, in order (zero blocks have none)."""
    parts = [_stem_part(arch.input_size, arch.stem_channels, arch.stem_stride)]
    size, channels = _out(arch.input_size, arch.stem_stride), arch.stem_channels
    for b in arch.blocks:
        part = block_part(size, b.in_channels, b.out_channels, b.stride, b.op)
        if part is not None:
            parts.append(part)
        size, channels = _out(size, b.stride), b.out_channels
    return parts + _tail_parts(size, channels, arch.head_channels, arch.num_classes)


def space_parts(space):
    """(fixed parts, [[part or None per candidate] per searchable position]) of a space."""
    fixed = [_stem_part(space.input_size, space.stem_channels, space.stem_stride)]
    searchable = []
    for p in space.positions():
        options = [block_part(p.input_size, p.in_channels, p.out_channels, p.stride, op)
                   for op in p.candidates]
        if p.searchable:
            searchable.append(options)
        elif options[0] is not None:
            fixed.append(options[0])
    last = space.positions()[-1]
    fixed += _tail_parts(last.output_size, last.out_channels, space.head_channels,
                         space.num_classes)
    return fixed, searchable


# --- the table -----------------------------------------------------------------------------
def resolve_table_path(path):
    """`path` as given, or relative to the repository root (so flagfiles may name shipped
    tables from any working directory)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    candidate = os.path.join(REPO_ROOT, path)
    return candidate if os.path.exists(candidate) else path


class LatencyTable:
    """Latency of network parts, in milliseconds, keyed as in the official release."""

    def __init__(self, entries, settings=None, source="latency table", stat="auto"):
        if stat not in ("auto", "mean", "median"):
            raise UsageError(f"--latency_stat={stat!r}: use auto, mean or median")
        self.entries = entries
        self.settings = dict(settings or {})
        self.source = source
        self.stat = stat
        self._check()

    def _check(self):
        where = f"latency table {self.source!r}"
        if not isinstance(self.entries, dict) or not self.entries:
            raise UsageError(f"{where} has no entries (is it a latency table?)")
        for key, entry in self.entries.items():
            if not isinstance(entry, dict):
                raise UsageError(f"{where}: entry {key!r} is not a mapping with count/mean/var")
            for field in ("mean",) + (("median",) if self.stat == "median" else ()):
                value = entry.get(field)
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not math.isfinite(value) or value < 0:
                    hint = " (the official table has only mean: use --latency_stat=mean)" \
                        if field == "median" and "median" not in entry else ""
                    raise UsageError(f"{where}: entry {key!r} has no valid {field!r} "
                                     f"(got {value!r}){hint}")

    # loading and saving
    @classmethod
    def load(cls, path, stat="auto"):
        path = resolve_table_path(path)
        if not os.path.exists(path):
            raise UsageError(f"latency table {path!r} does not exist; build one with "
                             f"`python -m proxyless_tf.latency build --flagfile=... --output={path}`")
        if path.endswith((".yaml", ".yml")):
            import yaml
            try:
                with open(path) as f:
                    data = yaml.safe_load(f)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                at = f" at line {mark.line + 1}" if mark is not None else ""
                problem = getattr(e, "problem", None) or type(e).__name__
                raise UsageError(f"latency table {path!r} is not valid YAML: {problem}{at}") from None
            except OSError as e:
                raise UsageError(f"latency table {path!r} cannot be read: {e.strerror}") from None
            return cls(data, {"source": "official yaml"}, path, stat)
        data = io_utils.read_json(path, what="latency table")
        if isinstance(data, dict) and "entries" in data:
            if data.get("format") != FORMAT:
                raise UsageError(f"latency table {path!r} has format {data.get('format')!r}, "
                                 f"expected {FORMAT!r}")
            return cls(data["entries"], data.get("settings"), path, stat)
        return cls(data, {}, path, stat)  # a bare {key: {count, mean, var}} mapping

    def to_json(self):
        return {"format": FORMAT, "settings": self.settings,
                "entries": dict(sorted(self.entries.items()))}

    def save(self, path):
        io_utils.write_json(path, self.to_json())

    # lookups
    def __contains__(self, key):
        return key in self.entries

    def ms(self, key):
        entry = self.entries.get(key)
        if entry is None:
            raise UsageError(f"latency table {self.source!r} has no entry {key!r}: it was built "
                             "for another space, resolution or number of classes; build a table "
                             "for these flags with `python -m proxyless_tf.latency build`")
        if self.stat == "mean" or (self.stat == "auto" and "median" not in entry):
            return float(entry["mean"])
        return float(entry["median"])

    @property
    def overhead_ms(self):
        return self.ms(OVERHEAD_KEY) if OVERHEAD_KEY in self.entries else 0.0

    @property
    def factor(self):
        """The calibration factor on the parts' sum (see `calibrate`), 1 for tables without a
        calibration (the official table)."""
        calibration = self.settings.get("calibration") or {}
        return float(calibration.get("factor", 1.0))

    @property
    def ms_per_mweight(self):
        """The calibration's cost of streaming a million weights from memory (see `calibrate`),
        0 for tables without one (and for calibrations made before it existed)."""
        calibration = self.settings.get("calibration") or {}
        return float(calibration.get("ms_per_mweight", 0.0))

    def breakdown(self, arch):
        """(key, ms) of every part of `arch`, then the overhead correction when the table has
        one: -(number of parts - 1) * the invoke overhead, then the calibration:
        (factor - 1) * that sum, and ms_per_mweight * the network's weights in millions."""
        parts, rows = self._summed_rows(arch)
        if self.factor != 1.0:
            total = sum(ms for _, ms in rows)
            rows.append((f"calibration x {self.factor:.4f}", (self.factor - 1.0) * total))
        if self.ms_per_mweight:
            mweights = sum(part.weights for part in parts) / 1e6
            rows.append((f"weights {mweights:.3f}M x {self.ms_per_mweight:.4f} ms/M",
                         self.ms_per_mweight * mweights))
        return rows

    def _summed_rows(self, arch):
        """(parts of `arch`, [(key, ms) of every part, then the overhead correction]); a
        network is invoked once, each part was timed in an invoke of its own."""
        parts = arch_parts(arch)
        rows = [(part.key, self.ms(part.key)) for part in parts]
        if self.overhead_ms:
            rows.append((f"{OVERHEAD_KEY} x -{len(rows) - 1}", -(len(rows) - 1) * self.overhead_ms))
        return parts, rows

    def raw_sum(self, arch):
        """The parts' sum with the overhead correction, before the calibration."""
        return float(sum(ms for _, ms in self._summed_rows(arch)[1]))

    def predict(self, arch):
        """Predicted latency of a whole network in ms (a UsageError names a missing key)."""
        return float(sum(ms for _, ms in self.breakdown(arch)))

    def covers(self, arch):
        return all(part.key in self.entries for part in arch_parts(arch))

    def space_costs(self, space):
        """(ms of the parts every network of `space` has, [np.array of ms per candidate, in
        `position.candidates` order, for every searchable position]); `zero` costs 0."""
        fixed, searchable = space_parts(space)
        overhead, factor, per_weight = self.overhead_ms, self.factor, self.ms_per_mweight / 1e6
        cost = lambda part: factor * (self.ms(part.key) - overhead) + per_weight * part.weights
        costs = [np.array([0.0 if part is None else cost(part) for part in options])
                 for options in searchable]
        return factor * overhead + float(sum(cost(part) for part in fixed)), costs


# --- measuring -----------------------------------------------------------------------------
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
    waited: float = dataclasses.field(default=0.0, compare=False)  # seconds spent on `quiet`

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise UsageError(f"--latency_runtime={self.runtime!r}: use one of {', '.join(RUNTIMES)}")
        if self.threads < 0 or self.batch < 1 or self.warmup < 0 or self.runs < 1:
            raise UsageError("--latency_threads must be >= 0, --latency_batch and --latency_runs "
                             ">= 1, --latency_warmup >= 0")

    def settings(self):
        return {"runtime": self.runtime, "threads": self.threads, "batch": self.batch,
                "warmup": self.warmup, "runs": self.runs}

    def compatible(self, settings):
        """Entries measured with other runtime/threads/batch settings must not be mixed."""
        return all(settings.get(k) == getattr(self, k) for k in ("runtime", "threads", "batch"))

    def require_compatible(self, settings, what, remedy):
        """A one-line UsageError unless `settings` (of the table `what`) match this meter's."""
        if not self.compatible(settings):
            raise UsageError(
                f"{what} was measured with runtime={settings.get('runtime')}, "
                f"threads={settings.get('threads')}, batch={settings.get('batch')}, not "
                f"runtime={self.runtime}, threads={self.threads}, batch={self.batch}; {remedy}")

    def check_available(self):
        if self.runtime == "tf_gpu" and not tf.config.list_physical_devices("GPU"):
            raise UsageError("--latency_runtime=tf_gpu needs a GPU and TensorFlow sees none on "
                             "this machine; build the table where the GPU is (a table measured "
                             "elsewhere works here with --latency_table)")

    def prepare(self, model):
        """What `time` runs: TFLite bytes for tflite, the Keras model for the TF runtimes."""
        from proxyless_tf import measure
        return measure.to_tflite(model) if self.runtime == "tflite" else model

    def time(self, prepared):
        """One timing (warm-up, then `runs` runs) of a prepared model: count, mean, var,
        median, p90 in ms.

        With `quiet` > 0 it first waits until other processes leave the CPUs at most that
        busy, and is repeated (up to 3 times) when they were busier while it ran; the share
        they used during the kept timing is stored as `busy`."""
        from proxyless_tf import measure
        if self.runtime == "tflite":
            def timing():
                return measure.latency_ms(prepared, threads=self.threads or None,
                                          warmup=self.warmup, runs=self.runs, batch=self.batch,
                                          clean=self.clean and self.threads == 1)
        else:
            device = "/GPU:0" if self.runtime == "tf_gpu" else "/CPU:0"

            def timing():
                return measure.tf_latency_ms(prepared, device=device, warmup=self.warmup,
                                             runs=self.runs, batch=self.batch)
        if self.quiet <= 0:
            return timing()
        best = None
        for _ in range(3):
            started = time.time()
            measure.wait_quiet(self.quiet, self.quiet_timeout)
            self.waited += time.time() - started
            load = measure.OtherLoad().start()
            stats = timing()
            busy = load.stop()
            if busy is None:
                return stats
            stats["busy"] = round(busy, 3)
            if best is None or busy < best["busy"]:
                best = stats
            if busy <= self.quiet:
                break
        return best

    def measure(self, model):
        """One timing of a Keras model (see `time`)."""
        return self.time(self.prepare(model))

    def measure_arch(self, arch):
        """One timing of the standalone network of `arch`."""
        return self.measure(self.network(arch))

    @staticmethod
    def network(arch):
        import keras
        from proxyless_tf import blocks
        # A plain model name: the TFLite converter fails on names like 'all:k3e3'.
        return blocks.build_network(dataclasses.replace(arch, name="network"), keras)


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


def _rounded(stats):
    return {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in stats.items()}


def host_description():
    return f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip()


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a line per item in a log."""

    def __init__(self, total, label, stream=None, enabled=True):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.start = time.time()

    def update(self, done, note=""):
        if not self.enabled:
            return
        elapsed = time.time() - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        width = 30
        filled = int(width * done / max(1, self.total))
        line = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                f"{elapsed:6.1f}s elapsed, eta {eta:6.1f}s  {note}")
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(160))
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def resolve_arch(spec, space, flag="--arch"):
    """architecture.resolve, with any failure turned into a one-line UsageError."""
    try:
        return architecture.resolve(spec, space)
    except UsageError:
        raise
    except (IndexError, KeyError, ValueError) as e:
        raise UsageError(f"{flag}={spec}: cannot be built for this space "
                         f"({type(e).__name__}: {e})") from None


OVERHEAD_PART = Part("overhead", OVERHEAD_KEY, 1, 8, 8)


def table_parts(space, references=()):
    """Every distinct part a table for `space` needs (the invoke overhead first), plus the
    reference networks' parts (references that cannot be laid out on the space, e.g. with
    other stage counts, are left out)."""
    fixed, searchable = space_parts(space)
    parts = [OVERHEAD_PART] + list(fixed) + [p for options in searchable for p in options
                                             if p is not None]
    for name in references:
        try:
            arch = resolve_arch(name, space)
        except UsageError:
            continue
        parts += arch_parts(arch)
    unique = {}
    for part in parts:
        unique.setdefault(part.key, part)
    return list(unique.values())


def calibrate(space, table, meter, count, rounds=1, seed=1000, progress=True):
    """Measures `count` networks of `space` end to end (`calibration_archs`, seeds apart from
    `validate`'s) and fits how a whole network's latency relates to its parts' sum:

        measured = factor * sum of parts + ms_per_mweight * weights (millions)

    A part timed on its own runs again and again with its weights in the CPU's caches; inside a
    network the other layers evict them, so every inference streams the whole network's
    weights from memory once. The second term is that cost. Both coefficients minimise the
    squared *relative* error over the networks (a noisy slow network must not outweigh the
    fast ones); when the fit gives the weights no positive cost, or there are fewer than 4
    networks, it is the factor alone: the median of measured / summed."""
    import keras
    archs = calibration_archs(space, count, seed)
    bar = Progress(count * (rounds + 1), "latency calibrate", enabled=progress)
    prepared = []
    for i, arch in enumerate(archs):
        prepared.append(meter.prepare(meter.network(arch)))
        keras.backend.clear_session()
        bar.update(i + 1, f"converted {arch.name}")
    timings = [[] for _ in archs]
    for r in range(rounds):
        for i in range(count):
            timings[i].append(meter.time(prepared[i]))
            bar.update((r + 1) * count + i + 1, f"round {r + 1}: {archs[i].name}")
    measured = np.array([_stat_of(combine(t), table.stat) for t in timings])
    summed = np.array([table.raw_sum(arch) for arch in archs])
    mweights = np.array([sum(p.weights for p in arch_parts(arch)) / 1e6 for arch in archs])
    factor, per_mweight = fit_calibration(summed, mweights, measured)
    fitted = factor * summed + per_mweight * mweights
    return {"factor": round(factor, 4), "ms_per_mweight": round(per_mweight, 4), "n": count,
            "seed": seed, "ratios": [round(float(r), 4) for r in measured / summed],
            "fit_error_pct": [round(float(e), 2) for e in 100 * (fitted / measured - 1)]}


def fit_calibration(summed, mweights, measured):
    """(factor, ms per million weights): see `calibrate`."""
    summed, mweights, measured = (np.asarray(a, float) for a in (summed, mweights, measured))
    if len(measured) >= 4:
        design = np.stack([summed / measured, mweights / measured], axis=1)
        (factor, per_mweight), *_ = np.linalg.lstsq(design, np.ones(len(measured)), rcond=None)
        if per_mweight > 0 and factor > 0:
            return float(factor), float(per_mweight)
    return float(np.median(measured / summed)), 0.0


def build_table(space, meter, output, references=(), rebuild=False, progress=True, rounds=1,
                calibration=0):
    """Measures every part of `space` (and of `references`) into the table at `output`.

    Each part is converted once and timed in `rounds` rounds, a pass over all parts each, so
    that slow changes of the machine's state spread over every entry (see `combine`). Entries
    already in `output` (same runtime, threads and batch) are reused; the file is rewritten
    after every entry of the last round, so an interrupted build resumes where it stopped.
    With `calibration` = N > 0, N random networks are then measured end to end to set the
    table's calibration factor (again whenever new entries were measured).
    Returns (table, number measured, number reused)."""
    import keras
    meter.check_available()
    if rounds < 1:
        raise UsageError(f"--latency_rounds must be at least 1, got {rounds}")
    entries, settings = {}, dict(meter.settings(), rounds=rounds, host=host_description())
    if os.path.exists(output) and not rebuild:
        old = LatencyTable.load(output)
        meter.require_compatible(old.settings, repr(output),
                                 "use another --output or --latency_rebuild")
        entries = dict(old.entries)
        settings = dict(old.settings, **{k: settings[k] for k in ("warmup", "runs", "rounds")})
    parts = table_parts(space, references)
    todo = [p for p in parts if p.key not in entries]
    bar = Progress(len(todo) * rounds, "latency build", enabled=progress and bool(todo))
    bar.update(0, f"{len(todo)} to measure in {rounds} round(s), "
                  f"{len(parts) - len(todo)} already in the table")
    prepared, timings = {}, {p.key: [] for p in todo}
    for r in range(rounds):
        for i, part in enumerate(todo):
            if part.key not in prepared:
                prepared[part.key] = meter.prepare(part.model())
                if (i + 1) % 20 == 0:
                    keras.backend.clear_session()  # drop graphs of parts already converted
            timings[part.key].append(meter.time(prepared[part.key]))
            if r == rounds - 1:
                entries[part.key] = _rounded(combine(timings[part.key]))
                LatencyTable(entries, settings, output).save(output)
            bar.update(r * len(todo) + i + 1, f"round {r + 1}: {part.key}")
    table = LatencyTable(entries, settings, output)
    if calibration and (todo or not settings.get("calibration")):
        settings["calibration"] = calibrate(space, table, meter, calibration, rounds,
                                            progress=progress)
        table = LatencyTable(entries, settings, output)
    if not todo or calibration:
        table.save(output)
    return table, len(todo), len(parts) - len(todo)


# --- validation ----------------------------------------------------------------------------
def random_archs(space, count, seed=0):
    rng = np.random.default_rng(seed)
    archs = []
    for i in range(count):
        ops = [p.candidates[rng.integers(len(p.candidates))] for p in space.searchable_positions()]
        archs.append(architecture.from_space(space, ops, name=f"random{i:03d}"))
    return archs


def calibration_archs(space, count, seed=1000):
    """Networks for the calibration fit that span the space: every other one uniform, as
    `random_archs`; the others each drawn from its own random preference over the candidates
    (Dirichlet, concentration 0.3), from nearly all-small to nearly all-large networks. Uniform
    networks alone all have about the same number of weights, which leaves the weights'
    coefficient confounded with a constant."""
    rng = np.random.default_rng(seed)
    positions = space.searchable_positions()
    archs = []
    for i in range(count):
        ops = []
        preference = rng.dirichlet([0.3] * len(space.candidates)) if i % 2 else None
        for p in positions:
            if preference is None:
                ops.append(p.candidates[rng.integers(len(p.candidates))])
            else:
                weights = np.array([preference[space.candidates.index(c)] for c in p.candidates])
                weights = weights if weights.sum() > 0 else np.ones(len(weights))
                ops.append(p.candidates[rng.choice(len(p.candidates), p=weights / weights.sum())])
        archs.append(architecture.from_space(space, ops, name=f"calibration{i:03d}"))
    return archs


def _stat_of(stats, table_stat):
    return stats["mean"] if table_stat == "mean" else stats["median"]


def validation_metrics(predicted, measured):
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    error = predicted - measured
    rel = np.abs(error) / measured
    r = None  # undefined for fewer than two points or a constant side
    if len(measured) > 1 and predicted.std() > 0 and measured.std() > 0:
        r = round(float(np.corrcoef(predicted, measured)[0, 1]), 4)
    return {"within_10pct": round(float(np.mean(rel <= 0.10)), 4),
            "rmse_ms": round(float(np.sqrt(np.mean(error ** 2))), 4),
            "mape": round(float(100 * np.mean(rel)), 3),
            "pearson_r": r, "n": int(len(measured))}


def validate(space, table, meter, count, output_dir, seed=0, references=architecture.REFERENCE_NAMES,
             progress=True, rounds=1):
    """Predicted vs measured latency of `count` random networks of `space` plus the reference
    networks the table covers, each converted once and timed in `rounds` rounds (a pass over
    all networks each, combined as in the table). Writes validate.json, validate.md and
    validate.png into `output_dir` and returns the metrics."""
    import keras
    meter.check_available()
    if rounds < 1:
        raise UsageError(f"--latency_rounds must be at least 1, got {rounds}")
    io_utils.ensure_writable_dir(output_dir, "--validate_dir")
    archs = random_archs(space, count, seed)
    skipped = []
    for name in references:
        try:
            arch = resolve_arch(name, space)
        except UsageError:
            skipped.append(name)
            continue
        (archs.append(arch) if table.covers(arch) else skipped.append(name))
    bar = Progress(len(archs) * (rounds + 1), "latency validate", enabled=progress)
    prepared = []
    for i, arch in enumerate(archs):
        prepared.append(meter.prepare(meter.network(arch)))
        keras.backend.clear_session()
        bar.update(i + 1, f"converted {arch.name}")
    timings = [[] for _ in archs]
    for r in range(rounds):
        for i, arch in enumerate(archs):
            timings[i].append(meter.time(prepared[i]))
            bar.update((r + 1) * len(archs) + i + 1,
                       f"round {r + 1}: {arch.name} {timings[i][-1]['median']:.3f} ms")
    rows = []
    for arch, runs in zip(archs, timings):
        predicted = table.predict(arch)
        stats = _rounded(combine(runs))
        measured = _stat_of(stats, table.stat)
        rows.append({"name": arch.name, "ops": arch.ops, "predicted_ms": round(predicted, 4),
                     "measured_ms": round(measured, 4), "measured": stats,
                     "error_pct": round(100 * (predicted - measured) / measured, 2)})
    metrics_of = lambda group: validation_metrics([r["predicted_ms"] for r in group],
                                                  [r["measured_ms"] for r in group])
    groups = {"random": rows[:count], "references": rows[count:]}
    result = {"metrics": metrics_of(rows),
              "metrics_by_group": {name: metrics_of(g) for name, g in groups.items() if g},
              "settings": dict(meter.settings(), rounds=rounds, quiet=meter.quiet),
              "host": host_description(),
              "table": table.source, "table_settings": table.settings, "stat": table.stat,
              "space": dataclasses.asdict(space), "seed": seed, "skipped_references": skipped,
              "rows": rows}
    io_utils.write_json(os.path.join(output_dir, "validate.json"), result)
    io_utils.write_text(os.path.join(output_dir, "validate.md"), _markdown(result))
    scatter_png(rows, result["metrics"], os.path.join(output_dir, "validate.png"),
                title=f"{meter.runtime}, {meter.threads} thread(s), batch {meter.batch}, "
                      f"{space.input_size}x{space.input_size}")
    return result["metrics"]


def _markdown(result):
    m = result["metrics"]
    lines = ["# Latency validation: predicted (table sum) vs measured (whole network)", "",
             f"runtime {result['settings']['runtime']}, threads {result['settings']['threads']}, "
             f"batch {result['settings']['batch']}, statistic {result['stat']}, "
             f"table `{result['table']}`", "",
             f"n = {m['n']}, within +-10%: {100 * m['within_10pct']:.1f}%, RMSE {m['rmse_ms']:.3f} ms, "
             f"MAPE {m['mape']:.2f}%, Pearson r {m['pearson_r']}", ""]
    for name, g in result.get("metrics_by_group", {}).items():
        lines += [f"- {name} networks: n = {g['n']}, within +-10%: {100 * g['within_10pct']:.1f}%, "
                  f"MAPE {g['mape']:.2f}%"]
    calibration = (result.get("table_settings") or {}).get("calibration")
    if calibration:
        lines += ["", f"table calibration: factor {calibration['factor']}, "
                      f"{calibration.get('ms_per_mweight', 0.0)} ms per million weights, from "
                      f"{calibration['n']} networks (seed {calibration['seed']})"]
    lines += ["", "| network | predicted ms | measured ms | error % |", "|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {r['predicted_ms']:.3f} | {r['measured_ms']:.3f} | "
                     f"{r['error_pct']:+.2f} |")
    return "\n".join(lines) + "\n"


def scatter_png(rows, metrics, path, title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    predicted = np.array([r["predicted_ms"] for r in rows])
    measured = np.array([r["measured_ms"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, hi = 0.9 * min(predicted.min(), measured.min()), 1.1 * max(predicted.max(), measured.max())
    line = np.array([lo, hi])
    ax.plot(line, line, "k-", lw=1, label="y = x")
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="gray", alpha=0.2, label="+-10%")
    is_ref = np.array([not r["name"].startswith("random") for r in rows])
    ax.scatter(measured[~is_ref], predicted[~is_ref], s=14, label="random architectures")
    if is_ref.any():
        ax.scatter(measured[is_ref], predicted[is_ref], s=30, marker="*", color="red",
                   label="reference networks")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency, table sum (ms)")
    ax.set_title(f"{title}\nn={metrics['n']}, within 10%: {100 * metrics['within_10pct']:.0f}%, "
                 f"MAPE {metrics['mape']:.1f}%, r={metrics['pearson_r']}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with io_utils.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


# --- the latency objective of the search ---------------------------------------------------
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
                             f"{target_ms:.4g} ms; use --latency_loss=abs or add_linear")
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

    # differentiable
    def expected(self, alphas, pairs=None):
        """E[LAT] in ms as a float32 scalar tensor, differentiable in the alphas.

        pairs None: sum_j softmax(alpha)_j * cost_j in every block. pairs (int32
        [num_searchable, 2]): over the two sampled paths only, with their probabilities
        renormalised (softmax of the pair's alphas), as the official two-path step does."""
        if len(alphas) != len(self.costs):
            raise ValueError(f"expected {len(self.costs)} alpha vectors (one per searchable "
                             f"block), got {len(alphas)}")
        if self._cost_tensors is None:
            self._cost_tensors = [tf.constant(c, tf.float32) for c in self.costs]
        total = tf.constant(self.fixed_ms, tf.float32)
        for i, (alpha, cost) in enumerate(zip(alphas, self._cost_tensors)):
            alpha = tf.convert_to_tensor(alpha, tf.float32)
            if alpha.shape[0] is not None and alpha.shape[0] != cost.shape[0]:
                raise ValueError(f"alpha {i} has {alpha.shape[0]} entries but block has "
                                 f"{cost.shape[0]} candidates {self.candidates[i]}")
            if pairs is None:
                total += tf.reduce_sum(tf.nn.softmax(alpha) * cost)
            else:  # a one-hot product rather than tf.gather, so the alpha gradient is dense
                pick = tf.one_hot(pairs[i], tf.shape(cost)[0], dtype=tf.float32)  # [2, n]
                total += tf.reduce_sum(tf.nn.softmax(tf.linalg.matvec(pick, alpha)) *
                                       tf.linalg.matvec(pick, cost))
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
        return ce + self.beta * tf.abs(e / t - 1.0)

    def describe(self):
        lo, hi = self.range_ms()
        return (f"latency: table {self.table.source}, target {self.target_ms:.4g} ms, loss "
                f"{self.form}, space range {lo:.4g}-{hi:.4g} ms")


def target_from_flags(table, space, target_ms=None, target_ratio=None, reference="mobilenet_v2"):
    if target_ms is not None and target_ratio is not None:
        raise UsageError("give either --target_ms or --target_ratio, not both")
    if target_ms is not None:
        if not target_ms > 0:
            raise UsageError(f"--target_ms must be positive, got {target_ms}")
        return float(target_ms)
    if target_ratio is None:
        raise UsageError("--latency_table needs a target: --target_ms=MS or --target_ratio=R "
                         "(R times --target_reference's predicted latency)")
    if not target_ratio > 0:
        raise UsageError(f"--target_ratio must be positive, got {target_ratio}")
    arch = resolve_arch(reference, space, "--target_reference")
    try:
        base = table.predict(arch)
    except UsageError as e:
        raise UsageError(f"--target_reference={reference}: {e} (or use --target_ms, or a "
                         "reference inside the space such as all:k3e6)") from None
    return float(target_ratio) * base


def target_flags():
    """(--target_ms, --target_ratio) as the user meant them: when the command line sets both
    (a flagfile's ratio, then --target_ms), the later one; the earlier is dropped."""
    FLAGS = options.FLAGS
    target_ms, target_ratio = FLAGS.target_ms, FLAGS.target_ratio
    if target_ms is not None and target_ratio is not None:
        last = options.set_last(("target_ms", "target_ratio"))
        target_ms = None if last == "target_ratio" else target_ms
        target_ratio = None if last == "target_ms" else target_ratio
    return target_ms, target_ratio


def objective_from_flags(space):
    """The LatencyObjective the flags configure for `space`, or None when no --latency_table
    is given."""
    FLAGS = options.FLAGS
    if not FLAGS.latency_table:
        if FLAGS.target_ms is not None or FLAGS.target_ratio is not None:
            raise UsageError("--target_ms/--target_ratio need --latency_table")
        return None
    table = LatencyTable.load(FLAGS.latency_table, stat=FLAGS.latency_stat)
    target = target_from_flags(table, space, *target_flags(), FLAGS.target_reference)
    objective = LatencyObjective(table, space, target, FLAGS.latency_loss, FLAGS.latency_lambda,
                                 FLAGS.latency_a, FLAGS.latency_b, FLAGS.latency_beta)
    lo, hi = objective.range_ms()
    if not lo <= target <= hi:
        from absl import logging
        logging.warning("latency target %.4g ms is outside the space's range %.4g-%.4g ms",
                        target, lo, hi)
    return objective


def meter_from_flags():
    FLAGS = options.FLAGS
    return Meter(FLAGS.latency_runtime, FLAGS.latency_threads, FLAGS.latency_batch,
                 FLAGS.latency_warmup, FLAGS.latency_runs, FLAGS.latency_clean,
                 FLAGS.latency_quiet, FLAGS.latency_quiet_timeout)


# --- command line --------------------------------------------------------------------------
USAGE = "usage: python -m proxyless_tf.latency build|calibrate|predict|validate|measure [--flags]"


def _space(FLAGS):
    return options.space_from_flags(num_classes=FLAGS.latency_num_classes)


def _describe_calibration(table):
    return f"factor {table.factor:.4f}, {table.ms_per_mweight:.4f} ms per million weights"


def _configure_tf_threads(meter):
    if meter.runtime != "tflite" and meter.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(meter.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass


def main(argv):
    from absl import logging
    FLAGS = options.FLAGS
    logging.set_verbosity(logging.WARNING)  # keep the converter's chatter out of the console
    if len(argv) != 2 or argv[1] not in ("build", "calibrate", "predict", "validate", "measure"):
        raise UsageError(USAGE)
    command = argv[1]
    space = _space(FLAGS)
    if command == "measure":  # one network end to end, next to its prediction if a table is set
        if not FLAGS.arch:
            raise UsageError("latency measure needs --arch=ARCH.json, a reference name or all:OP")
        arch = resolve_arch(FLAGS.arch, space)
        meter = meter_from_flags()
        meter.check_available()
        _configure_tf_threads(meter)
        stats = meter.measure_arch(arch)
        result = {"arch": FLAGS.arch, "measured_ms": round(stats["median"], 4),
                  "measured": stats}
        if FLAGS.latency_table:
            table = LatencyTable.load(FLAGS.latency_table, stat=FLAGS.latency_stat)
            result["measured_ms"] = round(_stat_of(stats, table.stat), 4)
            result["predicted_ms"] = round(table.predict(arch), 4)
            result["error_pct"] = round(100 * (result["predicted_ms"] - result["measured_ms"])
                                        / result["measured_ms"], 2)
            if FLAGS.target_ms is not None or FLAGS.target_ratio is not None:
                target = target_from_flags(table, space, *target_flags(),
                                           FLAGS.target_reference)
                result["target_ms"] = round(target, 4)
                for what in ("predicted", "measured"):
                    result[f"{what}_vs_target"] = round(result[f"{what}_ms"] / target, 4)
        print(json.dumps(result))
        return
    if command == "build":
        if not FLAGS.output:
            raise UsageError("latency build needs --output=TABLE.json")
        meter = meter_from_flags()
        _configure_tf_threads(meter)
        started = time.time()
        table, measured, reused = build_table(space, meter, FLAGS.output,
                                              [r for r in FLAGS.latency_references if r],
                                              FLAGS.latency_rebuild, rounds=FLAGS.latency_rounds,
                                              calibration=FLAGS.latency_calibrate)
        waited = f", {meter.waited:.1f}s of it waiting for quiet CPUs" if meter.quiet > 0 else ""
        factor = f", calibration {_describe_calibration(table)}" if table.factor != 1.0 else ""
        print(f"{FLAGS.output}: {len(table.entries)} entries ({measured} measured, {reused} "
              f"reused){factor} in {time.time() - started:.1f}s{waited}")
        return
    if not FLAGS.latency_table:
        raise UsageError(f"latency {command} needs --table=TABLE (or --latency_table)")
    table = LatencyTable.load(FLAGS.latency_table, stat=FLAGS.latency_stat)
    if command == "calibrate":  # a new calibration for a table, its parts as they are
        meter = meter_from_flags()
        _configure_tf_threads(meter)
        meter.require_compatible(table.settings, f"--table={FLAGS.latency_table}",
                                 "give the flags it was built with")
        if FLAGS.latency_calibrate < 1:
            raise UsageError(f"--latency_calibrate must be at least 1, got {FLAGS.latency_calibrate}")
        missing = [p.key for p in table_parts(space) if p.key not in table.entries]
        if missing:
            raise UsageError(f"--table={FLAGS.latency_table} has no entry {missing[0]!r} of the "
                             "flags' space; build it first")
        started = time.time()
        settings = dict(table.settings, calibration=calibrate(
            space, table, meter, FLAGS.latency_calibrate, FLAGS.latency_rounds))
        table = LatencyTable(table.entries, settings, FLAGS.latency_table, table.stat)
        table.save(FLAGS.latency_table)
        print(f"{FLAGS.latency_table}: calibration {_describe_calibration(table)} from "
              f"{FLAGS.latency_calibrate} networks in {time.time() - started:.1f}s")
        return
    if command == "predict":
        if not FLAGS.arch:
            raise UsageError("latency predict needs --arch=ARCH.json, a reference name or all:OP")
        arch = resolve_arch(FLAGS.arch, space)
        for key, ms in table.breakdown(arch):
            print(f"{ms:10.4f}  {key}")
        print(f"{table.predict(arch):.4f}")
        return
    meter = meter_from_flags()
    _configure_tf_threads(meter)
    count, rounds = FLAGS.validate_count, FLAGS.latency_rounds
    if FLAGS.quick:
        count, rounds = min(count, 8), 1
        meter.runs, meter.warmup = min(meter.runs, 20), min(meter.warmup, 5)
    if count < 1:
        raise UsageError(f"--validate_count must be at least 1, got {count}")
    started = time.time()
    metrics = validate(space, table, meter, count, FLAGS.validate_dir, FLAGS.seed,
                       rounds=rounds)
    waited = f", {meter.waited:.1f}s of it waiting for quiet CPUs" if meter.quiet > 0 else ""
    print(f"wrote {FLAGS.validate_dir}/validate.json, validate.md, validate.png "
          f"in {time.time() - started:.1f}s{waited}")
    print(json.dumps(metrics))


if __name__ == "__main__":
    from absl import app

    from proxyless_tf.errors import exit_on_usage_error
    app.run(exit_on_usage_error(main))
