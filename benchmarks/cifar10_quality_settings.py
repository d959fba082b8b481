"""benchmarks.cifar10_quality's settings: its own flags (beside the library's,
proxyless_tf.options), the full benchmark's scale and --quick's, the one recipe every search and
retraining gets (OUTPUT_DIR/recipe.cfg), the checks of the flags, and the rough step costs
behind the estimate printed at the start."""

import math
import os

from absl import flags

from benchmarks import TFDS_DIR
from proxyless_tf import io_utils, options  # (defines the shared flags)
from proxyless_tf.errors import UsageError

FLAGS = options.FLAGS
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
# Applied as flag defaults by the runner's __main__ only, so importing the benchmark (tests)
# changes nothing.
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


def train_image_ms(macs):
    return MS_PER_IMAGE + MS_PER_IMAGE_PER_MMAC * macs / 1e6


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
