"""Does the search find better networks at equal latency? A CIFAR-10 benchmark (issue 7).

On the 32x32 space, for the mobile target (TFLite run by LiteRT, 1 thread, batch 1):
  1. the latency table: --latency_table (the full benchmark's default: the shipped
     proxyless_tf/tables/mobile_32.json, measured for the flags/mobile.cfg space, which is this
     space; --latency_table=build builds one with the library into OUTPUT_DIR instead, ~7 min),
     checked against this machine and refitted to it when it is off by more than 5%
     (--latency_check, on by default: what a user's search does; measurements are cached in
     --latency_cache_dir). The table used from then on is saved as OUTPUT_DIR/search_table.json;
  2. the target T = --target_ratio x --target_reference (all:k3e6, the MobileNetV2-like network
     of the space) as measured by the check (the table's prediction without it), or
     --target_ms; kept in OUTPUT_DIR/target.json;
  3. --search_seeds searches (python -m proxyless_tf.search, seeds 0..N-1) with that table, T
     and the absolute latency loss: each trains a seed network first (--seed_fraction of the
     warm-up; every block at its --seed_candidate), grows it into every candidate, warms the
     supernet up on random paths, then searches;
  4. --random_count random architectures of the space whose predicted latency is within
     +-random_tolerance of T (rejection sampling on the table, seeded by --seed), the same for
     every search, and the baseline all:k3e6 (every block k3e6, nothing skipped) at its own
     latency;
  5. every network timed end to end with the same LiteRT meter, then retrained with ONE fixed
     recipe (python -m proxyless_tf.train; OUTPUT_DIR/recipe.cfg) for --seeds seeds and
     evaluated on the test split; each searched network is compared with the best random one.

Writes OUTPUT_DIR/results.json, results.md (the tables), latency_accuracy.png, nets/NAME/
(arch.json, latency.json, seedS/ = the train run; NAME is searched_sS for search seed S,
randomI, baseline), search_seedS/ and search_seedS.log (search S's own outputs: history,
results.json with the supernet's last-epoch train accuracy and the derived network's test
accuracy). Rerunning the same command skips whatever is finished (an interrupted run
continues; a larger --search_seeds or --seeds later adds only the new runs). The last line
printed is a JSON summary.

    python benchmarks/cifar10_quality.py                   # the full benchmark, 1 search seed
    python benchmarks/cifar10_quality.py --search_seeds=2  # two searches against the same nets
    python benchmarks/cifar10_quality.py --quick           # the same code path, tiny, minutes

Time (an estimate from the step costs below, not a timed run): about 80-90 minutes with
--search_seeds=2 on the 2-core development VM (about 16 min per search, 7 min per retraining),
about 65 with one search seed; up to twice that under other jobs' load. The estimate for the
flags given is printed at the start; the progress bar's ETA rescales it as steps finish.
"""

import dataclasses
import json
import math
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
BUILD = "build"  # --latency_table=build: a table of the space built into OUTPUT_DIR


def _define(define, name, *args, **kwargs):
    # Guarded: a test imports this module into a process where the flags may exist already.
    if name not in FLAGS:
        define(name, *args, **kwargs)


_define(flags.DEFINE_integer, "seeds", 1,
        "Retrain every network with seeds 0..N-1 (accuracy mean and spread over them).")
_define(flags.DEFINE_integer, "search_seeds", 1,
        "Search N times, with seeds 0..N-1 (OUTPUT_DIR/search_seedS/); every searched network "
        "is retrained and compared with the same random networks and baseline.")
_define(flags.DEFINE_integer, "random_count", 5,
        "Random architectures whose predicted latency is within --random_tolerance of T.")
_define(flags.DEFINE_float, "random_tolerance", 0.05,
        "Relative window around T for the random architectures (0.05: +-5%).")
_define(flags.DEFINE_enum, "stop_after", None, ["table", "search", "latency"],
        "Stop after this step (e.g. look at the searched networks' latency before the hour of "
        "retraining); rerunning without it continues from there.")

# The full benchmark's scale: the flags/mobile.cfg space (width 0.5, depths 2,2,2,2,2,1, 32x32)
# on a 10k-image CIFAR-10 subset: about 65 minutes on the 2-core VM with one search seed, 80-90
# with --search_seeds=2 (estimates, see the module docstring), up to twice that under other
# jobs' load (docs/benchmarks.md).
# Applied as flag defaults in __main__ only, so importing this module (tests) changes nothing.
FULL_DEFAULTS = dict(
    dataset="cifar10", data_dir=TFDS_DIR, space="small_input", input_size=32,
    width_multiplier=0.5, depths=["2", "2", "2", "2", "2", "1"], batch_size=128,
    max_train_examples=10000, valid_fraction=0.1,
    # search: 10 epochs, of which 5 warm up: ceil(0.6 x 5) = 3 train the seed network (every block
    # at its --seed_candidate, by default the smallest) alone, which then grows into every
    # candidate, 2 train random paths of the grown supernet; 5 search epochs. ~390 architecture
    # steps instead of the paper's tens of thousands, so alpha takes 100x the paper's step (1e-3):
    # the probabilities must become peaked within the budget, or the argmax network is far cheaper
    # than the expected latency the loss holds at T (with arch_lr=0.01 a 6-epoch search derived the
    # space's near-cheapest network, 0.51 T)
    epochs=10, warmup_epochs=5, seed_fraction=0.6, arch_update_every=1, weight_lr=0.05,
    arch_lr=0.1,
    # the one retraining recipe
    train_epochs=6, train_warmup_epochs=1, train_lr=0.05,
    # the shipped table of this space (no 7-minute build; --latency_table=build for one made
    # here), checked against this machine first (--latency_check)
    latency_table="proxyless_tf/tables/mobile_32.json",
    target_ratio=0.8, target_reference="all:k3e6", latency_loss="abs",
    output_dir="runs/cifar10_quality")

