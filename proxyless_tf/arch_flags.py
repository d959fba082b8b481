"""What training (`python -m proxyless_tf.train`) and export (`python -m export`, and its QAT)
share: the architecture an `--arch` names, checked against the images the data flags give, and
the Keras model built from it under a name Keras accepts.

It sits below both `proxyless_tf.train` and `export` (train exports with `--export_tflite`, and
the QAT in `export.qat` rebuilds the trained network), so neither imports the other for these.
Importing it does not load TensorFlow.
"""

import dataclasses

from proxyless_tf import architecture, options
from proxyless_tf.errors import UsageError

FLAGS = options.FLAGS

EMBEDDED_DATASET = "digits"  # data.EMBEDDED, written out so the CLI checks run without TensorFlow
EMBEDDED_IMAGE_SIZE = 32     # data.py upsamples the 8x8 digits to 32x32


def flag_given(name):
    """True when the flag was set on the command line or in a flagfile."""
    return bool(FLAGS[name].present)


def dataset_image_size(name, data_dir):
    """The side of the dataset's images when all have one fixed square size, else None."""
    if name == EMBEDDED_DATASET:
        return EMBEDDED_IMAGE_SIZE
    if name == "folder":
        return None
    try:
        import tensorflow_datasets as tfds
        builder = tfds.builder(name, data_dir=data_dir or None)
        shape = builder.info.features["image"].shape
    except Exception:  # unknown names and odd features are reported by data.load
        return None
    if len(shape) == 3 and shape[0] and shape[0] == shape[1]:
        return int(shape[0])
    return None


def check_input_size(arch_size, what, dataset, data_dir):
    """An architecture must take the images the pipeline gives: --input_size when given (images
    are resized to it), else the dataset's own image size."""
    if flag_given("input_size") and FLAGS.input_size:
        if FLAGS.input_size != arch_size:
            raise UsageError(f"{what} takes {arch_size}x{arch_size} inputs but --input_size="
                             f"{FLAGS.input_size}")
        return
    native = dataset_image_size(dataset, data_dir)
    if native is not None and native != arch_size:
        raise UsageError(f"{what} takes {arch_size}x{arch_size} inputs but {dataset} images are "
                         f"{native}x{native}: pass --input_size={arch_size} to resize them, or use "
                         f"an architecture for {native}x{native} inputs")


def keras_safe(arch):
    """The same architecture with a name Keras accepts as a model name (`all:k3e3` is not)."""
    name = architecture.keras_name(arch.name)
    return arch if name == arch.name else dataclasses.replace(arch, name=name)


def is_named(spec):
    return spec in architecture.REFERENCE_NAMES or spec.startswith("all:")


def resolve_for_training(spec, num_classes=None):
    """The arch `spec` names, for the flags' space (reference names and all:OP) or as written
    (a JSON file). `num_classes` comes from the dataset once it is loaded."""
    if is_named(spec):
        return architecture.resolve(spec, options.space_from_flags(num_classes=num_classes))
    arch = architecture.resolve(spec)
    if num_classes is not None and arch.num_classes != num_classes:
        raise UsageError(f"{spec} has {arch.num_classes} classes but --dataset={FLAGS.dataset} "
                         f"has {num_classes}")
    return arch


def build_model(arch):
    """The Keras 3 model of `arch`, under its Keras-safe name."""
    from proxyless_tf import blocks  # loads Keras: importing this module does not
    return blocks.build_network(keras_safe(arch))
