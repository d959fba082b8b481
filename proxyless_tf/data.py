"""Input pipelines (tf.data): TFDS datasets by name, an image folder, and the embedded default
(scikit-learn's digits, upsampled), which needs no download.

Every pipeline yields (image float32 in [-1, 1], HxWx3 at the space's input size; label int32).
The search holds a validation split out of the training data for the architecture steps.

An image folder (--dataset=folder --data_dir=DIR, DIR/CLASS/IMAGE): grayscale and RGBA images
become RGB and every size is resized, silently (that is ordinary data); files that cannot be
read or decoded are skipped with one warning line; a folder or class left with no readable
image is a UsageError.
"""

import dataclasses
import os
import sys

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
    ds = ds.batch(batch, drop_remainder=repeat).prefetch(PREFETCH_BATCHES)
    return ds.with_options(static_options())


PREFETCH_BATCHES = 2


def static_options():
    """tf.data without its autotuner. The autotuner runs a thread per iterator, and releasing a
    long-lived iterator waited for it: the search paused at its end, its main thread in
    RootDataset::Iterator's destructor (docs/history/default_job.md). Without it, maps
    given AUTOTUNE run at the default parallelism (the cores) and PREFETCH_BATCHES are kept."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


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


IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what tf.io.decode_image reads
FOLDER_SIDE = 256  # folder images are resized to this square on reading, as Keras' loader did


@dataclasses.dataclass
class ImageFolder:
    """The readable images of a folder of class subfolders: files[i] is of class labels[i]."""
    path: str
    classes: list
    files: list
    labels: list

    def dataset(self):
        return image_dataset(self.files, self.labels)


def image_dataset(files, labels):
    """(uint8 FOLDER_SIDE x FOLDER_SIDE x 3, label) of each file, in order. Grayscale and RGBA
    files become RGB (decode_image's channels=3 drops alpha); every size is resized."""
    read = lambda f, y: (tf.cast(tf.image.resize(_decode(f), [FOLDER_SIDE, FOLDER_SIDE]),
                                 tf.uint8), y)
    # dtypes spelled out: an empty split (a tiny folder) would otherwise slice float32
    slices = (_paths(files), tf.constant(labels, tf.int32))
    return tf.data.Dataset.from_tensor_slices(slices).map(read,
                                                          num_parallel_calls=tf.data.AUTOTUNE)


def _paths(files):
    """File names as bytes, as the OS gives them (a name that is not UTF-8 survives)."""
    return tf.constant([os.fsencode(f) for f in files], tf.string)


def _decode(file):
    return tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)


def _list_folder(path):
    """Class names (sorted subfolders) and (file, label) of their image files, in a fixed order.
    Files of other types (.txt, .DS_Store) are not images and are passed over silently."""
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    files = []
    for label, name in enumerate(classes):
        for root, dirs, names in os.walk(os.path.join(path, name), followlinks=True):
            dirs.sort()
            files += [(os.path.join(root, n), label) for n in sorted(names)
                      if n.lower().endswith(IMAGE_EXTENSIONS)]
    return classes, files


def _readable(files):
    """The set of `files` that decode. Each is decoded once, in parallel, before any training:
    only a full decode catches truncated files as well as non-images (a header check would
    not), and checking up front gives exact split sizes and no run that stops half-way on a bad
    file. ignore_errors drops what fails to read or decode (a few thousand JPEGs: seconds)."""
    if not files:
        return set()
    shape = lambda f: (f, tf.shape(_decode(f)))  # the shape needs the whole decode
    checked = tf.data.Dataset.from_tensor_slices(_paths(files)).map(
        shape, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    return {os.fsdecode(f) for f, _ in checked.as_numpy_iterator()}


def _drop_unreadable(path, flag, listed):
    """`listed` without its unreadable files, which one warning line on stderr counts (a user
    can fix or delete them later; the rest is still worth training on)."""
    good = _readable([f for f, _ in listed])
    bad = [f for f, _ in listed if f not in good]
    if not good:
        what = f"none of its {len(listed)} image files could be read (first: {bad[0]})" \
            if listed else f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in its subfolders"
        raise UsageError(f"{flag}: {what}")
    if bad:
        noun = "image" if len(bad) == 1 else "images"
        print(f"warning: skipped {len(bad)} unreadable {noun} in {path} (first: {bad[0]})",
              file=sys.stderr, flush=True)
    return [(f, y) for f, y in listed if f in good]


def scan_folder(path):
    """The readable images of `path` (--data_dir for --dataset=folder). Unreadable files are
    skipped with one warning line on stderr; a folder left without images, or a class
    subfolder left without any, is a UsageError."""
    flag = f"--data_dir={path!r}"
    if not os.path.isdir(path):
        raise UsageError(f"{flag} is not a folder of class subfolders")
    classes, listed = _list_folder(path)
    if len(classes) < 2:
        raise UsageError(f"{flag} needs at least 2 class subfolders (DIR/CLASS/IMAGE.jpg), "
                         f"found {len(classes)}")
    kept = _drop_unreadable(path, flag, listed)
    counts = np.bincount([y for _, y in kept], minlength=len(classes))
    if not counts.all():
        empty = os.path.join(path, classes[int(np.argmin(counts))])
        raise UsageError(f"{flag}: class folder {empty} has no readable images")
    return ImageFolder(path, classes, [f for f, _ in kept], [y for _, y in kept])


def _folder_sources(path, valid_fraction, seed):
    """A seeded split of the files: valid_fraction * 2 held out, halved into valid and test."""
    folder = scan_folder(path)
    n = len(folder.files)
    order = np.random.RandomState(seed).permutation(n)
    n_held = int(n * valid_fraction * 2)
    n_valid = n_held // 2
    parts = np.split(order, [n - n_held, n - n_held + n_valid])
    sets = [image_dataset([folder.files[i] for i in part], [folder.labels[i] for i in part])
            for part in parts]
    return (*sets, len(folder.classes), tuple(len(part) for part in parts))


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
