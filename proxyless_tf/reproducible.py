"""Seeds and op determinism: the same command twice gives the same result.

`seed_everything(seed)` seeds Python, NumPy, TensorFlow and Keras (weight initialisers, dropout,
the data pipeline's shuffles and augmentation) and is always applied. With `deterministic`,
TensorFlow's op determinism is enabled too: kernels whose float sums depend on thread timing
(reductions, convolution back-props, tf.data's parallel maps) run in a fixed order, so that two
runs agree bit for bit. Its cost on CPU is in README.md, "Reproducibility".

`random_state_kept()` shields a seeded run from work whose amount varies between runs (the
latency check times fewer networks when its cache has them).
"""

import contextlib


def seed_everything(seed, deterministic=False):
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def random_state_kept():
    """Runs the block, then puts back the random state it found: Python's, NumPy's and Keras's
    (its seed, and its seed generator with that generator's state). Building a Keras network
    draws its initial weights from that state, and clearing the session drops Keras's part.
    TensorFlow's own op-seed stream is not kept: nothing this shields draws from it."""
    import random

    import numpy as np
    # Keras keeps its seed and seed generator in its global state, under these names; a
    # rename in Keras fails here, loudly, rather than restoring nothing.
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras_state = {name: global_state.get_global_attribute(name)
                   for name in (GLOBAL_RANDOM_SEED, GLOBAL_SEED_GENERATOR)}
    generator = keras_state[GLOBAL_SEED_GENERATOR]
    generator_state = None if generator is None else generator.state.numpy()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for name, value in keras_state.items():
            global_state.set_global_attribute(name, value)
        if generator is not None:
            generator.state.assign(generator_state)
