"""`python -m proxyless_tf.train --arch=DIR/arch.json [--flagfile=flags/cifar10.cfg]`

Retrains a derived (or reference) network from scratch with the paper's recipe: SGD with
Nesterov momentum, cosine learning rate with optional linear warm-up, label smoothing, coupled L2
weight decay on conv/dense kernels, dropout before the classifier. `--arch` takes an arch JSON
file (what a search writes as OUTPUT_DIR/arch.json; the default), a reference name
(mobilenet_v2, proxyless_mobile, proxyless_gpu, proxyless_cpu, resolved in the flags' search
space) or `all:OP`.

Leaves in --train_output_dir (default OUTPUT_DIR/train): checkpoints/ (rerunning the same command
resumes from the last finished epoch), tensorboard/, history.csv, arch.json (what was trained),
and at the end model.keras and results.json (test accuracy). `--export_tflite` then exports the
model as `python -m export` would (see docs/export.md). `--strategy=mirrored|multi_worker|tpu`
trains under tf.distribute (`--batch_size` is the global batch; BUILD.md, "Scaling out").
"""

if __name__ == "__main__":  # before anything loads TensorFlow: no native start-up lines
    from proxyless_tf import quiet
    quiet.start_tensorflow()

import dataclasses
import os
import time
import warnings

from absl import app, logging

import export
from proxyless_tf import architecture, io_utils, options, reproducible
# What export shares with training; build_model and keras_safe stay importable from here.
from proxyless_tf.arch_flags import (build_model, check_input_size, flag_given,  # noqa: F401
                                     keras_safe, resolve_for_training)
from proxyless_tf.errors import UsageError, exit_on_usage_error, require_settings

FLAGS = options.FLAGS


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 300
    batch_size: int = 64
    warmup_epochs: int = 0
    steps_per_epoch: int = 0  # 0: one pass over the training split
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    seed: int = 0
    deterministic: bool = False  # op determinism (proxyless_tf.reproducible)
    verbose: int = 1  # Keras fit verbosity: 1 is the progress bar


# How the command line names TrainConfig's fields (and the arch's dropout) in its messages.
FLAG_NAMES = {"epochs": "--train_epochs", "batch_size": "--batch_size", "lr": "--train_lr",
              "warmup_epochs": "--train_warmup_epochs",
              "steps_per_epoch": "--train_steps_per_epoch", "momentum": "--momentum",
              "label_smoothing": "--label_smoothing", "weight_decay": "--weight_decay",
              "dropout": "--dropout"}


def check_config(config, dropout=0.0, names=None):
    """A UsageError naming the first setting training cannot run with (`names`: how to call
    each field, FLAG_NAMES on the command line; `proxyless_tf.api.retrain` uses the fields')."""
    name = lambda field: (names or {}).get(field, field)  # noqa: E731
    require_settings(config, ("epochs", "batch_size", "lr"),
                     ("warmup_epochs", "steps_per_epoch"), name)
    if config.warmup_epochs >= config.epochs:
        raise UsageError(f"{name('warmup_epochs')}={config.warmup_epochs} must be less than "
                         f"{name('epochs')}={config.epochs}")
    if not 0 <= config.label_smoothing < 1 or config.weight_decay < 0 or config.momentum < 0:
        raise UsageError(f"{name('label_smoothing')} must be in [0, 1), {name('weight_decay')} "
                         f"and {name('momentum')} >= 0")
    if not 0 <= dropout < 1:
        raise UsageError(f"{name('dropout')} must be in [0, 1), got {dropout}")


def config_from_flags():
    config = TrainConfig(
        epochs=FLAGS.train_epochs, batch_size=FLAGS.batch_size,
        warmup_epochs=FLAGS.train_warmup_epochs, steps_per_epoch=FLAGS.train_steps_per_epoch,
        lr=FLAGS.train_lr, momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay,
        label_smoothing=FLAGS.label_smoothing, seed=FLAGS.seed,
        deterministic=FLAGS.deterministic)
    check_config(config, FLAGS.dropout, FLAG_NAMES)
    return config


def default_arch_spec():
    if FLAGS.arch:
        return FLAGS.arch
    path = os.path.join(FLAGS.output_dir, "arch.json")
    if not os.path.exists(path):
        raise UsageError(f"no --arch given and {path} (a search's output) does not exist")
    return path


def one_hot(dataset, num_classes):
    import tensorflow as tf
    return dataset.map(lambda x, y: (x, tf.one_hot(y, num_classes)))


# --- training ---------------------------------------------------------------------------------