# --quick: the same steps on a tiny space and a 1,000-image subset (flags given explicitly win);
# 3 search epochs of 8 steps: 1 seed, 1 random-path warm-up, 1 search.
QUICK = dict(
    width_multiplier=0.25, depths=["1", "1", "1", "1", "1", "1"], batch_size=64,
    max_train_examples=1000, epochs=3, warmup_epochs=2, seed_fraction=0.5, steps_per_epoch=8,
    train_epochs=2, train_warmup_epochs=1,
    latency_rounds=1, latency_runs=20, latency_warmup=5, latency_calibrate=2,
    output_dir="runs/cifar10_quality_quick")

# Flags the subprocesses get through OUTPUT_DIR/recipe.cfg: the space, the data, the search
# and the retraining recipe. The same file for every network is what "one recipe" means.
RECIPE_FLAGS = (
    "dataset", "data_dir", "download", "space", "input_size", "width_multiplier", "widths",
    "depths", "strides", "candidates", "dropout", "batch_size", "valid_fraction",
    "max_train_examples", "epochs", "warmup_epochs", "seed_fraction", "seed_candidate",
    "skip_rate", "zero_pairs", "steps_per_epoch",
    "weight_lr", "weight_decay", "momentum", "label_smoothing", "arch_lr", "arch_beta1",
    "arch_beta2", "arch_init_std", "arch_update_every", "arch_algo", "train_epochs",
    "train_warmup_epochs", "train_steps_per_epoch", "train_lr")

# Rough costs on the 2-vCPU development VM (shared), for the estimate printed at the start and the
# progress bar's total (its ETA then rescales by the pace so far). Training one image costs about 2
# ms plus 0.17 ms per million multiply-adds of the network (all:k3e6 at width 0.5, 26 MMACs: 6.4 ms
# at batch 128; a 6-epoch retraining on 10k images took 6 min 40 s alone). Search steps, as
# multiples of an all:k3e6 training step: a seed-network step 0.6x (every block at its smallest
# candidate; a wider seed costs more, and the ETA rescales by the pace), a random-path weight step
# 1.05x, an architecture step (two paths on a held-out batch) 1.0x more (measured: seed epochs 36-41
# s and random-path epochs 62-68 s at batch 128 on 10k images; search epochs ~1.65x random-path ones
# in flags/mobile.cfg searches).
MS_PER_IMAGE, MS_PER_IMAGE_PER_MMAC = 2.0, 0.17
SEED_STEP, WEIGHT_STEP, ARCH_STEP = 0.6, 1.05, 1.0
PROCESS_START_S = 15.0   # importing TensorFlow, loading data, tracing
SUPERNET_TRACE_S = 30.0  # the search's steps are traced once each, and the growth
PART_S = 2.0             # converting and timing one latency-table part (per round, roughly)
CHECK_NETWORK_S = 4.0    # converting one network for the latency check (plus a second a round)


# --- settings -------------------------------------------------------------------------------
def apply_quick():
    for name, value in QUICK.items():
        if not FLAGS[name].present:
            FLAGS[name].value = value


def building_table():
    """--latency_table=build (or empty): the benchmark builds the space's table itself."""
    return FLAGS.latency_table in (None, "", BUILD)


def check_flags():
    """Every bad flag is a one-line error before anything long starts."""
    from proxyless_tf import latency, search, train
    if FLAGS.seeds < 1 or FLAGS.random_count < 1 or FLAGS.search_seeds < 1:
        raise UsageError("--seeds, --search_seeds and --random_count must be at least 1")
    if not 0 < FLAGS.random_tolerance < 1:
        raise UsageError(f"--random_tolerance must be in (0, 1), got {FLAGS.random_tolerance}")
    if FLAGS.latency_runtime != "tflite" or FLAGS.latency_threads != 1:
        print("note: the benchmark's target is LiteRT with 1 thread; measuring "
              f"{FLAGS.latency_runtime} with {FLAGS.latency_threads} thread(s) instead", flush=True)
    search.config_from_flags()
    train.config_from_flags()
    space = options.space_from_flags()
    if not building_table() and FLAGS.latency_table != latency.AUTO:
        latency.LatencyTable.load(FLAGS.latency_table)  # a missing table: one line, now
    from proxyless_tf import data  # the dataset must be there before the table takes minutes
    data.load(FLAGS.dataset, space.input_size, FLAGS.batch_size, FLAGS.data_dir, FLAGS.download,
              FLAGS.valid_fraction, FLAGS.seed, FLAGS.max_train_examples)
    if FLAGS.dataset != "digits" and FLAGS.max_train_examples and \
            FLAGS.max_train_examples < 10000:
        print(f"note: --max_train_examples={FLAGS.max_train_examples} also caps the test split "
              "(proxyless_tf.data); accuracies are over that many test images", flush=True)
    return space


