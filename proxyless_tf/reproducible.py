"""Seeds and op determinism: the same command twice gives the same result.

`seed_everything(seed)` seeds Python, NumPy, TensorFlow and Keras (weight initialisers, dropout,
the data pipeline's shuffles and augmentation) and is always applied. With `deterministic`,
TensorFlow's op determinism is enabled too: kernels whose float sums depend on thread timing
(reductions, convolution back-props, tf.data's parallel maps) run in a fixed order, so that two
runs agree bit for bit. Its cost on CPU is in README.md, "Reproducibility".
"""


def seed_everything(seed, deterministic=False):
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()
