"""Command-line flags shared by every command (search, train, latency, tune, export).

They live in one module so that flagfiles compose: `flags/mobile.cfg` can set latency flags and
still be passed to `train` or `tune`. Each command reads only the flags it needs; the library
never reads them: the commands hand it configs (`proxyless_tf/flag_configs.py`).
"""

import sys

from absl import flags

from proxyless_tf import search_space
from proxyless_tf.errors import UsageError
from proxyless_tf.ops import parse_op
from proxyless_tf.quantize import MODES

FLAGS = flags.FLAGS

# --- search space ------------------------------------------------------------------------------
flags.DEFINE_enum("space", "small_input", list(search_space.SPACES),
                  "Backbone preset: 'imagenet' (224x224, paper), 'small_input' (32x32 images) "
                  "or 'nas_bench_macro' (NAS-Bench-Macro's CIFAR-10 space, flags/"
                  "nas_bench_macro.cfg).")
flags.DEFINE_integer("input_size", None, "Input resolution (default: the preset's).")
flags.DEFINE_float("width_multiplier", 1.0, "Channel multiplier; channels round to multiples of 8.")
flags.DEFINE_list("widths", None, "Output channels of the six stages (default 24,40,80,96,192,320).")
flags.DEFINE_list("depths", None, "Blocks per stage (default 4,4,4,4,4,1).")
flags.DEFINE_list("strides", None, "First stride of each stage.")
flags.DEFINE_list("candidates", None,
                  "Candidate ops per searchable block: k<kernel>e<expand>, zero or identity "
                  "(proxyless_tf/ops). Default: the --space preset's (k{3,5,7}e{3,6} and zero; "
                  "nas_bench_macro: identity, k3e3, k5e6).")
flags.DEFINE_float("dropout", 0.0, "Dropout before the classifier.")

# --- data ------------------------------------------------------------------------------------
flags.DEFINE_string("dataset", "digits",
                    "'digits' (embedded, no download), 'folder' (class subfolders at --data_dir), "
                    "or a TFDS name: cifar10, imagenet2012, imagenette, ...")
flags.DEFINE_string("data_dir", None, "TFDS data_dir, or the image folder for --dataset=folder.")
flags.DEFINE_bool("download", False, "Let TFDS download and prepare the dataset.")
flags.DEFINE_float("valid_fraction", 0.1,
                   "Share of the training split held out for architecture steps.")
flags.DEFINE_integer("max_train_examples", 0, "Use at most this many training examples (0: all).")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("deterministic", False,
                  "Op determinism (search and train): the same command twice gives a byte-"
                  "identical arch.json and the same history apart from timings (README.md, "
                  "'Reproducibility').")

# --- output ----------------------------------------------------------------------------------
flags.DEFINE_string("output_dir", "runs/search", "Where results, checkpoints and logs go.")

# --- search (bi-level loop) --------------------------------------------------------------------
flags.DEFINE_integer("epochs", 120, "Search epochs (warm-up included).")
flags.DEFINE_integer("warmup_epochs", 40, "Epochs that train weights only before alpha moves.")
flags.DEFINE_enum("derive", "target", ["target", "argmax"],
                  "The derived architecture: with a latency target, 'target' takes the most "
                  "probable network whose predicted latency is within +-5% of it (the argmax of "
                  "alpha when that is; a short search leaves the probabilities spread, and its "
                  "argmax can be far from the target); 'argmax' is the paper's argmax per block.")
flags.DEFINE_integer("search_seed", None,
                     "Reseeds the path sampling when the search phase starts: searches resumed "
                     "from copies of one warm-up's checkpoints (same --seed, so the same data "
                     "split) then differ. Default: --seed's stream goes on.")
flags.DEFINE_float("checkpoint_seconds", 0.0,
                   "An epoch's end saves a checkpoint (OUTPUT_DIR/checkpoints, for resuming) when "
                   "this many seconds have passed since the last one; the last epoch of each "
                   "phase always saves. 0: every epoch. For epochs of a few seconds, where a "
                   "save is a large share of an epoch.")
