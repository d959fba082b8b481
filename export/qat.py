"""Quantization-aware training with tensorflow-model-optimization.

tfmot works on tf_keras (Keras 2) models only, and importing it sets TF_USE_LEGACY_KERAS=1. So
nothing here imports tfmot or tf_keras at module level: `quantize_aware` rebuilds the network
with `blocks.build_network(arch, K=tf_keras)` (the same builder, hence the same layer names),
copies the Keras 3 weights layer by layer by name, checks the two give the same logits, and wraps
the copy with `tfmot.quantization.keras.quantize_model`. Skipped (`zero`) blocks are no layers at
all, and residual `Add` layers are quantized like any other layer.
"""

import os

import numpy as np

from proxyless_tf.arch_flags import keras_safe
from proxyless_tf.errors import UsageError


def import_tfmot():
    """(tf_keras, tfmot), leaving TF_USE_LEGACY_KERAS as it was for the rest of the process."""
    previous = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tf_keras
        import tensorflow_model_optimization as tfmot
    finally:
        if previous is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = previous
    return tf_keras, tfmot


def to_tf_keras(model, arch, check_images=None, tolerance=1e-4):
    """The Keras 3 `model` rebuilt from `arch` with tf_keras, weights copied by layer name."""
    from proxyless_tf import blocks  # loads Keras 3
    tf_keras, _ = import_tfmot()
    copy = blocks.build_network(keras_safe(arch), K=tf_keras)
    source = {layer.name: layer for layer in model.layers if layer.weights}
    target = {layer.name: layer for layer in copy.layers if layer.weights}
    if set(source) != set(target):
        missing = sorted(set(source) ^ set(target))[:3]
        raise UsageError(f"the model does not match architecture {arch.name!r} "
                         f"(layers {', '.join(missing)} differ)")
    for name, layer in target.items():
        weights = source[name].get_weights()
        if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise UsageError(f"the model does not match architecture {arch.name!r} "
                             f"(layer {name} has other weight shapes)")
        layer.set_weights(weights)
    if check_images is not None:
        diff = np.abs(np.asarray(model(check_images, training=False))
                      - copy(check_images, training=False).numpy()).max()
        if diff > tolerance:
            raise RuntimeError(f"tf_keras copy differs from the Keras 3 model by {diff:.3g}")
    return copy


def quantize_aware(model, arch, check_images=None):
    """A tfmot QAT model (tf_keras, fake-quant) initialised from the Keras 3 `model`."""
    _, tfmot = import_tfmot()
    return tfmot.quantization.keras.quantize_model(to_tf_keras(model, arch, check_images))


def fine_tune(qat_model, splits, epochs, steps_per_epoch, lr, batch_size, label_smoothing=0.1,
              momentum=0.9, verbose=1):
    """QAT fine-tuning on the training split: SGD Nesterov, cosine from `lr` to 0.
    Returns the per-epoch history (loss, accuracy)."""
    import tensorflow as tf
    tf_keras, _ = import_tfmot()
    steps = steps_per_epoch or max(1, splits.train_size // batch_size)
    schedule = tf_keras.optimizers.schedules.CosineDecay(lr, epochs * steps)
    qat_model.compile(
        optimizer=tf_keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True),
        loss=tf_keras.losses.CategoricalCrossentropy(from_logits=True,
                                                     label_smoothing=label_smoothing),
        metrics=[tf_keras.metrics.CategoricalAccuracy(name="accuracy")])
    n = splits.num_classes
    train = splits.train.map(lambda x, y: (x, tf.one_hot(y, n)))
    history = qat_model.fit(train, epochs=epochs, steps_per_epoch=steps, verbose=verbose)
    return [{"epoch": i + 1, **{k: float(v[i]) for k, v in history.history.items()}}
            for i in range(epochs)]
