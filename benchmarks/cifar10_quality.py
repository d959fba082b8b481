"""Does the search find better networks at equal latency? A CIFAR-10 benchmark (issue 7).

On the 32x32 space, for the mobile target (TFLite run by LiteRT, 1 thread, batch 1):
  1. a latency table of the space, built with the library into OUTPUT_DIR (reused on reruns);
     the target T = --target_ratio x the table's prediction for --target_reference (all:k3e6,
     the MobileNetV2-like network of the space), or --target_ms;
  2. a search (python -m proxyless_tf.search) with that table, T and the absolute latency loss;
  3. --random_count random architectures of the space whose predicted latency is within
     +-random_tolerance of T (rejection sampling on the table, seeded), and the baseline all:k3e6
     (every block k3e6, nothing skipped) at its own latency;
  4. every network timed end to end with the same LiteRT meter, then retrained with ONE fixed
     recipe (python -m proxyless_tf.train; OUTPUT_DIR/recipe.cfg) for --seeds seeds and
     evaluated on the test split.

Writes OUTPUT_DIR/results.json, results.md (the table), latency_accuracy.png, nets/NAME/
(arch.json, latency.json, seedS/ = the train run) and search/. Rerunning the same command skips
whatever is finished (an interrupted run continues). The last line printed is a JSON summary.

    python benchmarks/cifar10_quality.py            # the full benchmark (docs/benchmarks.md)
    python benchmarks/cifar10_quality.py --quick    # the same code path, tiny, < 10 minutes
"""

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # `python benchmarks/cifar10_quality.py` from anywhere

if __name__ == "__main__":  # keep TensorFlow's C++ start-up chatter out of the console
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

from proxyless_tf import io_utils, options  # noqa: E402  (defines the shared flags)
from proxyless_tf.errors import UsageError  # noqa: E402

FLAGS = options.FLAGS
TFDS_DIR = os.path.join(os.path.dirname(REPO), "shared", "datasets", "tfds")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _define(define, name, *args, **kwargs):
    # Guarded: a test imports this module into a process where the flags may exist already.
    if name not in FLAGS:
        define(name, *args, **kwargs)


_define(flags.DEFINE_integer, "seeds", 1,
        "Retrain every network with seeds 0..N-1 (accuracy mean and spread over them).")
_define(flags.DEFINE_integer, "random_count", 5,
        "Random architectures whose predicted latency is within --random_tolerance of T.")
_define(flags.DEFINE_float, "random_tolerance", 0.05,
        "Relative window around T for the random architectures (0.05: +-5%).")
_define(flags.DEFINE_enum, "stop_after", None, ["table", "search", "latency"],
        "Stop after this step (e.g. look at the searched network's latency before the hour of "
        "retraining); rerunning without it continues from there.")

# The full benchmark's scale: the flags/mobile.cfg space (width 0.5, depths 2,2,2,2,2,1, 32x32)
# on a 10k-image CIFAR-10 subset: about 70 minutes on the 2-core VM, up to twice that under
# other jobs' load (docs/benchmarks.md).
# Applied as flag defaults in __main__ only, so importing this module (tests) changes nothing.
FULL_DEFAULTS = dict(
    dataset="cifar10", data_dir=TFDS_DIR, space="small_input", input_size=32,
    width_multiplier=0.5, depths=["2", "2", "2", "2", "2", "1"], batch_size=128,
    max_train_examples=10000, valid_fraction=0.1,
    # search: ~470 architecture steps instead of the paper's tens of thousands, so alpha takes
    # 100x the paper's step (1e-3): the probabilities must become peaked within the budget, or
    # the argmax network is far cheaper than the expected latency the loss holds at T (with
    # arch_lr=0.01 a 6-epoch search derived the space's near-cheapest network, 0.51 T)
    epochs=8, warmup_epochs=2, arch_update_every=1, weight_lr=0.05, arch_lr=0.1,
    # the one retraining recipe
    train_epochs=6, train_warmup_epochs=1, train_lr=0.05,
    target_ratio=0.8, target_reference="all:k3e6", latency_loss="abs",
    output_dir="runs/cifar10_quality")

