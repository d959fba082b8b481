"""Input pipelines (tf.data): TFDS datasets by name, an image folder, and the embedded default
(scikit-learn's digits, upsampled), which needs no download.

Every pipeline yields (image float32 in [-1, 1], HxWx3 at the space's input size; label int32).
The search holds a validation split out of the training data for the architecture steps.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from proxyless_tf.errors import UsageError

EMBEDDED = "digits"


@dataclasses.dataclass
class Splits:
    train: tf.data.Dataset      # weight steps / retraining (augmented, repeated, batched)
    valid: tf.data.Dataset      # architecture steps (held out of the training data)
    test: tf.data.Dataset       # final evaluation (not augmented)
    num_classes: int
    train_size: int
    valid_size: int
    test_size: int


def _scale(image):
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def _augment_small(image, size):
    """CIFAR-style: pad 4, random crop, horizontal flip."""
    image = tf.image.resize_with_crop_or_pad(image, size + 8, size + 8)
    image = tf.image.random_crop(image, [size, size, 3])
    return tf.image.random_flip_left_right(image)


def _augment_large(image, size):
    """ImageNet-style: random resized crop (scale 0.08-1) and flip."""
    begin, crop, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([0, 0, 4]), min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, crop)
    image = tf.image.resize(image, [size, size])
    return tf.image.random_flip_left_right(image)


def _center(image, size):
    shape = tf.shape(image)
    if image.shape[0] is not None and image.shape[0] == size and image.shape[1] == size:
        return tf.cast(image, tf.float32)
    if size <= 64:
        return tf.image.resize(image, [size, size])
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * 0.875, tf.int32)
    image = tf.image.resize_with_crop_or_pad(image, side, side)
    return tf.image.resize(image, [size, size])


def preprocess(image, size, augment):
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    if augment:
        image = _augment_small(_center(image, size), size) if size <= 64 else \
            _augment_large(image, size)
    else:
        image = _center(image, size)
    return _scale(image)


def _finish(ds, size, batch, augment, shuffle, repeat, seed):
    if shuffle:
        ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(lambda x, y: (preprocess(x, size, augment), tf.cast(y, tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch, drop_remainder=repeat).prefetch(tf.data.AUTOTUNE)


def digits_arrays():
    """The embedded default: 1,797 8x8 digits (scikit-learn ships them), as uint8 images."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int32)


def _digits_sources(valid_fraction, seed):
    images, labels = digits_arrays()
    order = np.random.RandomState(0).permutation(len(labels))  # fixed test split
    images, labels = images[order], labels[order]
    n_test = len(labels) // 5
    rest_x, rest_y = images[n_test:], labels[n_test:]
    n_valid = int(len(rest_y) * valid_fraction)
    make = lambda x, y: tf.data.Dataset.from_tensor_slices((tf.image.resize(x, [32, 32]), y))
    return (make(rest_x[n_valid:], rest_y[n_valid:]), make(rest_x[:n_valid], rest_y[:n_valid]),
            make(images[:n_test], labels[:n_test]), 10,
            (len(rest_y) - n_valid, n_valid, n_test))


def _tfds_sources(name, data_dir, download, valid_fraction):
    import tensorflow_datasets as tfds
    if data_dir and not os.path.isdir(data_dir):
        raise UsageError(f"--data_dir={data_dir!r} does not exist")
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as e:  # tfds raises DatasetNotFoundError and friends
        raise UsageError(f"--dataset={name!r}: {str(e).splitlines()[0]}") from None
    if not download and not builder.is_prepared():
        raise UsageError(f"--dataset={name!r} is not prepared under --data_dir="
                         f"{data_dir or builder.data_dir!r} and --download is off")
    if download:
        builder.download_and_prepare()
    splits = builder.info.splits
    test_split = "test" if "test" in splits else "validation"
    pct = int(round(valid_fraction * 100))
    load = lambda split: builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    train = load(f"train[{pct}%:]")
    valid = load(f"train[:{pct}%]")
    test = load(test_split)
    n_train = splits["train"].num_examples
    n_valid = n_train * pct // 100
    return (train, valid, test, builder.info.features["label"].num_classes,
            (n_train - n_valid, n_valid, splits[test_split].num_examples))


def _folder_sources(path, valid_fraction, seed):
    if not os.path.isdir(path):
        raise UsageError(f"--data_dir={path!r} is not a folder of class subfolders")
    import keras
    common = dict(labels="inferred", label_mode="int", batch_size=None, image_size=(256, 256),
                  seed=seed, validation_split=valid_fraction * 2)
    try:
        train = keras.utils.image_dataset_from_directory(path, subset="training", **common)
        held = keras.utils.image_dataset_from_directory(path, subset="validation", **common)
    except ValueError as e:
        raise UsageError(f"--data_dir={path!r}: {e}") from None
    classes = len(train.class_names)
    n_held = int(held.cardinality())
    valid, test = held.take(n_held // 2), held.skip(n_held // 2)
    cast = lambda ds: ds.map(lambda x, y: (tf.cast(x, tf.uint8), y))
    return (cast(train), cast(valid), cast(test), classes,
            (int(train.cardinality()), n_held // 2, n_held - n_held // 2))


def load(name, input_size, batch_size, data_dir=None, download=False, valid_fraction=0.1,
         seed=0, max_train_examples=0):
    """Train/valid/test pipelines for `name`: 'digits' (embedded), 'folder' (an image folder at
    data_dir), or any TFDS dataset name (cifar10, imagenet2012, imagenette, ...)."""
    if batch_size <= 0:
        raise UsageError(f"--batch_size must be positive, got {batch_size}")
    if not 0 < valid_fraction < 1:
        raise UsageError(f"--valid_fraction must be between 0 and 1, got {valid_fraction}")
    if name == EMBEDDED:
        train, valid, test, classes, sizes = _digits_sources(valid_fraction, seed)
    elif name == "folder":
        train, valid, test, classes, sizes = _folder_sources(data_dir or "", valid_fraction, seed)
    else:
        train, valid, test, classes, sizes = _tfds_sources(name, data_dir, download, valid_fraction)
    n_train, n_valid, n_test = sizes
    if max_train_examples:
        train, n_train = train.take(max_train_examples), min(n_train, max_train_examples)
        valid, n_valid = valid.take(max(1, max_train_examples // 5)), \
            min(n_valid, max(1, max_train_examples // 5))
        test, n_test = test.take(max_train_examples), min(n_test, max_train_examples)
    train = train.cache() if n_train <= 60000 and input_size <= 64 else train
    return Splits(
        train=_finish(train, input_size, batch_size, True, True, True, seed),
        valid=_finish(valid, input_size, batch_size, False, True, True, seed + 1),
        test=_finish(test, input_size, batch_size, False, False, False, seed),
        num_classes=classes, train_size=n_train, valid_size=n_valid, test_size=n_test)