# Recipe flags added after benchmark directories existed: written only when not at their
# default, so that those directories (whose recipe.cfg lacks the line) still resume.
LATE_RECIPE_FLAGS = ("seed_candidate",)


def recipe_text():
    lines = [FLAGS[name].serialize() for name in RECIPE_FLAGS
             if name not in LATE_RECIPE_FLAGS or FLAGS[name].value != FLAGS[name].default]
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


# --- progress -------------------------------------------------------------------------------
class Steps:
    """The steps still to do with their estimated seconds, and Keras' progress bar over them
    (keras.utils.Progbar, counting estimated seconds of work: its ETA is the estimate left,
    rescaled by the pace so far). Messages are plain lines with the elapsed time."""

    def __init__(self):
        self.started = time.time()
        self.plan = {}  # key -> estimated seconds, for the steps still to do
        self.bar = None
        self.done_s = 0

    def add(self, key, seconds):
        self.plan[key] = max(1, int(round(seconds)))

    def total_s(self):
        return sum(self.plan.values())

    def start_bar(self):
        import keras
        total = self.total_s()
        verbose = (1 if sys.stdout.isatty() else 2) if total else 0  # logs: one line at the end
        self.bar = keras.utils.Progbar(total or 1, verbose=verbose, unit_name="est_s")

    def finish(self, key):
        """Step `key` is done: the bar moves by its estimate (nothing when it was not planned,
        i.e. a previous run finished it)."""
        seconds = self.plan.pop(key, 0)
        if not seconds or self.bar is None:
            return
        self.done_s += seconds
        self.bar.update(self.done_s)
        if self.bar.verbose == 1 and self.done_s < self.bar.target:
            print(flush=True)  # the bar leaves its line open until the end; messages follow it

    def say(self, message):
        print(f"[{_minutes(time.time() - self.started)}] {message}", flush=True)


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
    search_seed: int = None  # searched networks: the seed of their search

    def dir(self, out):
        return os.path.join(out, "nets", self.name)


def searched_name(seed):
    return f"searched_s{seed}"


def searchable_ops(arch):
    return [b.op for b in arch.blocks if b.searchable]


def size_of(arch):
    """(trainable parameters, MACs) of the standalone network."""
    import keras
    from proxyless_tf import blocks, train
    model = blocks.build_network(train.keras_safe(arch))
    result = blocks.count_params(model), blocks.count_macs(model)
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
def build_table_here(space, out, meter, steps):
    """--latency_table=build: OUTPUT_DIR/latency_table.json built (or completed) with the
    library; an interrupted build resumes."""
    from proxyless_tf import latency
    path = os.path.join(out, "latency_table.json")
    steps.say(f"latency table {path} ({FLAGS.latency_rounds} round(s), reusing entries "
              "already measured)")
    table, measured, reused = latency.build_table(
        space, meter, path, references=(), rounds=FLAGS.latency_rounds,
        calibration=FLAGS.latency_calibrate)
    steps.finish("table")
    steps.say(f"latency table: {measured} parts measured, {reused} reused, calibration "
              f"factor {table.factor:.4f}")
    return latency.LatencyTable(table.entries, table.settings, path, FLAGS.latency_stat)


def target_flags():
    """(--target_ms, --target_ratio) as meant: the full benchmark's default ratio gives way to
    a --target_ms given alone; both given: the later one (as a search reads them)."""
    from proxyless_tf import latency
    if FLAGS.target_ms is not None and not FLAGS["target_ratio"].present:
        return FLAGS.target_ms, None
    return latency.target_flags()


def latency_spec():
    """The flags that decide the searches' table and T (a rerun must give the same)."""
    target_ms, ratio = target_flags()
    return {"latency_table": FLAGS.latency_table or BUILD, "latency_check": FLAGS.latency_check,
            "latency_stat": FLAGS.latency_stat, "target_ms": target_ms, "target_ratio": ratio,
            "target_reference": FLAGS.target_reference if ratio is not None else None}