# --quick: the same steps on a tiny space and a 1,000-image subset (flags given explicitly win).
QUICK = dict(
    width_multiplier=0.25, depths=["1", "1", "1", "1", "1", "1"], batch_size=64,
    max_train_examples=1000, epochs=2, warmup_epochs=1, steps_per_epoch=8,
    train_epochs=2, train_warmup_epochs=1,
    latency_rounds=1, latency_runs=20, latency_warmup=5, latency_calibrate=2,
    output_dir="runs/cifar10_quality_quick")

# Flags the subprocesses get through OUTPUT_DIR/recipe.cfg: the space, the data, the search
# and the retraining recipe. The same file for every network is what "one recipe" means.
RECIPE_FLAGS = (
    "dataset", "data_dir", "download", "space", "input_size", "width_multiplier", "widths",
    "depths", "strides", "candidates", "dropout", "batch_size", "valid_fraction",
    "max_train_examples", "epochs", "warmup_epochs", "steps_per_epoch", "weight_lr",
    "weight_decay", "momentum", "label_smoothing", "arch_lr", "arch_beta1", "arch_beta2",
    "arch_init_std", "arch_update_every", "arch_algo", "train_epochs", "train_warmup_epochs",
    "train_steps_per_epoch", "train_lr")

# Rough costs on the 2-vCPU development VM (shared), for the estimate printed at the start; the
# ETA then rescales each kind of step by the times observed. Training one image costs about
# 2 ms plus 0.17 ms per million multiply-adds of the network (all:k3e6 at width 0.5, 26 MMACs:
# 6.4 ms at batch 128); a search step about 1.15x that, an architecture step 1.45x.
MS_PER_IMAGE, MS_PER_IMAGE_PER_MMAC = 2.0, 0.17
PROCESS_START_S = 15.0   # importing TensorFlow, loading data, tracing
SUPERNET_TRACE_S = 90.0  # the search's two steps are traced once each (~30 s on tiny spaces)
PART_S = 2.0             # converting and timing one latency-table part (per round, roughly)


# --- settings -------------------------------------------------------------------------------
def apply_quick():
    for name, value in QUICK.items():
        if not FLAGS[name].present:
            FLAGS[name].value = value


def check_flags():
    """Every bad flag is a one-line error before anything long starts."""
    from proxyless_tf import search, train
    if FLAGS.seeds < 1 or FLAGS.random_count < 1:
        raise UsageError("--seeds and --random_count must be at least 1")
    if not 0 < FLAGS.random_tolerance < 1:
        raise UsageError(f"--random_tolerance must be in (0, 1), got {FLAGS.random_tolerance}")
    if FLAGS.latency_runtime != "tflite" or FLAGS.latency_threads != 1:
        print("note: the benchmark's target is LiteRT with 1 thread; measuring "
              f"{FLAGS.latency_runtime} with {FLAGS.latency_threads} thread(s) instead", flush=True)
    search.config_from_flags()
    train.config_from_flags()
    space = options.space_from_flags()
    from proxyless_tf import data  # the dataset must be there before the table takes minutes
    data.load(FLAGS.dataset, space.input_size, FLAGS.batch_size, FLAGS.data_dir, FLAGS.download,
              FLAGS.valid_fraction, FLAGS.seed, FLAGS.max_train_examples)
    if FLAGS.dataset != "digits" and FLAGS.max_train_examples and \
            FLAGS.max_train_examples < 10000:
        print(f"note: --max_train_examples={FLAGS.max_train_examples} also caps the test split "
              "(proxyless_tf.data); accuracies are over that many test images", flush=True)
    return space


def recipe_text():
    lines = [FLAGS[name].serialize() for name in RECIPE_FLAGS]
    return "# the benchmark's one recipe (search + retraining); written by cifar10_quality.py\n" + \
        "\n".join(line for line in lines if line) + "\n"


def check_or_write_recipe(out):
    """A rerun must continue the same benchmark: other scale flags go to another directory."""
    path = os.path.join(out, "recipe.cfg")
    text = recipe_text()
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if old != text:
            new = sorted(set(text.splitlines()) - set(old.splitlines())) or ["(none)"]
            was = sorted(set(old.splitlines()) - set(text.splitlines())) or ["(none)"]
            raise UsageError(f"{out} holds a benchmark with other settings ({new[0]}, was "
                             f"{was[0]}); use another --output_dir or the same flags")
    else:
        io_utils.write_text(path, text)
    return path