flags.DEFINE_float("seed_fraction", 0.5,
                   "The share of the warm-up epochs (rounded up) that trains the seed network "
                   "(each block at its --seed_candidate) alone; it then grows into every "
                   "candidate, so that the supernet starts as accurate as the seed "
                   "(proxyless_tf/growth.py). 1: the whole warm-up; 0: random paths from the "
                   "start, as in the paper.")
flags.DEFINE_string("seed_candidate", "smallest",
                    "The seed network's candidate in each block: smallest (k3e3 among the "
                    "defaults), widest (the largest expansion at the smallest kernel: k3e6), "
                    "largest (k7e6) or an op of the candidates. Every other candidate then "
                    "starts from the trained seed: as its exact function where it is at least "
                    "as large, as its crop (centre taps, most important channels; Once-for-All) "
                    "where smaller. widest lets the supernet tell expand-6 from expand-3, which "
                    "a grown smallest seed does not (docs/history/search_quality.md, section "
                    "9). Any but smallest needs a seed phase (--seed_fraction above 0).")
flags.DEFINE_float("skip_rate", 0.5,
                   "In the seed and warm-up phases, the probability that a block which can be "
                   "skipped (has `zero` among its candidates) is skipped in a weight step "
                   "(stochastic depth), so that the supernet scores shallow networks as it "
                   "scores deep ones (docs/history/search_quality.md, section 6). 0: `zero` "
                   "is one random candidate among the others, never in the seed phase (the "
                   "recipe before).")
flags.DEFINE_enum("zero_pairs", "gate", ["gate", "loss"],
                  "How an architecture step judges a sampled pair that holds `zero` (a skipped "
                  "block): gate: by dL/dg as the paper's Eq. 4; `zero`'s own gate gradient is "
                  "0, so this is a first-order guess of what the block adds. loss: by the two "
                  "networks' cross-entropies on the batch, the exact gradient of the pair's "
                  "expected loss, at one more pass through the rest of the network from each "
                  "such block (its cost and effect: docs/history/search_quality.md, sections 7 "
                  "and 15).")
flags.DEFINE_integer("steps_per_epoch", 0, "Weight steps per epoch (0: one pass over the data).")
flags.DEFINE_float("weight_lr", 0.025, "Initial learning rate of the weights (cosine decay).")
flags.DEFINE_float("search_weight_lr", 0.0,
                   "Above 0: the weights' cosine decay spans the warm-up alone and restarts from "
                   "this rate for the search epochs (the official code's schedule; a search "
                   "resumed from a finished warm-up trains its weights on); needs warm-up "
                   "epochs, and a run of warm-up epochs alone ignores it. 0: one cosine over all "
                   "epochs, the search epochs at its tail.")
flags.DEFINE_float("weight_decay", 4e-5, "L2 on conv/dense kernels.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (Nesterov).")
flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the cross-entropy.")
flags.DEFINE_float("arch_lr", 1e-3, "Adam learning rate of alpha.")
flags.DEFINE_float("arch_beta1", 0.0, "Adam beta1 of alpha.")
flags.DEFINE_float("arch_beta2", 0.999, "Adam beta2 of alpha.")
flags.DEFINE_float("arch_init_std", 1e-3, "Alpha is initialised from N(0, std).")
flags.DEFINE_integer("arch_update_every", 5, "One architecture step every K weight steps.")
flags.DEFINE_enum("arch_algo", "grad", ["grad", "reinforce"],
                  "Architecture update: binary-gate gradient, or REINFORCE.")
flags.DEFINE_enum("weight_mode", "binary", ["binary", "full"],
                  "Weight step: one sampled path (binary) or all paths weighted (full, DARTS-like).")


def int_list(values, flag):
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise UsageError(f"--{flag} must be a comma-separated list of integers") from None