def latency_model(space, out, meter, steps):
    """(table, its path, T): what every search optimises against and the random networks are
    sampled with. The first run takes --latency_table (built into OUTPUT_DIR with
    --latency_table=build), checks it against this machine and refits it when it is off
    (--latency_check: the library's check, as a search would run it; the reference of a ratio
    target is timed with it and T refers to its measured latency), and saves the table as
    OUTPUT_DIR/search_table.json and T in target.json. The searches get that table with
    --nolatency_check, so that they and the random sample share one table and one T (a check
    in each search could refit differently and move T's meaning). Reruns reuse both; other
    latency or target flags are refused."""
    from proxyless_tf import latency
    table_path = os.path.join(out, "search_table.json")
    target_path = os.path.join(out, "target.json")
    spec = latency_spec()
    if os.path.exists(target_path) and os.path.exists(table_path):
        saved = io_utils.read_json(target_path, what="target file")
        changed = [k for k in spec if (saved.get("flags") or {}).get(k) != spec[k]]
        if changed:
            raise UsageError(f"{out} was run with other latency flags (--{changed[0]}: "
                             f"{(saved.get('flags') or {}).get(changed[0])!r}, now "
                             f"{spec[changed[0]]!r}); use another --output_dir or the same flags")
        steps.say(f"latency table {table_path} and T = {saved['target_ms']:.4f} ms: from the "
                  "first run of this benchmark")
        return (latency.LatencyTable.load(table_path, stat=FLAGS.latency_stat), table_path,
                float(saved["target_ms"]))
    target_ms, ratio = spec["target_ms"], spec["target_ratio"]
    reference_ms = None
    if building_table():
        table = build_table_here(space, out, meter, steps)
        print("latency check: skipped, the table was measured on this machine just now",
              flush=True)
    else:
        reference = latency.resolve_arch(FLAGS.target_reference, space, "--target_reference") \
            if ratio is not None else None
        if FLAGS.latency_check:
            steps.say(f"latency table {FLAGS.latency_table}: checking it against this machine "
                      "(--latency_check)")
        checked = latency.checked_table_from_flags(space, meter, reference=reference)
        steps.finish("check")
        table, reference_ms = checked.table, checked.reference_ms
    target = latency.target_from_flags(table, space, target_ms, ratio, FLAGS.target_reference,
                                       reference_ms)
    lo, hi = latency.LatencyObjective(table, space, target, "abs").range_ms()
    if not lo < target < hi:
        raise UsageError(f"the target {target:.4g} ms is outside the space's range "
                         f"{lo:.4g}-{hi:.4g} ms (table {table.source})")
    source = table.source
    table.save(table_path)
    io_utils.write_json(target_path, {"target_ms": target, "flags": spec, "table_from": source,
                                      "reference_measured_ms": reference_ms})
    return latency.LatencyTable.load(table_path, stat=FLAGS.latency_stat), table_path, target


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
            if echo(line):  # Keras colours its progress bar and redraws it after a \r
                plain = ANSI.sub("", line).split("\r")[-1].replace("\b", "").rstrip()
                print(f"      {plain[-220:]}", flush=True)
        status = process.wait()
    if status == 2 and errors:
        raise UsageError(f"{module}: {errors[-1]}")
    if status:
        sys.exit(f"error: {module} failed with exit status {status}; see {log_path}")


def seed_network_epochs():
    """The warm-up epochs that train the seed network alone (as proxyless_tf.search counts)."""
    return min(FLAGS.warmup_epochs, math.ceil(FLAGS.seed_fraction * FLAGS.warmup_epochs - 1e-9))