# --- progress and ETA -----------------------------------------------------------------------
class Progress:
    """Console lines with elapsed time and an ETA: the sum of the remaining steps' estimates,
    each kind rescaled by observed / estimated time of the steps of that kind done so far."""

    def __init__(self):
        self.started = time.time()
        self.plan = {}          # key -> (kind, estimated seconds), for steps still to do
        self.ratios = {}        # kind -> [observed / estimated]

    def add(self, key, kind, seconds):
        self.plan[key] = (kind, max(1.0, seconds))

    def finish(self, key, seconds):
        if key not in self.plan:  # nothing was left to do (a resumed run)
            return
        kind, estimate = self.plan.pop(key)
        self.ratios.setdefault(kind, []).append(seconds / estimate)

    def skip(self, key):
        self.plan.pop(key, None)

    def eta_s(self):
        scale = lambda kind: (sum(self.ratios[kind]) / len(self.ratios[kind])
                              if self.ratios.get(kind) else 1.0)
        return sum(est * scale(kind) for kind, est in self.plan.values())

    def say(self, message):
        print(f"[{_minutes(time.time() - self.started)}] {message}  (ETA {_minutes(self.eta_s())})",
              flush=True)


def _minutes(seconds):
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def train_image_ms(macs):
    return MS_PER_IMAGE + MS_PER_IMAGE_PER_MMAC * macs / 1e6


# --- networks -------------------------------------------------------------------------------
@dataclasses.dataclass
class Net:
    name: str
    kind: str   # searched, random or baseline
    arch: object

    def dir(self, out):
        return os.path.join(out, "nets", self.name)


def searchable_ops(arch):
    return [b.op for b in arch.blocks if b.searchable]


def count_macs(model):
    """Multiply-accumulates of one image through the Keras model, from its layers: a conv or
    depthwise conv costs (output pixels) x (its kernel's size), a dense layer its kernel's size
    (batch norm folds into the convs at export; ReLU, add and pooling are not counted)."""
    import keras
    import numpy as np
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            height, width = layer.output.shape[1:3]
            total += int(height) * int(width) * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def size_of(arch):
    """(trainable parameters, MACs) of the standalone network."""
    import keras
    from proxyless_tf import blocks, train
    model = blocks.build_network(train.keras_safe(arch))
    result = blocks.count_params(model), count_macs(model)
    keras.backend.clear_session()
    return result


def sample_near_target(space, table, target_ms, count, tolerance=0.05, seed=0,
                       batch=256, max_tries=200000):
    """`count` distinct random architectures of `space` (uniform op per searchable block, as
    latency.random_archs) whose predicted latency is within +-tolerance of target_ms, by
    rejection sampling. Deterministic for a seed, and a larger count extends a smaller one."""
    import numpy as np
    from proxyless_tf import architecture, latency
    rng = np.random.default_rng(seed)
    found, seen, tried = [], set(), 0
    while len(found) < count:
        if tried >= max_tries:
            lo, hi = latency.LatencyObjective(table, space, target_ms, "abs").range_ms()
            raise UsageError(f"only {len(found)} of {max_tries} random architectures are within "
                             f"{100 * tolerance:g}% of {target_ms:.4g} ms (space range "
                             f"{lo:.4g}-{hi:.4g} ms): choose another target")
        for arch in latency.random_archs(space, batch, seed=int(rng.integers(2 ** 31))):
            tried += 1
            ops = searchable_ops(arch)
            if tuple(ops) in seen or abs(table.predict(arch) / target_ms - 1) > tolerance:
                continue
            seen.add(tuple(ops))
            found.append(architecture.from_space(space, ops, name=f"random{len(found) + 1}"))
            if len(found) == count:
                break
    return found