def _callbacks(output_dir, manager, epoch_var, extra):
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        """Saves model, optimizer and the finished-epoch count after every epoch."""

        def on_epoch_end(self, epoch, logs=None):
            epoch_var.assign(epoch + 1)
            manager.save(checkpoint_number=epoch + 1)

    class LearningRateLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                opt = self.model.optimizer
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(opt.learning_rate))

    return [LearningRateLog(),
            keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
            keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard"),
                                        write_graph=False, update_freq="epoch"),
            EpochCheckpoint(), *extra]


def learning_rate_schedule(config, steps_per_epoch):
    """Linear warm-up from 0 to `config.lr` over the warm-up epochs, then cosine decay to 0 at
    the end of the last epoch (per step)."""
    import keras
    total = config.epochs * steps_per_epoch
    warmup = config.warmup_epochs * steps_per_epoch
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, total - warmup, alpha=0.0, warmup_target=config.lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(config.lr, total, alpha=0.0)


def train(arch, splits, output_dir, config, callbacks=(), dataset=None, data_dir=None,
          strategy=None):
    """Trains `arch` on `splits` (a data.Splits) into `output_dir`, resuming from its checkpoint.
    Returns (model, results): the trained Keras model and what results.json holds.
    `callbacks` run after the per-epoch checkpoint (tests use one to interrupt a run);
    `dataset` and `data_dir` are recorded so that `python -m export --model` finds the data.
    `strategy`: a tf.distribute strategy (default: one device); the batch size is global. On a
    multi-worker cluster only the chief writes `output_dir` (the others resume from it)."""
    import tensorflow as tf
    from proxyless_tf import distribute

    strategy = strategy or tf.distribute.get_strategy()
    distribute.check_global_batch(config.batch_size, strategy)
    io_utils.ensure_writable_dir(output_dir, "--train_output_dir")
    arch_path = os.path.join(output_dir, "arch.json")
    if os.path.exists(arch_path):
        previous = architecture.Architecture.load(arch_path)
        if previous.to_json()["blocks"] != arch.to_json()["blocks"] or \
                (previous.input_size, previous.num_classes) != (arch.input_size, arch.num_classes):
            raise UsageError(f"{output_dir} holds the training of another architecture "
                             f"({previous.name}); choose another --train_output_dir")
    write_dir = distribute.scratch_dir(output_dir, strategy)  # output_dir on the chief
    try:
        return _train(arch, splits, output_dir, write_dir, config, callbacks, dataset, data_dir,
                      strategy)
    finally:
        distribute.cleanup(write_dir, output_dir)