def space_from_flags(num_classes=None):
    """The SearchSpace the flags describe."""
    for name in FLAGS.candidates or ():
        try:
            parse_op(name)
        except UsageError as e:
            raise UsageError(f"--candidates: {e}") from None
    overrides = dict(input_size=FLAGS.input_size, width_multiplier=FLAGS.width_multiplier,
                     candidates=tuple(FLAGS.candidates) if FLAGS.candidates else None,
                     dropout=FLAGS.dropout, num_classes=num_classes)
    for name in ("widths", "depths", "strides"):
        if getattr(FLAGS, name):
            overrides[name] = int_list(getattr(FLAGS, name), name)
    return search_space.make_space(FLAGS.space, **overrides)


def check_positive(**values):
    for name, value in values.items():
        if value is None or value <= 0:
            raise UsageError(f"--{name} must be positive, got {value}")


# === flags several commands share ============================================================
# --arch, --output, --quick, --latency_table and --export_tflite: each is defined here, once, and
# only if the program has not defined it already (a script that defines its own --quick before
# it imports this module keeps it).
def _define_once(define, name, *args, **kwargs):
    if name not in FLAGS:
        define(name, *args, **kwargs)


_define_once(flags.DEFINE_string, "arch", None,
             "Architecture: an arch JSON file (a search's OUTPUT_DIR/arch.json), a reference "
             "name (mobilenet_v2, proxyless_mobile, proxyless_gpu, proxyless_cpu) or all:OP "
             "(every searchable block set to OP). train defaults to OUTPUT_DIR/arch.json.")
_define_once(flags.DEFINE_string, "latency_table", None,
             "Latency lookup table: JSON written by `latency build`, or the official "
             "mobile_trim.yaml. Relative paths are tried from the working directory, then "
             "from the repository root. 'auto': the table built on this machine for the "
             "space (measured on first use, then cached). Enables the latency-aware search; "
             "export reports its prediction next to the measured latency.")
flags.DEFINE_alias("table", "latency_table")
_define_once(flags.DEFINE_string, "output", None,
             "Output file. latency build: the table; export: the .tflite file to write "
             "(default: next to --model, or runs/export/NAME.KIND.tflite), its report next to "
             "it.")
_define_once(flags.DEFINE_bool, "quick", False, "A short run of the command (minutes).")
_define_once(flags.DEFINE_bool, "export_tflite", False,
             "After training (train) or searching (search: the derived network with the "
             "supernet's weights), export to TFLite as `python -m export` would, with "
             "--quantize and --qat_epochs, next to the model / in --output_dir.")


# === retraining and TFLite export (python -m proxyless_tf.train, python -m export) ============
# Train-only flags start with `train_` where the search has a flag of the same name.

# train
flags.DEFINE_string("train_output_dir", None,
                    "Where train writes model.keras, results.json, checkpoints/ (rerun to resume), "
                    "tensorboard/ and history.csv (default: OUTPUT_DIR/train).")
flags.DEFINE_integer("train_epochs", 300, "Retraining epochs (the paper: 300).")
flags.DEFINE_integer("train_warmup_epochs", 0, "Epochs of linear learning-rate warm-up.")
flags.DEFINE_integer("train_steps_per_epoch", 0, "Steps per retraining epoch (0: one pass).")
flags.DEFINE_float("train_lr", 0.05,
                   "Peak learning rate of the retraining (SGD Nesterov, cosine decay to 0).")

# export
flags.DEFINE_string("model", None, "A trained Keras model (DIR/model.keras from train).")
flags.DEFINE_string("quantize", "none",
                    "none (float32), float16, dynamic (dynamic-range int8 weights) or int8 (full "
                    "integer, calibrated on the training pipeline's held-out images).")
flags.DEFINE_bool("int8_io", False, "With int8: int8 model input and output instead of float.")
flags.DEFINE_integer("qat_epochs", 0,
                     "Quantization-aware training epochs (tensorflow-model-optimization) before "
                     "an int8 conversion (0: post-training quantization).")
flags.DEFINE_integer("qat_steps_per_epoch", 0, "Steps per QAT epoch (0: one pass).")
flags.DEFINE_float("qat_lr", 1e-3, "Peak learning rate of QAT fine-tuning (cosine decay to 0).")
flags.DEFINE_integer("calibration_images", 256, "Images for int8 calibration.")
flags.DEFINE_integer("report_images", 10000,
                     "Test images for the report's logits comparison and accuracy (0: all).")