# --- steps ----------------------------------------------------------------------------------
def latency_table(space, out, meter, progress):
    """--latency_table when given, else OUTPUT_DIR/latency_table.json built (or completed) with
    the library; an interrupted build resumes."""
    from proxyless_tf import latency
    if FLAGS.latency_table:
        progress.skip("table")
        table = latency.LatencyTable.load(FLAGS.latency_table, stat=FLAGS.latency_stat)
        return table, table.source
    path = os.path.join(out, "latency_table.json")
    started = time.time()
    progress.say(f"latency table {path} ({FLAGS.latency_rounds} round(s), reusing entries "
                 "already measured)")
    table, measured, reused = latency.build_table(
        space, meter, path, references=(), rounds=FLAGS.latency_rounds,
        calibration=FLAGS.latency_calibrate)
    progress.finish("table", time.time() - started)
    progress.say(f"latency table: {measured} parts measured, {reused} reused, calibration "
                 f"factor {table.factor:.4f}")
    table = latency.LatencyTable(table.entries, table.settings, path, FLAGS.latency_stat)
    return table, path


def target_of(table, space):
    from proxyless_tf import latency
    ratio = FLAGS.target_ratio if FLAGS["target_ratio"].present or FLAGS.target_ms is None \
        else None
    target = latency.target_from_flags(table, space, FLAGS.target_ms, ratio,
                                       FLAGS.target_reference)
    lo, hi = latency.LatencyObjective(table, space, target, "abs").range_ms()
    if not lo < target < hi:
        raise UsageError(f"the target {target:.4g} ms is outside the space's range "
                         f"{lo:.4g}-{hi:.4g} ms (table {table.source})")
    return target


def check_target(out, target):
    """The target is part of what a rerun must continue."""
    path = os.path.join(out, "target.json")
    if os.path.exists(path):
        old = io_utils.read_json(path, what="target file")["target_ms"]
        if abs(old - target) > 1e-9 * max(1.0, target):
            raise UsageError(f"{out} was run with target {old:.6g} ms, now {target:.6g} ms; use "
                             "another --output_dir")
    else:
        io_utils.write_json(path, {"target_ms": target})