def _train(arch, splits, output_dir, write_dir, config, callbacks, dataset, data_dir, strategy):
    import keras
    import tensorflow as tf
    from proxyless_tf import blocks, distribute, optimizers

    arch.save(os.path.join(write_dir, "arch.json"))

    reproducible.seed_everything(config.seed, config.deterministic)
    steps = config.steps_per_epoch or max(1, splits.train_size // config.batch_size)
    valid_steps = splits.valid_size // config.batch_size
    schedule = learning_rate_schedule(config, steps)
    # Coupled L2 on conv/dense kernels, as PyTorch's SGD weight_decay in the paper's code; with
    # no path mask this optimiser is plain SGD (Nesterov) plus that L2 term.
    with strategy.scope():  # variables mirrored over the replicas; fit distributes the data
        optimizer = optimizers.SampledPathSGD(l2=config.weight_decay, learning_rate=schedule,
                                              momentum=config.momentum, nesterov=True)
        model = build_model(arch)
        model.compile(optimizer=optimizer,
                      loss=keras.losses.CategoricalCrossentropy(
                          from_logits=True, label_smoothing=config.label_smoothing),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
        optimizer.build(model.trainable_variables)
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="finished_epochs")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    # Every worker resumes from output_dir; each saves to its write_dir (the chief's is it).
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(output_dir, "checkpoints"),
                                         max_to_keep=2)
    saver = manager if write_dir == output_dir else tf.train.CheckpointManager(
        checkpoint, os.path.join(write_dir, "checkpoints"), max_to_keep=1)
    if manager.latest_checkpoint:
        try:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise UsageError(f"cannot resume from {manager.latest_checkpoint}: "
                             f"{str(e).splitlines()[0]}") from None
        if config.verbose:
            print(f"resuming from {manager.latest_checkpoint}: epoch {int(epoch_var.numpy())}"
                  f"/{config.epochs}, step {int(optimizer.iterations.numpy())}")
    start_epoch = int(epoch_var.numpy())
    distribute.check_workers_agree(strategy, start_epoch, "the epoch to resume from")

    n = splits.num_classes
    # Our pipelines are shuffled by tf.data; Keras warns that fit's own shuffle does not apply.
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")
    started = time.time()
    if start_epoch < config.epochs:
        model.fit(one_hot(splits.train, n), epochs=config.epochs, initial_epoch=start_epoch,
                  steps_per_epoch=steps,
                  validation_data=one_hot(splits.valid, n) if valid_steps else None,
                  validation_steps=valid_steps or None,
                  callbacks=_callbacks(write_dir, saver, epoch_var, callbacks),
                  verbose=config.verbose)
    train_seconds = time.time() - started
    test = model.evaluate(one_hot(splits.test, n), verbose=0, return_dict=True)

    # model.keras holds a fresh copy: weights and architecture, no optimiser or compile state,
    # so it loads anywhere without the custom optimiser.
    clean = build_model(arch)
    clean.set_weights(model.get_weights())
    model_path = os.path.join(write_dir, "model.keras")
    with io_utils.atomic_path(model_path) as tmp:
        clean.save(tmp)
    results = {
        "arch": arch.name, "ops": arch.ops, "params": blocks.count_params(clean),
        "input_size": arch.input_size, "num_classes": arch.num_classes,
        "dataset": dataset, "data_dir": os.path.abspath(data_dir) if data_dir else None,
        "epochs": config.epochs, "steps_per_epoch": steps, "batch_size": config.batch_size,
        "lr": config.lr, "warmup_epochs": config.warmup_epochs, "momentum": config.momentum,
        "weight_decay": config.weight_decay, "label_smoothing": config.label_smoothing,
        "dropout": arch.dropout, "seed": config.seed,
        "resumed_from_epoch": start_epoch, "train_seconds_this_run": round(train_seconds, 1),
        "train_examples": splits.train_size, "test_examples": splits.test_size,
        "test_accuracy": float(test["accuracy"]), "test_loss": float(test["loss"]),
        "model": model_path,
    }
    io_utils.write_json(os.path.join(write_dir, "results.json"), results)
    return clean, results


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.set_verbosity(logging.WARNING)
    config = config_from_flags()
    if FLAGS.export_tflite:
        export_settings = export.settings_from_flags(require_table=True)  # before training
    spec = default_arch_spec()
    arch = resolve_for_training(spec)
    check_input_size(arch.input_size, f"--arch={spec}", FLAGS.dataset, FLAGS.data_dir)
    output_dir = FLAGS.train_output_dir or os.path.join(FLAGS.output_dir, "train")
    io_utils.ensure_writable_dir(output_dir, "--train_output_dir")
    from proxyless_tf import distribute, flag_configs
    strategy = flag_configs.strategy_from_flags()  # before the first TensorFlow op
    distribute.check_global_batch(FLAGS.batch_size, strategy)
    chief = distribute.is_chief(strategy)

    from proxyless_tf import data
    splits = data.load(FLAGS.dataset, arch.input_size, FLAGS.batch_size, FLAGS.data_dir,
                       FLAGS.download, FLAGS.valid_fraction, FLAGS.seed, FLAGS.max_train_examples)
    arch = resolve_for_training(spec, splits.num_classes)
    if flag_given("dropout"):
        arch = dataclasses.replace(arch, dropout=FLAGS.dropout)
    if chief:
        io_utils.write_text(os.path.join(output_dir, "flags.txt"), FLAGS.flags_into_string())
    print(f"training {arch.name}: {' '.join(arch.ops)} on {FLAGS.dataset} "
          f"({splits.train_size} images) for {config.epochs} epochs"
          + (f" ({FLAGS.strategy}: {strategy.num_replicas_in_sync} replicas, global batch "
             f"{FLAGS.batch_size})" if FLAGS.strategy != "default" else ""))
    model, results = train(arch, splits, output_dir, config, dataset=FLAGS.dataset,
                           data_dir=FLAGS.data_dir, strategy=strategy)
    print(f"test accuracy {results['test_accuracy']:.4f} on {results['test_examples']} images")
    if not chief:
        return
    print(f"wrote {results['model']} and {os.path.join(output_dir, 'results.json')}")
    if FLAGS.export_tflite:
        output = FLAGS.output or export.default_output(results["model"], export_settings)
        export.export_model(model, output, export_settings, splits=splits, arch=arch,
                            source=results["model"], weights="trained", dataset=FLAGS.dataset)


if __name__ == "__main__":
    app.run(exit_on_usage_error(main))