flags.DEFINE_integer("export_threads", None,
                     "Interpreter threads for the report's latency (default: --latency_threads "
                     "when that flag exists and is positive, else 1).")
flags.DEFINE_integer("export_latency_runs", None,
                     "Timed runs for the report's latency (default: --latency_runs, else 50).")
flags.DEFINE_integer("export_latency_warmup", None,
                     "Untimed runs before them (default: --latency_warmup, else 10).")


# --- latency (hardware-aware search; proxyless_tf.latency, proxyless_tf.reinforce) -------------
# --latency_table is among the shared flags above. proxyless_tf/flag_configs.py makes these flags
# the library's LatencyConfig and ReinforceConfig (and --strategy etc. its DistributeConfig).
flags.DEFINE_float("target_ms", None, "Latency target T in milliseconds.")
flags.DEFINE_float("target_ratio", None,
                   "Latency target as a ratio of --target_reference's predicted latency on the "
                   "same table (0.8 = 0.8x that network).")
flags.DEFINE_string("target_reference", "mobilenet_v2",
                    "The network --target_ratio refers to: a reference name, all:OP or an arch "
                    "JSON (its blocks must be in the table; `latency build` measures "
                    "--latency_references too).")
flags.DEFINE_enum("latency_loss", "mul_log",
                  ["lambda", "mul_log", "add_linear", "abs", "hinge"],
                  "Latency term of the architecture loss: lambda = CE + lambda*E[LAT] (paper); "
                  "mul_log = CE*a*(log E[LAT]/log T)^b (official default); add_linear = "
                  "CE + lambda*(E[LAT]-T)/T; abs = CE + beta*|E[LAT]/T - 1| (TuNAS-style); "
                  "hinge = CE + beta*max(E[LAT]/T - 1, 0) (only latency above T is penalised).")
flags.DEFINE_float("latency_lambda", None,
                   "lambda of the 'lambda' (per ms) and 'add_linear' forms. Default 0.2 for "
                   "add_linear and 0.2/T for lambda (the same slope at any latency).")
flags.DEFINE_float("latency_a", 0.2, "a of the mul_log form.")
flags.DEFINE_float("latency_b", 0.3, "b (exponent) of the mul_log form.")
flags.DEFINE_float("latency_beta", 2.0,
                   "beta of the abs and hinge forms (a positive penalty weight).")
flags.DEFINE_enum("latency_stat", "auto", ["auto", "mean", "median"],
                  "Which statistic of a table entry is the latency: auto = median where the entry "
                  "has one (tables built here), else mean (the official table).")
flags.DEFINE_enum("latency_runtime", "tflite", ["tflite", "tf_cpu", "tf_gpu"],
                  "What latency is measured on: tflite (LiteRT interpreter, XNNPACK), tf_cpu "
                  "(TensorFlow graph on the CPU) or tf_gpu (TensorFlow graph on a GPU).")
flags.DEFINE_integer("latency_threads", 1,
                     "Threads of the measured runtime (0: the runtime's default).")
flags.DEFINE_integer("latency_batch", 1, "Batch size of the latency measurements.")
flags.DEFINE_enum("latency_quantization", "none", list(MODES),
                  "The TFLite format latency is measured in (tflite runtime): none (float32), "
                  "float16, dynamic or int8 (full integer, calibrated on random inputs, converted "
                  "as `export --quantize=int8` converts). Recorded in every table and in the "
                  "--latency_table=auto cache key; a table of another format is an error. Search "
                  "for the format you ship: flags/mobile_int8.cfg.")
flags.DEFINE_integer("latency_warmup", 10, "Untimed runs before each measurement.")
flags.DEFINE_integer("latency_runs", 50, "Timed runs per measurement.")
flags.DEFINE_integer("latency_rounds", 3,
                     "latency build/validate: time every model in this many rounds (a pass over "
                     "all of them each) and keep the median of the quietest round (the lowest "
                     "round median), so that a shared machine's load does not bias entries.")