def run_logged(module, args, log_path, echo):
    """`python -m module args` (it inherits our niceness and working directory); its output goes
    to log_path, the lines `echo` selects also to the console. A usage error of the child is
    ours; any other failure stops the benchmark with the log's path."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1",  # live echo
               PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    command = [sys.executable, "-m", module, *args]
    errors = []
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in process.stdout:
            log.write(line)
            log.flush()  # so that `tail -f` on the log follows the run
            if line.startswith("error:"):
                errors.append(line.strip()[len("error:"):].strip())
            if echo(line):
                plain = ANSI.sub("", line).rstrip()  # Keras colours its progress bar
                print(f"      {plain[-150:]}", flush=True)
        status = process.wait()
    if status == 2 and errors:
        raise UsageError(f"{module}: {errors[-1]}")
    if status:
        sys.exit(f"error: {module} failed with exit status {status}; see {log_path}")


def search_estimate_s(space_macs):
    images = FLAGS.max_train_examples or 45000
    steps = FLAGS.steps_per_epoch or max(1, images // FLAGS.batch_size)
    searching = FLAGS.epochs - FLAGS.warmup_epochs
    per_step = FLAGS.batch_size * train_image_ms(space_macs) / 1e3
    arch_steps = searching * steps / FLAGS.arch_update_every
    return PROCESS_START_S + SUPERNET_TRACE_S + per_step * (1.15 * FLAGS.epochs * steps
                                                            + 1.45 * arch_steps)


def run_search(out, table_path, target, recipe, progress):
    """The search through its command line; nets/searched/arch.json marks it finished (the
    search itself resumes from its checkpoints when interrupted)."""
    from proxyless_tf import architecture
    net_dir = os.path.join(out, "nets", "searched")
    path = os.path.join(net_dir, "arch.json")
    if os.path.exists(path):
        progress.skip("search")
        progress.say(f"search: done before ({path})")
        return architecture.Architecture.load(path)
    search_dir = os.path.join(out, "search")
    os.makedirs(net_dir, exist_ok=True)
    args = [f"--flagfile={recipe}", f"--output_dir={search_dir}", f"--seed={FLAGS.seed}",
            f"--latency_table={table_path}", f"--latency_stat={FLAGS.latency_stat}",
            f"--target_ms={target!r}", f"--latency_loss={FLAGS.latency_loss}",
            f"--latency_beta={FLAGS.latency_beta}"]
    progress.say(f"search: {FLAGS.epochs} epochs ({FLAGS.warmup_epochs} warm-up), target "
                 f"{target:.4f} ms, loss {FLAGS.latency_loss}; log {search_dir}.log")
    started = time.time()
    run_logged("proxyless_tf.search", args, f"{search_dir}.log",
               lambda line: (line.startswith("epoch ") and "loss" in line)
               or line.startswith("derived architecture"))
    progress.finish("search", time.time() - started)
    arch = architecture.Architecture.load(os.path.join(search_dir, "arch.json"))
    arch = dataclasses.replace(arch, name="searched")
    arch.save(path)
    return arch


def report_searched(arch, table, target, progress):
    """Says at once whether the derived network is near T: if it is not, the hour of
    retraining compares it at another latency (the reading must say so)."""
    predicted = table.predict(arch)
    verdict = "within" if abs(predicted / target - 1) <= 0.10 else "OUTSIDE"
    progress.say(f"searched network {short_ops(searchable_ops(arch))}: predicted "
                 f"{predicted:.4f} ms = {predicted / target:.3f} T ({verdict} +-10% of T)")
    return predicted


def sample_randoms(space, table, target, out, progress):
    """The random networks, sampled once and kept in nets/randomI/arch.json."""
    from proxyless_tf import architecture
    paths = [os.path.join(out, "nets", f"random{i + 1}", "arch.json")
             for i in range(FLAGS.random_count)]
    if all(os.path.exists(p) for p in paths):
        return [architecture.Architecture.load(p) for p in paths]
    archs = sample_near_target(space, table, target, FLAGS.random_count,
                               FLAGS.random_tolerance, seed=FLAGS.seed)
    for arch, path in zip(archs, paths):
        if os.path.exists(path) and architecture.Architecture.load(path).ops != arch.ops:
            raise UsageError(f"{path} is not the sample of this seed and target; use another "
                             "--output_dir")
        arch.save(path)
    progress.say(f"sampled {len(archs)} random architectures within "
                 f"{100 * FLAGS.random_tolerance:g}% of {target:.4f} ms (seed {FLAGS.seed})")
    return archs


def baseline_arch(space, out):
    from proxyless_tf import architecture
    path = os.path.join(out, "nets", "baseline", "arch.json")
    arch = dataclasses.replace(architecture.resolve("all:k3e6", space), name="baseline")
    arch.save(path)
    return arch


def measure_latencies(nets, out, meter, stat, progress):
    """Each network still without nets/NAME/latency.json converted once and timed in
    --latency_rounds rounds, a pass over all of them each (as `latency validate` does), so that
    a change of the machine's load spreads over every network; the quietest round's median
    is kept (latency.combine), like the table's entries."""
    import keras
    from proxyless_tf import latency
    todo = [n for n in nets if not os.path.exists(os.path.join(n.dir(out), "latency.json"))]
    if not todo:
        progress.skip("latency")
        return
    started = time.time()
    progress.say(f"measuring {len(todo)} network(s) with LiteRT ({meter.threads} thread(s), "
                 f"batch {meter.batch}, {FLAGS.latency_rounds} round(s) of {meter.runs} runs)")
    prepared = []
    for net in todo:
        prepared.append(meter.prepare(meter.network(net.arch)))
        keras.backend.clear_session()
    timings = [[] for _ in todo]
    for _ in range(FLAGS.latency_rounds):
        for i, tflite in enumerate(prepared):
            timings[i].append(meter.time(tflite))
    for net, runs in zip(todo, timings):
        stats = latency.combine(runs)
        measured = stats["mean"] if stat == "mean" else stats["median"]
        io_utils.write_json(os.path.join(net.dir(out), "latency.json"),
                            {"measured_ms": measured, "stats": stats,
                             "meter": dict(meter.settings(), rounds=FLAGS.latency_rounds)})
    progress.finish("latency", time.time() - started)


