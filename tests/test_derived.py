"""The derived network's batch-norm re-estimation (`derived.recalibrate_batchnorm`): every
batch counts alike, only the statistics change, the layers are left as they were."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from proxyless_tf import derived


def tiny_model():
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(inputs)
    x = keras.layers.Conv2D(3, 1, use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.99, name="bn2")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_the_moving_statistics_become_the_average_of_the_batches_statistics():
    rng = np.random.default_rng(0)
    # three batches with clearly different statistics
    batches = [(rng.normal(loc, scale, (8, 4, 4, 2)).astype("float32"), np.zeros(8, "int32"))
               for loc, scale in ((0.0, 1.0), (5.0, 2.0), (-3.0, 0.5))]
    model = tiny_model()
    bn1 = model.get_layer("bn1")
    weights_before = [w.numpy().copy() for w in model.trainable_weights]
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.stack([b[0] for b in batches]), np.stack([b[1] for b in batches])))
    assert derived.recalibrate_batchnorm(model, dataset, batches=10) == 3
    means = [b[0].mean(axis=(0, 1, 2)) for b in batches]
    variances = [b[0].var(axis=(0, 1, 2), ddof=0) for b in batches]
    np.testing.assert_allclose(bn1.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-5)
    # Keras' batch norm keeps the batch's biased variance
    np.testing.assert_allclose(bn1.moving_variance.numpy(), np.mean(variances, axis=0),
                               rtol=1e-4)
    # the weights stay, the momenta are the layers' own again
    for before, after in zip(weights_before, model.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())
    assert [layer.momentum for layer in derived.batchnorm_layers(model)] == [0.9, 0.99]


def test_fewer_batches_than_asked_use_what_there_is():
    model = tiny_model()
    images = np.ones((2, 8, 4, 4, 2), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros((2, 8), "int32")))
    assert derived.recalibrate_batchnorm(model, dataset, batches=5) == 2
    assert model.get_layer("bn1").moving_mean.numpy() == pytest.approx([1.0, 1.0])