flags.DEFINE_integer("latency_calibrate", 20,
                     "latency build / calibrate: random networks of the space measured end to "
                     "end after the parts, to fit the table's calibration: measured = factor x "
                     "parts' sum + ms_per_mweight x weights (0: none). Parts timed alone keep "
                     "their weights in cache; in a network every inference streams them from "
                     "memory.")
flags.DEFINE_bool("latency_clean", True,
                  "tflite with 1 thread: drop (and repeat) timed runs during which the thread "
                  "was preempted by another process (a shared machine).")
flags.DEFINE_float("latency_quiet", 0.0,
                   "If > 0, wait before each measurement until all CPUs together are at most "
                   "this busy (0.25 = a quarter), for up to --latency_quiet_timeout seconds.")
flags.DEFINE_float("latency_quiet_timeout", 60.0, "Longest wait for --latency_quiet (seconds).")
flags.DEFINE_bool("latency_rebuild", False, "latency build: measure again entries already in the table.")
flags.DEFINE_list("latency_references",
                  ["mobilenet_v2", "proxyless_mobile", "proxyless_gpu", "proxyless_cpu"],
                  "latency build: reference networks whose blocks are measured too (so ratio "
                  "targets and validation can use them).")
flags.DEFINE_integer("latency_num_classes", None,
                     "latency build/validate: classes of the classifier entry (default: the "
                     "space preset's; imagenet 1000, small_input 10).")
flags.DEFINE_list("compare_formats", ["none", "int8"],
                  "latency compare: the --latency_quantization formats whose op costs are "
                  "compared, the base first (the tables built here for each, cached).")
flags.DEFINE_integer("validate_count", 30, "latency validate: random architectures (plus references).")
flags.DEFINE_string("validate_dir", "runs/latency_validate",
                    "latency validate: where validate.json, validate.md and validate.png go.")
# The check of the table against the machine that runs the search (issue 15;
# proxyless_tf/latency/check.py, docs/latency.md).
flags.DEFINE_bool("latency_check", True,
                  "search and latency validate: first time a few whole networks here (the "
                  "--target_ratio reference, one network per kernel size, "
                  "--latency_check_networks more and 3 held out to judge a refit), adding "
                  "rounds while they disagree, and refit the table to this machine (a scale "
                  "per kernel size) when it is off by more than the timings' noise explains; a "
                  "table still off by more than 10% stops the search with one line. A ratio "
                  "target refers to the reference as measured here. Measurements are cached "
                  "(--latency_cache_dir); the next run re-times the reference and times again "
                  "what has drifted. Turn it off for a table measured on the target device.")
flags.DEFINE_integer("latency_check_networks", 2,
                     "Networks of the space the check times besides the reference and one "
                     "uniform network per kernel size, spread over the table's predicted "
                     "latencies from the fastest to the median (each costs a TFLite "
                     "conversion, seconds).")
flags.DEFINE_bool("latency_recheck", False,
                  "Time the check's networks again instead of reusing the cached measurements.")
flags.DEFINE_string("latency_cache_dir", None,
                    "Where measurements made on this machine are cached: the check's networks, "
                    "refitted tables and --latency_table=auto tables (default: "
                    "$XDG_CACHE_HOME/proxyless_tf/latency, else ~/.cache/proxyless_tf/latency).")
flags.DEFINE_enum("latency_source", "table", ["table", "measure"],
                  "REINFORCE: latency of a sampled network from the table, or measured "
                  "(converted to TFLite and timed, cached per architecture).")
flags.DEFINE_integer("reinforce_samples", 10, "REINFORCE: architectures sampled per update (M).")
flags.DEFINE_enum("reinforce_reward", "mul", ["mul", "abs"],
                  "REINFORCE reward: mul = ACC*(LAT/T)^w (MnasNet), abs = ACC + beta*|LAT/T-1| "
                  "(TuNAS).")