def retrain(net, seed, out, recipe, progress):
    """One network, one seed, through `python -m proxyless_tf.train` (it resumes from its own
    checkpoint when interrupted); nets/NAME/seedS/results.json marks it finished."""
    run_dir = os.path.join(net.dir(out), f"seed{seed}")
    results = os.path.join(run_dir, "results.json")
    key = f"train {net.name} seed {seed}"
    if os.path.exists(results):
        progress.skip(key)
        return io_utils.read_json(results)
    progress.say(f"retraining {net.name} ({net.kind}), seed {seed}: {FLAGS.train_epochs} epochs")
    started = time.time()
    args = [f"--flagfile={recipe}", f"--arch={os.path.join(net.dir(out), 'arch.json')}",
            f"--train_output_dir={run_dir}", f"--seed={seed}"]
    run_logged("proxyless_tf.train", args, os.path.join(net.dir(out), f"train_seed{seed}.log"),
               lambda line: "val_accuracy" in line or line.startswith("test accuracy"))
    progress.finish(key, time.time() - started)
    return io_utils.read_json(results)


# --- results --------------------------------------------------------------------------------
def short_ops(ops):
    """k3e6 -> 36, zero -> --: a network's searchable choices in a table cell."""
    return " ".join("--" if op == "zero" else op[1:].replace("e", "") for op in ops)


def measured_ms(net, out):
    return io_utils.read_json(os.path.join(net.dir(out), "latency.json"))["measured_ms"]


def net_row(net, table, target, out, runs, baseline_ms):
    """One network's line of the results. `measured_vs_baseline` is drift-free: the table and
    these timings are taken at different times, and a busier machine slows every network
    alike, so this ratio (against --target_ratio) still shows where a network sits."""
    import numpy as np
    params, macs = size_of(net.arch)
    measured = io_utils.read_json(os.path.join(net.dir(out), "latency.json"))
    accs = [r["test_accuracy"] for r in runs]
    return {
        "name": net.name, "kind": net.kind,
        "ops": searchable_ops(net.arch),
        "params": params, "macs": macs, "predicted_ms": round(table.predict(net.arch), 4),
        "measured_ms": round(measured["measured_ms"], 4),
        "measured_vs_target": round(measured["measured_ms"] / target, 4),
        "measured_vs_baseline": round(measured["measured_ms"] / baseline_ms, 4),
        "latency": measured["stats"], "seeds": [r["seed"] for r in runs],
        "test_accuracy": accs, "acc_mean": float(np.mean(accs)),
        "acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
        "test_examples": runs[0]["test_examples"], "train_examples": runs[0]["train_examples"],
        "train_seconds": [r["train_seconds_this_run"] for r in runs]}


def summary(rows, target, wall_s):
    import numpy as np
    by_kind = lambda kind: [r for r in rows if r["kind"] == kind]
    searched, baseline, randoms = by_kind("searched")[0], by_kind("baseline")[0], by_kind("random")
    random_accs = [r["acc_mean"] for r in randoms]
    return {
        "target_ms": round(target, 4),
        "searched_predicted_ms": searched["predicted_ms"],
        "searched_measured_ms": searched["measured_ms"],
        "searched_within_10pct": bool(abs(searched["measured_vs_target"] - 1) <= 0.10),
        "searched_vs_baseline_measured": searched["measured_vs_baseline"],
        "searched_acc": round(searched["acc_mean"], 4),
        "random_acc_mean": round(float(np.mean(random_accs)), 4),
        "random_acc_max": round(float(np.max(random_accs)), 4),
        "random_beaten": int(sum(searched["acc_mean"] > a for a in random_accs)),
        "random_count": len(randoms),
        "baseline_acc": round(baseline["acc_mean"], 4),
        "baseline_measured_ms": baseline["measured_ms"],
        "seeds": len(searched["test_accuracy"]), "quick": bool(FLAGS.quick),
        "wall_s": round(wall_s, 1)}


