"""A console without TensorFlow's native start-up lines.

TensorFlow, its TFLite converter and LiteRT write from C++ straight to the process's stderr
(absl's "All log messages before absl::InitializeLog()", the CPU-feature note, a failed cuInit
on a machine without a GPU, the converter's notes, "Created TensorFlow Lite XNNPACK
delegate"), which buries the progress bars. Python-level settings cannot reach them, so the few
places that print them run with file descriptor 2 pointed at a temporary file; if the work
fails, what it wrote is shown after all, so no error is lost. Our own messages go to stdout or
through Python's logging outside these windows."""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def native_stderr():
    """Runs the block with the process's stderr (fd 2) captured; replays it on an exception."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            except BaseException:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                sys.stderr.write(captured.read().decode("utf-8", "replace"))
                sys.stderr.flush()
                raise
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


_started = False


def start_tensorflow():
    """Imports TensorFlow and initialises its devices quietly (once per process). Commands call
    it first; TF_CPP_MIN_LOG_LEVEL defaults to 2 (warnings and errors of TensorFlow's own
    logging stay hidden unless the user sets it lower)."""
    global _started
    if _started:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr():
        import tensorflow as tf
        tf.config.list_physical_devices()  # where a missing CUDA driver is reported
    _started = True
