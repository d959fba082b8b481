"""An image folder (--dataset=folder --data_dir=DIR, laid out DIR/CLASS/IMAGE): what a user's
odd files become.

- Grayscale (1 channel) and RGBA (4 channels) images are ordinary data: they load as RGB,
  silently.
- Images of any size are resized: every image reaches the network at the input size.
- A file that cannot be read or decoded is skipped; one warning line counts the skipped files
  and names the first.
- A folder, or a class subfolder, left with no readable image is a one-line UsageError naming
  the folder and --data_dir (the command exits with status 2, no traceback).
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import assert_usage_error, run_module
from proxyless_tf import data
from proxyless_tf.errors import UsageError

CORRUPT = b"\x00 not an image \x00" * 16  # random-looking bytes behind an image file name


def image(height, width, channels, seed=0):
    return tf.constant(np.random.RandomState(seed).randint(0, 256, (height, width, channels),
                                                           dtype=np.uint8))


def write(folder, name, content):
    """content: an image tensor (encoded by the file's extension) or raw bytes."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        encode = tf.io.encode_png if path.suffix == ".png" else tf.io.encode_jpeg
        path.write_bytes(encode(content).numpy())
    return path


RGBA = image(24, 24, 4, seed=3)


@pytest.fixture
def folder(tmp_path):
    """Two classes; four good images of three kinds and two sizes; two bad files; a note."""
    write(tmp_path, "cat/a_rgb.jpg", image(20, 30, 3, seed=1))
    write(tmp_path, "cat/b_gray.png", image(40, 40, 1, seed=2))
    write(tmp_path, "cat/broken.jpg", CORRUPT)
    write(tmp_path, "dog/c_rgba.png", RGBA)
    write(tmp_path, "dog/d_rgb.png", image(40, 40, 3, seed=4))
    jpeg = tf.io.encode_jpeg(image(40, 40, 3, seed=5)).numpy()
    write(tmp_path, "dog/e_truncated.jpg", jpeg[:len(jpeg) // 2])  # a download cut short
    write(tmp_path, "dog/notes.txt", b"not an image file: passed over, not counted")
    return tmp_path


def warnings(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]


def test_readable_images_are_kept_with_their_labels_and_bad_ones_skipped_with_one_warning(
        folder, capsys):
    scanned = data.scan_folder(str(folder))
    assert scanned.classes == ["cat", "dog"]
    assert [os.path.relpath(f, folder) for f in scanned.files] == \
        ["cat/a_rgb.jpg", "cat/b_gray.png", "dog/c_rgba.png", "dog/d_rgb.png"]
    assert scanned.labels == [0, 0, 1, 1]
    assert warnings(capsys) == [f"warning: skipped 2 unreadable images in {folder} "
                                f"(first: {folder / 'cat' / 'broken.jpg'})"]


def test_grayscale_and_rgba_images_become_rgb_and_every_size_one_size(folder, capsys):
    images = list(data.scan_folder(str(folder)).dataset().as_numpy_iterator())
    side = data.FOLDER_SIDE
    assert [x.shape for x, _ in images] == [(side, side, 3)] * 4
    assert [int(y) for _, y in images] == [0, 0, 1, 1]
    gray = images[1][0]
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 0] == gray[..., 2]).all()
    rgb_of_rgba = tf.cast(tf.image.resize(RGBA[..., :3], [side, side]), tf.uint8)
    np.testing.assert_array_equal(images[2][0], rgb_of_rgba)  # alpha dropped, colours kept


def test_load_gives_every_readable_image_at_the_input_size(folder, capsys):
    splits = data.load("folder", 16, 2, data_dir=str(folder), valid_fraction=0.25)
    assert splits.num_classes == 2
    assert (splits.train_size, splits.valid_size, splits.test_size) == (2, 1, 1)
    # train (2 images) and valid (1, repeated) in one batch each, test (1 image) in one pass
    batches = [*splits.train.take(1), *splits.valid.take(1), *splits.test]
    for x, y in batches:
        assert x.shape[1:] == (16, 16, 3) and x.dtype == tf.float32
        assert -1 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1
        assert set(y.numpy()) <= {0, 1}
    assert len(warnings(capsys)) == 1


@pytest.mark.parametrize("files, words", [
    ({"cat/x.jpg": CORRUPT, "dog/y.png": CORRUPT}, ["none of its 2 image files", "cat/x.jpg"]),
    ({"cat/a.png": image(8, 8, 3), "dog/y.jpg": CORRUPT}, ["dog has no readable images"]),
    ({"cat/a.txt": b"text", "dog/b.txt": b"text"}, ["no image files"]),
    ({"a.png": image(8, 8, 3)}, ["2 class subfolders", "found 0"]),
])
def test_a_folder_or_class_without_readable_images_is_a_usage_error_naming_it(
        files, words, tmp_path):
    for name, content in files.items():
        write(tmp_path, name, content)
    with pytest.raises(UsageError) as raised:
        data.scan_folder(str(tmp_path))
    message = str(raised.value)
    assert "\n" not in message
    for word in ["--data_dir", str(tmp_path), *words]:
        assert word in message, message


def test_the_command_reports_an_unreadable_folder_in_one_line(tmp_path):
    images = tmp_path / "images"
    write(images, "cat/x.jpg", CORRUPT)
    write(images, "dog/y.jpg", CORRUPT)
    result = run_module("proxyless_tf.search", "--flagfile=flags/mobile.cfg",
                        "--flagfile=flags/smoke.cfg", "--dataset=folder",
                        f"--data_dir={images}", f"--output_dir={tmp_path}/out")
    assert_usage_error(result, "--data_dir", str(images), "could be read")


def test_every_pipeline_runs_without_the_autotuner_whose_thread_paused_the_search_at_its_end():
    """Releasing a long-lived autotuned iterator waits for the autotuner's thread (the search
    paused where its iterators were released); the pipelines use static parallelism instead."""
    splits = data.load("digits", 16, 8)
    for split in (splits.train, splits.valid, splits.test):
        assert split.options().autotune.enabled is False