def markdown(rows, summary_, target):
    lines = [f"Target T = {target:.3f} ms (LiteRT, {FLAGS.latency_threads} thread, batch "
             f"{FLAGS.latency_batch}); ops per searchable block: kernel+expand (36 = k3e6), "
             "-- = skipped.", "",
             "| network | ops | params | MMACs | predicted ms | measured ms | measured / T | "
             "measured / baseline | test accuracy % | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spread = f" +- {100 * r['acc_std']:.2f}" if r["acc_std"] is not None else ""
        lines.append(f"| {r['name']} | `{short_ops(r['ops'])}` | {r['params']:,} | "
                     f"{r['macs'] / 1e6:.2f} | {r['predicted_ms']:.3f} | {r['measured_ms']:.3f} | "
                     f"{r['measured_vs_target']:.3f} | {r['measured_vs_baseline']:.3f} | "
                     f"{100 * r['acc_mean']:.2f}{spread} | "
                     f"{len(r['test_accuracy'])} |")
    lines += ["", f"Test accuracy on {rows[0]['test_examples']:,} test images after training on "
              f"{rows[0]['train_examples']:,} images; spread = standard deviation over seeds. "
              "measured / baseline: against the all:k3e6 baseline timed in the same rounds; "
              "unlike measured / T it does not move when the machine runs faster or slower than "
              "when the table was built.",
              "", "```", json.dumps(summary_), "```"]
    return "\n".join(lines) + "\n"


def scatter_png(rows, target, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    styles = {"random": dict(marker="o", color="tab:blue", label="random (predicted within "
                             f"{100 * FLAGS.random_tolerance:g}% of T)"),
              "baseline": dict(marker="s", color="tab:green", label="baseline all:k3e6"),
              "searched": dict(marker="*", color="tab:red", s=180, label="searched")}
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    ax.axvspan(0.9 * target, 1.1 * target, color="gray", alpha=0.15, label="T +-10%")
    ax.axvline(target, color="gray", lw=1, ls="--", label=f"T = {target:.3f} ms")
    for kind, style in styles.items():
        pts = [r for r in rows if r["kind"] == kind]
        x = [r["measured_ms"] for r in pts]
        y = [100 * r["acc_mean"] for r in pts]
        err = [100 * (r["acc_std"] or 0.0) for r in pts]
        ax.errorbar(x, y, yerr=err if any(err) else None, fmt="none", ecolor=style["color"],
                    alpha=0.6)
        ax.scatter(x, y, s=style.pop("s", 50), zorder=3, **style)
    for r in rows:
        ax.annotate(r["name"], (r["measured_ms"], 100 * r["acc_mean"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("measured latency, LiteRT 1 thread, batch 1 (ms)")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.set_title(f"CIFAR-10: accuracy vs measured latency ({'--quick' if FLAGS.quick else 'full'})",
                 fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with io_utils.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_results(out, nets, table, target, runs, started):
    baseline_ms = measured_ms(next(n for n in nets if n.kind == "baseline"), out)
    rows = [net_row(net, table, target, out, runs[net.name], baseline_ms) for net in nets]
    result = summary(rows, target, time.time() - started)
    data = {"summary": result, "target_ms": target, "table": table.source,
            "table_settings": table.settings, "recipe": recipe_text(),
            "flags": {name: FLAGS[name].value for name in
                      ("seeds", "random_count", "random_tolerance", "seed", "target_ms",
                       "target_ratio", "target_reference", "latency_loss", "latency_beta",
                       "quick")},
            "networks": rows}
    io_utils.write_json(os.path.join(out, "results.json"), data)
    io_utils.write_text(os.path.join(out, "results.md"), markdown(rows, result, target))
    scatter_png(rows, target, os.path.join(out, "latency_accuracy.png"))
    return result


# --- main -----------------------------------------------------------------------------------
def plan(progress, out, nets_macs, table_todo):
    """The estimate of every step still to do (the ETA's starting point); steps a previous run
    finished are left out."""
    done = lambda *parts: os.path.exists(os.path.join(out, "nets", *parts))
    images = FLAGS.max_train_examples or 45000
    test_images = min(10000, images) if FLAGS.max_train_examples else 10000
    if table_todo:
        progress.add("table", "table", table_todo * PART_S * FLAGS.latency_rounds
                     + FLAGS.latency_calibrate * 5.0)
    if not done("searched", "arch.json"):
        progress.add("search", "search", search_estimate_s(nets_macs["baseline"]))
    if not all(done(name, "latency.json") for name in nets_macs):
        progress.add("latency", "latency", len(nets_macs) * (3.0 + FLAGS.latency_rounds))
    epoch_images = (FLAGS.train_steps_per_epoch * FLAGS.batch_size
                    if FLAGS.train_steps_per_epoch else images)
    for name, macs in nets_macs.items():
        per_image = train_image_ms(macs) / 1e3
        seconds = PROCESS_START_S + per_image * (FLAGS.train_epochs * epoch_images * 1.1
                                                 + test_images / 3)
        for seed in range(FLAGS.seeds):
            if not done(name, f"seed{seed}", "results.json"):
                progress.add(f"train {name} seed {seed}", "train", seconds)


def table_todo(space, out):
    from proxyless_tf import latency
    if FLAGS.latency_table:
        return 0
    path = os.path.join(out, "latency_table.json")
    have = latency.LatencyTable.load(path).entries if os.path.exists(path) else {}
    return sum(1 for p in latency.table_parts(space) if p.key not in have)


class Stop(Exception):
    """--stop_after reached: carries what is known so far (printed as the last line)."""


def setup():
    """Flags checked, OUTPUT_DIR and its recipe, the meter, and the estimate printed."""
    from proxyless_tf import architecture, latency
    if FLAGS.quick:
        apply_quick()
    space = check_flags()
    out = io_utils.ensure_writable_dir(FLAGS.output_dir)
    recipe = check_or_write_recipe(out)
    meter = latency.meter_from_flags()
    meter.check_available()
    progress = Progress()
    # The baseline's MACs stand in for every network's in the estimate (it is rough anyway).
    base_macs = size_of(architecture.resolve("all:k3e6", space))[1]
    names = ["searched", "baseline"] + [f"random{i + 1}" for i in range(FLAGS.random_count)]
    plan(progress, out, {name: base_macs for name in names}, table_todo(space, out))
    progress.say(f"CIFAR-10 quality benchmark into {out}: {len(names)} networks x {FLAGS.seeds} "
                 f"seed(s), {FLAGS.train_epochs} retraining epochs on "
                 f"{FLAGS.max_train_examples or 'all'} images; estimate "
                 f"{_minutes(progress.eta_s())} (rough: dev-VM costs, rescaled as steps finish)")
    return space, out, recipe, meter, progress


def networks(space, out, recipe, meter, progress, known):
    """Table, target, search, the random and baseline networks, their measured latencies.
    Returns (table, target, [Net]); raises Stop at --stop_after."""
    from proxyless_tf import latency
    table, table_path = latency_table(space, out, meter, progress)
    target = target_of(table, space)
    check_target(out, target)
    reference_ms = table.predict(latency.resolve_arch(FLAGS.target_reference, space))
    progress.say(f"target T = {target:.4f} ms ({FLAGS.target_reference} predicted "
                 f"{reference_ms:.4f} ms)")
    known["target_ms"] = round(target, 4)
    if FLAGS.stop_after == "table":
        raise Stop()
    searched = run_search(out, table_path, target, recipe, progress)
    known["searched_predicted_ms"] = round(report_searched(searched, table, target, progress), 4)
    if FLAGS.stop_after == "search":
        raise Stop()
    nets = [Net("searched", "searched", searched),
            Net("baseline", "baseline", baseline_arch(space, out))]
    nets += [Net(a.name, "random", a) for a in sample_randoms(space, table, target, out, progress)]
    measure_latencies(nets, out, meter, table.stat, progress)
    for net in nets:
        ms = measured_ms(net, out)
        progress.say(f"  {net.name:9s} predicted {table.predict(net.arch):.3f} ms, measured "
                     f"{ms:.3f} ms ({ms / target:.3f} T)")
        known[f"{net.name}_measured_ms"] = round(ms, 4)
    if FLAGS.stop_after == "latency":
        raise Stop()
    return table, target, nets


def main(argv):
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # keep the TFLite converter's chatter off the console
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    started = time.time()
    space, out, recipe, meter, progress = setup()
    known = {"stopped_after": FLAGS.stop_after}
    try:
        table, target, nets = networks(space, out, recipe, meter, progress, known)
    except Stop:
        known["wall_s"] = round(time.time() - started, 1)
        print(json.dumps(known), flush=True)
        return
    runs = {net.name: [] for net in nets}
    for seed in range(FLAGS.seeds):  # every network once before any second seed
        for net in nets:
            runs[net.name].append(retrain(net, seed, out, recipe, progress))
    result = write_results(out, nets, table, target, runs, started)
    progress.say(f"wrote {out}/results.json, results.md, latency_accuracy.png")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    from absl import app

    from proxyless_tf.errors import exit_on_usage_error
    for _name, _value in FULL_DEFAULTS.items():
        FLAGS.set_default(_name, _value)
    app.run(exit_on_usage_error(main))