def search_estimate_s(base_macs, test_images):
    """One search: the seed network's epochs, the random-path warm-up, the search epochs (a
    weight step and every --arch_update_every steps an architecture step), then the derived
    network's test."""
    images = FLAGS.max_train_examples or 45000
    steps = FLAGS.steps_per_epoch or max(1, images // FLAGS.batch_size)
    seed_epochs = seed_network_epochs()
    search_epochs = max(0, FLAGS.epochs - FLAGS.warmup_epochs)
    per_step = FLAGS.batch_size * train_image_ms(base_macs) / 1e3
    units = steps * (SEED_STEP * seed_epochs + WEIGHT_STEP * (FLAGS.epochs - seed_epochs)
                     + ARCH_STEP * search_epochs / FLAGS.arch_update_every)
    return (PROCESS_START_S + SUPERNET_TRACE_S + per_step * units
            + train_image_ms(base_macs) / 1e3 * test_images / 3)


def search_results(out, seed):
    """Search `seed`'s results.json (the supernet's last-epoch train accuracy, the derived
    network's test accuracy with the supernet's weights); {} when it has none."""
    path = os.path.join(out, f"search_seed{seed}", "results.json")
    return io_utils.read_json(path, what="search results") if os.path.exists(path) else {}


def run_search(seed, out, table_path, target, recipe, steps):
    """Search `seed` through its command line, into OUTPUT_DIR/search_seedS/;
    nets/searched_sS/arch.json marks it finished (the search itself resumes from its
    checkpoints when interrupted)."""
    from proxyless_tf import architecture
    name = searched_name(seed)
    net_dir = os.path.join(out, "nets", name)
    path = os.path.join(net_dir, "arch.json")
    if os.path.exists(path):
        steps.say(f"search seed {seed}: done before ({path})")
        return architecture.Architecture.load(path)
    search_dir = os.path.join(out, f"search_seed{seed}")
    os.makedirs(net_dir, exist_ok=True)
    args = [f"--flagfile={recipe}", f"--output_dir={search_dir}", f"--seed={seed}",
            f"--latency_table={table_path}", "--nolatency_check",  # checked once, above
            f"--latency_stat={FLAGS.latency_stat}", f"--target_ms={target!r}",
            f"--latency_loss={FLAGS.latency_loss}", f"--latency_beta={FLAGS.latency_beta}"]
    seed_epochs = seed_network_epochs()
    steps.say(f"search seed {seed} of {FLAGS.search_seeds}: {FLAGS.epochs} epochs ({seed_epochs} "
              f"seed network, {FLAGS.warmup_epochs - seed_epochs} random-path warm-up, "
              f"{FLAGS.epochs - FLAGS.warmup_epochs} search), target {target:.4f} ms, loss "
              f"{FLAGS.latency_loss}; log {search_dir}.log")
    run_logged("proxyless_tf.search", args, f"{search_dir}.log",
               lambda line: (line.startswith("epoch ") and "loss" in line)
               or line.startswith(("grew ", "supernet:", "derived architecture")))
    steps.finish(f"search {seed}")
    arch = architecture.Architecture.load(os.path.join(search_dir, "arch.json"))
    arch = dataclasses.replace(arch, name=name)
    arch.save(path)
    return arch


def report_searched(arch, table, target, steps):
    """Says at once whether the derived network is near T: if it is not, the hour of
    retraining compares it at another latency (the reading must say so)."""
    predicted = table.predict(arch)
    verdict = "within" if abs(predicted / target - 1) <= 0.10 else "OUTSIDE"
    steps.say(f"{arch.name} {short_ops(searchable_ops(arch))}: predicted {predicted:.4f} ms = "
              f"{predicted / target:.3f} T ({verdict} +-10% of T)")
    return predicted


def sample_randoms(space, table, target, out, steps):
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
    steps.say(f"sampled {len(archs)} random architectures within "
              f"{100 * FLAGS.random_tolerance:g}% of {target:.4f} ms (seed {FLAGS.seed})")
    return archs


def baseline_arch(space, out):
    from proxyless_tf import architecture
    path = os.path.join(out, "nets", "baseline", "arch.json")
    arch = dataclasses.replace(architecture.resolve("all:k3e6", space), name="baseline")
    arch.save(path)
    return arch


def measure_latencies(nets, out, meter, stat, steps):
    """Each network still without nets/NAME/latency.json converted once and timed in
    --latency_rounds rounds, a pass over all of them each (as `latency validate` does), so that
    a change of the machine's load spreads over every network; the quietest round's median
    is kept (latency.combine), like the table's entries."""
    import keras
    from proxyless_tf import latency
    todo = [n for n in nets if not os.path.exists(os.path.join(n.dir(out), "latency.json"))]
    if not todo:
        return
    steps.say(f"measuring {len(todo)} network(s) with LiteRT ({meter.threads} thread(s), "
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
    steps.finish("latency")


def retrain(net, seed, out, recipe, steps):
    """One network, one seed, through `python -m proxyless_tf.train` (it resumes from its own
    checkpoint when interrupted); nets/NAME/seedS/results.json marks it finished."""
    run_dir = os.path.join(net.dir(out), f"seed{seed}")
    results = os.path.join(run_dir, "results.json")
    if os.path.exists(results):
        return io_utils.read_json(results)
    steps.say(f"retraining {net.name} ({net.kind}), seed {seed}: {FLAGS.train_epochs} epochs")
    args = [f"--flagfile={recipe}", f"--arch={os.path.join(net.dir(out), 'arch.json')}",
            f"--train_output_dir={run_dir}", f"--seed={seed}"]
    run_logged("proxyless_tf.train", args, os.path.join(net.dir(out), f"train_seed{seed}.log"),
               lambda line: "val_accuracy" in line or line.startswith("test accuracy"))
    steps.finish(f"train {net.name} seed {seed}")
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
    alike, so this ratio (against --target_ratio) still shows where a network sits. A searched
    network's line also holds its search's seed and results.json figures."""
    import numpy as np
    params, macs = size_of(net.arch)
    measured = io_utils.read_json(os.path.join(net.dir(out), "latency.json"))
    accs = [r["test_accuracy"] for r in runs]
    row = {
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
    if net.kind == "searched":
        found = search_results(out, net.search_seed)
        row.update(search_seed=net.search_seed,
                   supernet_train_acc=found.get("supernet_train_acc"),
                   derived_test_acc=found.get("derived_test_acc"))
    return row


def _round(value, digits=4):
    return None if value is None else round(float(value), digits)


def told_apart(rows):
    """Whether the retrained accuracies tell the networks apart at all: a one-way ANOVA over
    the networks' per-seed accuracies (None with fewer than 2 seeds each). If every network
    were as good as every other, all S searches would beat all R random networks with
    probability 1 / C(R+S, S) (the S searched being the top S of R+S exchangeable results):
    the goal's pass rate by luck alone. networks_sd: how much the networks themselves differ,
    from the variance of their means less the seed variance over n seeds (method of moments;
    0 when the means spread no more than seed noise gives), and networks_sd_upper95, the
    upper end of its 95% interval (from the ANOVA's F: (F / F_0.025 - 1) x seed variance / n):
    an estimate of 0 says the networks could not be told apart, not that they are equal."""
    import math
    import numpy as np
    from scipy import stats
    groups = [np.asarray(r["test_accuracy"], np.float64) for r in rows]
    if min(len(g) for g in groups) < 2:
        return None
    f_value, p_value = stats.f_oneway(*groups)
    randoms = sum(r["kind"] == "random" for r in rows)
    searches = sum(r["kind"] == "searched" for r in rows)
    # sample standard deviations, in accuracy (0-1): within a network over its seeds (pooled),
    # and across the networks' means
    seed_sd = float(np.sqrt(np.mean([np.var(g, ddof=1) for g in groups])))
    means_sd = float(np.std([g.mean() for g in groups], ddof=1))
    seeds = len(groups) / sum(1.0 / len(g) for g in groups)  # harmonic mean of seeds per network
    f_low = stats.f.ppf(0.025, len(groups) - 1, sum(len(g) for g in groups) - len(groups))
    return {"networks": len(groups), "anova_f": _round(float(f_value)),
            "anova_p": _round(float(p_value)),
            "seed_sd": _round(seed_sd), "means_sd": _round(means_sd),
            "networks_sd": _round(np.sqrt(max(0.0, means_sd ** 2 - seed_sd ** 2 / seeds))),
            "networks_sd_upper95": _round(np.sqrt(max(0.0, (f_value / f_low - 1.0)
                                                      * seed_sd ** 2 / seeds))),
            "chance_every_search_beats_best_random_if_all_equal":
                _round(1.0 / math.comb(randoms + searches, searches))}


# what a network's mean retrained accuracy is compared with (Spearman's rho over the networks)
NETWORK_TRAITS = {
    "expand6_blocks": lambda row: sum(op.endswith("e6") for op in row["ops"]),
    "skipped_blocks": lambda row: sum(op == "zero" for op in row["ops"]),
    "params": lambda row: row["params"],
    "macs": lambda row: row["macs"]}


def what_accuracy_follows(rows):
    """Spearman's rho (and p) of the networks' mean retrained accuracy with each trait: at equal
    latency, what the better networks have more of (None for fewer than 4 networks)."""
    from scipy import stats
    if len(rows) < 4:
        return None
    accs = [row["acc_mean"] for row in rows]
    follows = {}
    for name, trait in NETWORK_TRAITS.items():
        values = [trait(row) for row in rows]
        if len(set(values)) < 2 or len(set(accs)) < 2:  # no order to compare with
            follows[name] = {"rho": None, "p": None}
            continue
        rho, p_value = stats.spearmanr(values, accs)
        follows[name] = {"rho": _round(rho, 3), "p": _round(p_value)}
    return follows


def summary(rows, target, wall_s, quick=False):
    """The last line: every searched network (its search seed, the supernet's last-epoch train
    accuracy, the derived network's test accuracy with the supernet's weights, its retrained
    test accuracy, latencies) and whether it beats the best random network (a higher mean
    retrained accuracy; a tie does not), next to the random networks and the baseline."""
    import numpy as np
    by_kind = lambda kind: [r for r in rows if r["kind"] == kind]
    searched = sorted(by_kind("searched"), key=lambda r: r["search_seed"])
    baseline, randoms = by_kind("baseline")[0], by_kind("random")
    random_accs = [r["acc_mean"] for r in randoms]
    best = max(randoms, key=lambda r: r["acc_mean"])
    per_search = [{
        "name": r["name"], "search_seed": r["search_seed"],
        "supernet_train_acc": _round(r.get("supernet_train_acc")),
        "derived_test_acc": _round(r.get("derived_test_acc")),
        "acc": round(r["acc_mean"], 4),
        "predicted_ms": r["predicted_ms"], "measured_ms": r["measured_ms"],
        "measured_vs_target": r["measured_vs_target"],
        "within_10pct": bool(abs(r["measured_vs_target"] - 1) <= 0.10),
        "vs_baseline_measured": r["measured_vs_baseline"],
        "random_beaten": int(sum(r["acc_mean"] > a for a in random_accs)),
        "beats_best_random": bool(r["acc_mean"] > best["acc_mean"])} for r in searched]
    return {
        "target_ms": round(target, 4),
        "searched": per_search,
        "search_seeds": len(searched),
        "searched_beating_best_random": sum(s["beats_best_random"] for s in per_search),
        "searched_acc_mean": round(float(np.mean([r["acc_mean"] for r in searched])), 4),
        "best_random": best["name"],
        "random_acc_mean": round(float(np.mean(random_accs)), 4),
        "random_acc_max": round(float(best["acc_mean"]), 4),
        "random_count": len(randoms),
        "baseline_acc": round(baseline["acc_mean"], 4),
        "baseline_measured_ms": baseline["measured_ms"],
        "seeds": len(baseline["test_accuracy"]), "told_apart": told_apart(rows),
        "accuracy_follows": what_accuracy_follows(rows),
        "quick": bool(quick),
        "wall_s": round(wall_s, 1)}


def _percent(value):
    return "-" if value is None else f"{100 * value:.2f}"


def markdown(rows, summary_, target, header):
    """results.md: every network, then one line per search against the best random network;
    `header` is the first line (the target and the meter)."""
    lines = [header, "",
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
    best = summary_["best_random"]
    lines += ["", f"Searches against the best random network ({best}, "
              f"{100 * summary_['random_acc_max']:.2f}%):", "",
              "| search seed | network | supernet train acc % (last epoch) | derived test acc % "
              "(supernet weights) | retrained test acc % | predicted ms | measured ms | "
              "measured / T | random beaten | beats best random |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary_["searched"]:
        lines.append(f"| {s['search_seed']} | {s['name']} | {_percent(s['supernet_train_acc'])} "
                     f"| {_percent(s['derived_test_acc'])} | {100 * s['acc']:.2f} | "
                     f"{s['predicted_ms']:.3f} | {s['measured_ms']:.3f} | "
                     f"{s['measured_vs_target']:.3f} | {s['random_beaten']} of "
                     f"{summary_['random_count']} | {'yes' if s['beats_best_random'] else 'no'} |")
    lines += ["", f"Test accuracy on {rows[0]['test_examples']:,} test images after training on "
              f"{rows[0]['train_examples']:,} images; spread = standard deviation over seeds. "
              "measured / baseline: against the all:k3e6 baseline timed in the same rounds; "
              "unlike measured / T it does not move when the machine runs faster or slower than "
              "when the table was built. Supernet train acc: sampled paths, the search's last "
              "epoch; derived test acc: the searched network with the supernet's weights, batch "
              "norm re-estimated, before any retraining."]
    apart = summary_.get("told_apart")
    if apart:
        lines += ["", f"Are the networks told apart at this scale? One-way ANOVA over the "
                  f"{apart['networks']} networks' seeds: F = {apart['anova_f']:.2f}, "
                  f"p = {apart['anova_p']:.3f}. Standard deviation over the seeds of one "
                  f"network (pooled): {100 * apart['seed_sd']:.2f} points; over the networks' "
                  f"means: {100 * apart['means_sd']:.2f}; of the networks themselves (the "
                  f"means' variance less the seed variance over the seeds): "
                  f"{100 * apart.get('networks_sd', 0.0):.2f} (95% interval up to "
                  f"{100 * apart.get('networks_sd_upper95', 0.0):.2f}). If all networks were "
                  f"equal, every "
                  f"search "
                  f"would beat the best random one with probability "
                  f"{apart['chance_every_search_beats_best_random_if_all_equal']:.3f}."]
    follows = summary_.get("accuracy_follows")
    if follows:
        lines += ["", "What the mean retrained accuracy follows over these networks (Spearman's "
                  "rho, p): " + ", ".join(f"{name.replace('_', ' ')} {v['rho']:+.2f} "
                                           f"({v['p']:.3f})" for name, v in follows.items()
                                           if v["rho"] is not None) + "."]
    lines += ["", "```", json.dumps(summary_), "```"]
    return "\n".join(lines) + "\n"


def scatter_png(rows, target, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    styles = {"random": dict(marker="o", color="tab:blue", label="random (predicted within "
                             f"{100 * FLAGS.random_tolerance:g}% of T)"),
              "baseline": dict(marker="s", color="tab:green", label="baseline all:k3e6"),
              "searched": dict(marker="*", color="tab:red", s=180,
                                label="searched (one per search seed)")}
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    ax.axvspan(0.9 * target, 1.1 * target, color="gray", alpha=0.15, label="T +-10%")
    ax.axvline(target, color="gray", lw=1, ls="--", label=f"T = {target:.3f} ms")
    best_random = max(100 * r["acc_mean"] for r in rows if r["kind"] == "random")
    ax.axhline(best_random, color="tab:blue", lw=1, ls=":", label="best random network")
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


def earlier_wall_s(out):
    """Seconds the earlier runs that wrote OUTPUT_DIR/results.json took (0 if none): a rerun
    (more seeds, or only the results written again) adds its own time to theirs rather than
    replacing the whole benchmark's time with its own."""
    path = os.path.join(out, "results.json")
    if not os.path.exists(path):
        return 0.0
    with open(path) as f:
        return float(json.load(f).get("summary", {}).get("wall_s") or 0.0)


def write_results(out, nets, table, target, runs, started):
    baseline_ms = measured_ms(next(n for n in nets if n.kind == "baseline"), out)
    rows = [net_row(net, table, target, out, runs[net.name], baseline_ms) for net in nets]
    result = summary(rows, target, earlier_wall_s(out) + time.time() - started,
                     quick=FLAGS.quick)
    data = {"summary": result, "target_ms": target, "table": table.source,
            "table_settings": table.settings, "recipe": recipe_text(),
            "flags": {name: FLAGS[name].value for name in
                      ("seeds", "search_seeds", "random_count", "random_tolerance", "seed",
                       "target_ms", "target_ratio", "target_reference", "latency_table",
                       "latency_check", "latency_loss", "latency_beta", "quick")},
            "networks": rows}
    header = (f"Target T = {target:.3f} ms (LiteRT, {FLAGS.latency_threads} thread, batch "
              f"{FLAGS.latency_batch}); ops per searchable block: kernel+expand (36 = k3e6), "
              "-- = skipped.")
    io_utils.write_json(os.path.join(out, "results.json"), data)
    io_utils.write_text(os.path.join(out, "results.md"), markdown(rows, result, target, header))
    scatter_png(rows, target, os.path.join(out, "latency_accuracy.png"))
    return result


# --- main -----------------------------------------------------------------------------------
def plan(steps, out, names, base_macs, table_todo, check_todo):
    """The estimate of every step still to do (the bar's total); steps a previous run finished
    are left out. The baseline's MACs stand in for every network's (it is rough anyway)."""
    done = lambda *parts: os.path.exists(os.path.join(out, "nets", *parts))
    images = FLAGS.max_train_examples or 45000
    test_images = min(10000, images) if FLAGS.max_train_examples else 10000
    if table_todo:
        steps.add("table", table_todo * PART_S * FLAGS.latency_rounds
                  + FLAGS.latency_calibrate * 5.0)
    if check_todo:  # the spread networks, the reference and a uniform network per kernel
        steps.add("check", (FLAGS.latency_check_networks + 4)
                  * (CHECK_NETWORK_S + FLAGS.latency_rounds))
    for seed in range(FLAGS.search_seeds):
        if not done(searched_name(seed), "arch.json"):
            steps.add(f"search {seed}", search_estimate_s(base_macs, test_images))
    if not all(done(name, "latency.json") for name in names):
        steps.add("latency", len(names) * (3.0 + FLAGS.latency_rounds))
    epoch_images = (FLAGS.train_steps_per_epoch * FLAGS.batch_size
                    if FLAGS.train_steps_per_epoch else images)
    seconds = PROCESS_START_S + train_image_ms(base_macs) / 1e3 * (FLAGS.train_epochs
                                                                   * epoch_images
                                                                   + test_images / 3)
    for name in names:
        for seed in range(FLAGS.seeds):
            if not done(name, f"seed{seed}", "results.json"):
                steps.add(f"train {name} seed {seed}", seconds)


def table_parts_todo(space, out):
    from proxyless_tf import latency
    if not building_table():
        return 0
    path = os.path.join(out, "latency_table.json")
    have = latency.LatencyTable.load(path).entries if os.path.exists(path) else {}
    return sum(1 for p in latency.table_parts(space) if p.key not in have)


class Stop(Exception):
    """--stop_after reached: carries what is known so far (printed as the last line)."""


def setup():
    """Flags checked, OUTPUT_DIR and its recipe, the meter, the estimate printed and the
    progress bar started."""
    from proxyless_tf import architecture, latency
    if FLAGS.quick:
        apply_quick()
    space = check_flags()
    out = io_utils.ensure_writable_dir(FLAGS.output_dir)
    recipe = check_or_write_recipe(out)
    meter = latency.meter_from_flags()
    meter.check_available()
    steps = Steps()
    base_macs = size_of(architecture.resolve("all:k3e6", space))[1]
    names = ([searched_name(s) for s in range(FLAGS.search_seeds)] + ["baseline"]
             + [f"random{i + 1}" for i in range(FLAGS.random_count)])
    check_todo = (FLAGS.latency_check and not building_table()
                  and not os.path.exists(os.path.join(out, "target.json")))
    plan(steps, out, names, base_macs, table_parts_todo(space, out), check_todo)
    left = (f"estimate {_minutes(steps.total_s())} for what is left (rough: dev-VM costs; the "
            "bar below counts estimated seconds, its ETA rescales them by the pace so far)"
            if steps.total_s() else "every step was done before: writing the results")
    steps.say(f"CIFAR-10 quality benchmark into {out}: {FLAGS.search_seeds} search(es) of "
              f"{FLAGS.epochs} epochs, {len(names)} networks x {FLAGS.seeds} seed(s), "
              f"{FLAGS.train_epochs} retraining epochs on {FLAGS.max_train_examples or 'all'} "
              f"images; {left}")
    steps.start_bar()
    return space, out, recipe, meter, steps


def networks(space, out, recipe, meter, steps, known):
    """Table, target, the searches, the random and baseline networks, their measured
    latencies. Returns (table, target, [Net]); raises Stop at --stop_after."""
    from proxyless_tf import latency
    table, table_path, target = latency_model(space, out, meter, steps)
    predicted = table.predict(latency.resolve_arch(FLAGS.target_reference, space))
    measured = io_utils.read_json(os.path.join(out, "target.json")).get("reference_measured_ms")
    steps.say(f"target T = {target:.4f} ms ({FLAGS.target_reference}: predicted {predicted:.4f} "
              f"ms by {table_path}" + (f", measured {measured:.4f} ms here by the check" if
                                       measured else "") + ")")
    known["target_ms"] = round(target, 4)
    if FLAGS.stop_after == "table":
        raise Stop()
    searched = []
    for seed in range(FLAGS.search_seeds):
        arch = run_search(seed, out, table_path, target, recipe, steps)
        known[f"{arch.name}_predicted_ms"] = round(report_searched(arch, table, target, steps), 4)
        searched.append(Net(arch.name, "searched", arch, search_seed=seed))
    if FLAGS.stop_after == "search":
        raise Stop()
    nets = searched + [Net("baseline", "baseline", baseline_arch(space, out))]
    nets += [Net(a.name, "random", a) for a in sample_randoms(space, table, target, out, steps)]
    measure_latencies(nets, out, meter, table.stat, steps)
    for net in nets:
        ms = measured_ms(net, out)
        steps.say(f"  {net.name:11s} predicted {table.predict(net.arch):.3f} ms, measured "
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
    space, out, recipe, meter, steps = setup()
    known = {"stopped_after": FLAGS.stop_after}
    try:
        table, target, nets = networks(space, out, recipe, meter, steps, known)
    except Stop:
        known["wall_s"] = round(time.time() - started, 1)
        print(json.dumps(known), flush=True)
        return
    runs = {net.name: [] for net in nets}
    for seed in range(FLAGS.seeds):  # every network once before any second seed
        for net in nets:
            runs[net.name].append(retrain(net, seed, out, recipe, steps))
    result = write_results(out, nets, table, target, runs, started)
    steps.say(f"wrote {out}/results.json, results.md, latency_accuracy.png")
    for s in result["searched"]:
        steps.say(f"  {s['name']}: retrained {100 * s['acc']:.2f}% (supernet train "
                  f"{_percent(s['supernet_train_acc'])}%, derived {_percent(s['derived_test_acc'])}"
                  f"%), measured {s['measured_ms']:.3f} ms; beats the best random network "
                  f"({result['best_random']}, {100 * result['random_acc_max']:.2f}%): "
                  f"{'yes' if s['beats_best_random'] else 'no'}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    from absl import app

    from proxyless_tf.errors import exit_on_usage_error
    for _name, _value in FULL_DEFAULTS.items():
        FLAGS.set_default(_name, _value)
    app.run(exit_on_usage_error(main))
