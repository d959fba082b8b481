"""The derived network: the supernet's argmax choices as a standalone Keras model with the
supernet's weights (`Supernet.derived_model`), its batch-norm statistics re-estimated, evaluated.

In the supernet, a candidate's moving statistics move only when it is sampled, and then on the
features of whatever paths were sampled before it; a derived network, whose blocks are fixed,
sees other features. Its moving means and variances are therefore estimated again, on training
images run through the derived network itself (as single-path one-shot methods do before they
evaluate a sub-network), before it is evaluated or exported.
"""

import keras
import numpy as np
import tensorflow as tf

RECALIBRATION_BATCHES = 20


def batchnorm_layers(model):
    return [layer for layer in _all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested model
            yield from _all_layers(layer)


def recalibrate_batchnorm(model, dataset, batches=20):
    """Sets every batch norm's moving statistics to their average over `batches` batches of
    `dataset` (images, labels) run through `model` in training mode: the running average with
    momentum t/(t+1) at batch t, so every batch counts alike. Only the statistics change.
    Returns the number of batches used."""
    layers = batchnorm_layers(model)
    momenta = [layer.momentum for layer in layers]
    # One compiled forward pass instead of eager calls (4-5 s of the default job's 20 calls):
    # the momentum is a variable the traced update reads, so that it can change per batch.
    momentum = tf.Variable(0.0, trainable=False, dtype=tf.float32)
    forward = tf.function(lambda images: model(images, training=True))
    used = 0
    try:
        for layer in layers:
            layer.momentum = momentum
        for images, _ in dataset.take(batches):
            momentum.assign(used / (used + 1.0))  # batch t gets weight 1/(t+1)
            forward(images)
            used += 1
    finally:
        for layer, value in zip(layers, momenta):
            layer.momentum = value
    return used


def derived_network(supernet, dataset, arch=None, batches=RECALIBRATION_BATCHES):
    """`arch` (default: the supernet's argmax) with the supernet's weights, its batch-norm
    statistics re-estimated on `batches` batches of `dataset` (e.g. the training split)."""
    model = supernet.derived_model(arch)
    recalibrate_batchnorm(model, dataset, batches)
    return model


def accuracy(model, dataset):
    """Top-1 accuracy of `model` (logits) over `dataset` (images, labels), in inference mode."""
    predict = tf.function(lambda images: tf.argmax(model(images, training=False), -1,
                                                   output_type=tf.int32))
    hits = total = 0
    for images, labels in dataset:
        hits += int(np.sum(predict(images).numpy() == labels.numpy()))
        total += int(labels.shape[0])
    return hits / max(total, 1)