flags.DEFINE_float("reinforce_w", -0.07, "w of the mul reward (MnasNet -0.07; official code -0.1).")
flags.DEFINE_float("reinforce_beta", -0.5, "beta of the abs reward (negative: a penalty).")
flags.DEFINE_float("reinforce_baseline_decay", 0.99, "Decay of the moving-average reward baseline.")


# --- keras-tuner integration (python -m proxyless_tf.tune; proxyless_tf.tuner) -----------------
# The per-trial training reuses the retraining flags (--train_lr, --momentum, --weight_decay,
# --label_smoothing, --batch_size); the REINFORCE reward reuses --reinforce_reward, --reinforce_w,
# --reinforce_beta, --reinforce_baseline_decay, --arch_beta1 and --arch_beta2; latency comes from
# --latency_table/--target_* or, with --latency_source=measure, from --latency_runtime.
_define_once(flags.DEFINE_string, "oracle", "proxyless",
             "tune: proxyless (REINFORCE over softmax(alpha)), random or bayesian (keras-tuner's "
             "random search or Bayesian optimisation over the same space).")
_define_once(flags.DEFINE_integer, "max_trials", 10, "tune: trials in all (a resumed run counts "
             "the trials it already has).")
flags.DEFINE_integer("tune_epochs", 2, "tune: training epochs of every trial's candidate.")
flags.DEFINE_integer("tune_steps_per_epoch", 0,
                     "tune: steps per trial epoch (0: --steps_per_epoch when set, else one pass).")
flags.DEFINE_string("tune_supernet", None,
                    "tune: a finished supernet search's output dir; trials then score each "
                    "candidate with the supernet's weights on the validation split instead of "
                    "training it (seconds per trial). Give the search's space flags.")
flags.DEFINE_string("tune_init_from", None,
                    "tune --oracle=proxyless: start alpha from the per-block probabilities of a "
                    "finished search's arch.json (alpha = log p).")
flags.DEFINE_float("tune_arch_lr", 0.05,
                   "tune --oracle=proxyless: Adam learning rate of alpha (one update per "
                   "--tune_samples_per_update finished trials).")
flags.DEFINE_integer("tune_samples_per_update", 1,
                     "tune --oracle=proxyless: finished trials per REINFORCE update (M).")
flags.DEFINE_string("tune_project", None,
                    "tune: keras-tuner project name under --output_dir (default: the oracle's "
                    "name). Rerunning the command resumes that project.")
flags.DEFINE_bool("tune_overwrite", False, "tune: start the project afresh instead of resuming.")


# --- tf.distribute (search and train: --strategy; proxyless_tf.distribute) ----------------------
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy: default (one device), mirrored (this host's GPUs, or "
                  "the --logical_cpus devices), multi_worker (the machines in TF_CONFIG) or tpu "
                  "(--tpu). --batch_size is the global batch, split over the replicas.")
flags.DEFINE_enum("path_sampling", "shared", ["shared", "per_replica"],
                  "Search under several replicas: every replica uses the same sampled paths in "
                  "a step (shared), or each samples its own (per_replica, as TuNAS per core).")
flags.DEFINE_string("tpu", "",
                    "--strategy=tpu: the TPU name or grpc:// address ('' on a TPU VM: the local "
                    "TPU).")
flags.DEFINE_integer("logical_cpus", 0,
                     "Split the host CPU into this many logical devices before TensorFlow "
                     "starts (0: no split), so --strategy=mirrored runs several replicas on a "
                     "machine without GPUs (for trying and testing it; no speed-up).")


def set_last(names, argv=None):
    """Of the flags `names`, the one the command line sets last, flagfiles expanded in place
    (None when it sets none of them). Flagfiles compose with later flags winning, so of two
    alternatives (--target_ms after a flagfile's --target_ratio) the later one is meant."""
    try:
        expanded = FLAGS.read_flags_from_files(list(sys.argv[1:] if argv is None else argv))
    except (flags.Error, OSError):
        return None
    last = None
    for arg in expanded:
        if arg == "--":
            break
        name = arg.lstrip("-").split("=", 1)[0] if arg.startswith("-") else None
        last = name if name in names else last
    return last
