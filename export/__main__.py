"""`python -m export --model=DIR/model.keras [--output=net.tflite] [--quantize=MODE]
[--qat_epochs=N]` or `python -m export --arch=ARCH [--input_size=224]` (random weights).

MODE: none (float32), float16, dynamic (dynamic-range), int8 (full integer; --int8_io for int8
input/output). Writes the .tflite and, next to it, NAME.report.json and NAME.report.md.

With --model, the dataset defaults to the one the model was trained on (results.json next to
it) and the architecture to arch.json next to it. With --arch, a reference name is the published
network (224x224, ImageNet strides, 1000 classes) unless --space or --dataset are given; the
test images only feed the Keras-vs-TFLite comparison (the embedded digits by default).
"""

if __name__ == "__main__":  # before anything loads TensorFlow: no native start-up lines
    from proxyless_tf import quiet
    quiet.start_tensorflow()

import os

from absl import app, logging

import export
from proxyless_tf import arch_flags, architecture, io_utils, options
from proxyless_tf.errors import UsageError, exit_on_usage_error

FLAGS = options.FLAGS


def _dataset(defaults):
    """--dataset/--data_dir, else what the model was trained on."""
    dataset = FLAGS.dataset
    data_dir = FLAGS.data_dir
    if not arch_flags.flag_given("dataset") and defaults.get("dataset"):
        dataset = defaults["dataset"]
        if not arch_flags.flag_given("data_dir"):
            data_dir = defaults.get("data_dir")
    return dataset, data_dir


def _load_splits(dataset, data_dir, input_size):
    from proxyless_tf import data
    return data.load(dataset, input_size, FLAGS.batch_size, data_dir, FLAGS.download,
                     FLAGS.valid_fraction, FLAGS.seed, FLAGS.max_train_examples)


def export_trained(settings):
    path = FLAGS.model
    if not os.path.isfile(path):
        raise UsageError(f"--model={path!r} does not exist")
    if not path.endswith(".keras"):
        raise UsageError(f"--model={path!r} is not a .keras file")
    directory = os.path.dirname(path)
    results_path = os.path.join(directory, "results.json")
    results = io_utils.read_json(results_path, "results file") \
        if os.path.exists(results_path) else {}
    arch_path = os.path.join(directory, "arch.json")
    if os.path.exists(arch_path):
        arch = architecture.Architecture.load(arch_path)
    elif FLAGS.arch:
        arch = arch_flags.resolve_for_training(FLAGS.arch)
    else:
        arch = None
    dataset, data_dir = _dataset(results)
    if arch is not None:  # check the sizes before loading TensorFlow
        arch_flags.check_input_size(arch.input_size, f"--model={path}", dataset, data_dir)

    import keras
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # a corrupt or foreign file
        raise UsageError(f"--model={path!r} cannot be loaded: {str(e).splitlines()[0]}") from None
    size = int(model.inputs[0].shape[1])
    if arch is None:
        arch_flags.check_input_size(size, f"--model={path}", dataset, data_dir)
    elif arch.input_size != size:
        raise UsageError(f"{arch_path} says {arch.input_size}x{arch.input_size} but the model "
                         f"takes {size}x{size} inputs")
    splits = _load_splits(dataset, data_dir, size)
    classes = int(model.outputs[0].shape[-1])
    if splits.num_classes != classes:
        raise UsageError(f"--model={path} has {classes} classes but --dataset={dataset} has "
                         f"{splits.num_classes}")
    output = FLAGS.output or export.default_output(path, settings)
    return export.export_model(model, output, settings, splits, arch=arch, source=path,
                               weights="trained", dataset=dataset)


def export_random(settings):
    spec = FLAGS.arch
    dataset, data_dir = FLAGS.dataset, FLAGS.data_dir
    published = spec in architecture.REFERENCE_NAMES and not arch_flags.flag_given("space")
    if published:
        input_size = FLAGS.input_size or 224
    elif arch_flags.is_named(spec):
        input_size = options.space_from_flags().input_size
    else:
        arch = architecture.resolve(spec)
        if FLAGS.input_size and FLAGS.input_size != arch.input_size:
            arch = arch.with_input(FLAGS.input_size)  # a candidate at another resolution
        input_size = arch.input_size
    if arch_flags.flag_given("dataset"):
        arch_flags.check_input_size(input_size, f"--arch={spec}", dataset, data_dir)

    import keras
    keras.utils.set_random_seed(FLAGS.seed)
    splits = _load_splits(dataset, data_dir, input_size)
    classes = splits.num_classes if arch_flags.flag_given("dataset") else None
    if published:
        arch = architecture.reference(spec, input_size, classes or 1000)
    elif arch_flags.is_named(spec):
        arch = architecture.resolve(spec, options.space_from_flags(num_classes=classes))
    model = arch_flags.build_model(arch)
    name = arch_flags.keras_safe(arch).name
    output = FLAGS.output or os.path.join("runs", "export", f"{name}.{settings.kind}.tflite")
    labelled = arch_flags.flag_given("dataset") and arch.num_classes == splits.num_classes
    return export.export_model(model, output, settings, splits, arch=arch, source=f"--arch={spec}",
                               weights="random", dataset=dataset, labelled=labelled)


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.set_verbosity(logging.WARNING)
    settings = export.settings_from_flags(require_table=True)
    if FLAGS.output is not None and not FLAGS.output.endswith(".tflite"):
        raise UsageError(f"--output={FLAGS.output!r} should end in .tflite")
    if FLAGS.model:
        export_trained(settings)
    elif FLAGS.arch:
        export_random(settings)
    else:
        raise UsageError("pass --model=DIR/model.keras (a trained model) or --arch=ARCH "
                         "(random weights)")


if __name__ == "__main__":
    app.run(exit_on_usage_error(main))
