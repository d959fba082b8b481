"""Command-line flags shared by every command (search, train, latency, tune, export).

They live in one module so that flagfiles compose: `flags/mobile.cfg` can set latency flags and
still be passed to `train` or `tune`. Each command reads only the flags it needs.
"""

from absl import flags

from proxyless_tf import search_space
from proxyless_tf.errors import UsageError

FLAGS = flags.FLAGS

# --- search space ------------------------------------------------------------------------------
flags.DEFINE_enum("space", "small_input", list(search_space.SPACES),
                  "Backbone preset: 'imagenet' (224x224, paper) or 'small_input' (32x32 images).")
flags.DEFINE_integer("input_size", None, "Input resolution (default: the preset's).")
flags.DEFINE_float("width_multiplier", 1.0, "Channel multiplier; channels round to multiples of 8.")
flags.DEFINE_list("widths", None, "Output channels of the six stages (default 24,40,80,96,192,320).")
flags.DEFINE_list("depths", None, "Blocks per stage (default 4,4,4,4,4,1).")
flags.DEFINE_list("strides", None, "First stride of each stage.")
flags.DEFINE_list("candidates", list(search_space.DEFAULT_CANDIDATES),
                  "Candidate ops per searchable block: k<kernel>e<expand> or zero.")
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

# --- output ----------------------------------------------------------------------------------
flags.DEFINE_string("output_dir", "runs/search", "Where results, checkpoints and logs go.")

# --- search (bi-level loop) --------------------------------------------------------------------
flags.DEFINE_integer("epochs", 120, "Search epochs (warm-up included).")
flags.DEFINE_integer("warmup_epochs", 40, "Epochs that train weights only before alpha moves.")
flags.DEFINE_integer("steps_per_epoch", 0, "Weight steps per epoch (0: one pass over the data).")
flags.DEFINE_float("weight_lr", 0.025, "Initial learning rate of the weights (cosine decay).")
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
    overrides = dict(input_size=FLAGS.input_size, width_multiplier=FLAGS.width_multiplier,
                     candidates=tuple(FLAGS.candidates), dropout=FLAGS.dropout,
                     num_classes=num_classes)
    for name in ("widths", "depths", "strides"):
        if getattr(FLAGS, name):
            overrides[name] = int_list(getattr(FLAGS, name), name)
    return search_space.make_space(FLAGS.space, **overrides)


def check_positive(**values):
    for name, value in values.items():
        if value is None or value <= 0:
            raise UsageError(f"--{name} must be positive, got {value}")
