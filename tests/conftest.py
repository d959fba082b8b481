"""Shared fixtures: tiny spaces (tests must run on 2 CPU cores) and the ../shared data."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
TFDS_DIR = os.path.join(SHARED, "datasets", "tfds")
REFERENCE_DIR = os.path.join(SHARED, "reference", "proxylessnas")


def pytest_configure(config):
    """The same TensorFlow and Keras on any machine, set before the test modules import them.
    The commands the tests start inherit os.environ (a script that imports this file for its
    helpers keeps the environment its test gave it)."""
    # No GPU: the tolerances are float32's on the CPU (an Ampere or later GPU runs convolutions
    # and matmuls in TF32, ~1e-3 relative), the mirrored tests expect the CPU split into 2
    # replicas (MirroredStrategy takes the GPUs when there are any), and each of a test's
    # TensorFlow processes would claim the whole GPU's memory.
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    # oneDNN in strict float32: ONEDNN_DEFAULT_FPMATH_MODE=BF16 or ANY (advised on Arm servers)
    # lets convolutions and matmuls round to bfloat16.
    for name in ("ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE"):
        os.environ.pop(name, None)
    # Keras 3 on TensorFlow with Keras' defaults, not the machine's KERAS_BACKEND or
    # ~/.keras/keras.json (backend, floatx, image_data_format).
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="proxyless_tests_keras_")
    atexit.register(shutil.rmtree, os.environ["KERAS_HOME"], True)
    # No cluster: the tests that want TF_CONFIG or keras-tuner's KERASTUNER_* variables set them
    # for the processes they start.
    for name in [n for n in os.environ if n == "TF_CONFIG" or n.startswith("KERASTUNER_")]:
        del os.environ[name]


def run_module(module, *args, cwd=REPO, timeout=600, unset=()):
    """`python -m module args` as a user runs it, from the repository root by default; `unset`
    names environment variables (prefixes) to leave out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(unset))} if unset \
        else dict(os.environ)
    env.update(PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_usage_error(result, *words):
    """The command failed as bad input should: exit status 2, no traceback, exactly one
    'error:' line, naming each of `words`."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], errors[0]


def tiny_space(**overrides):
    from proxyless_tf.search_space import small_input_space
    settings = dict(input_size=16, width_multiplier=0.25, widths=(16, 24), depths=(2, 2),
                    strides=(2, 1), head_width=32, candidates=("k3e3", "k5e6", "zero"))
    settings.update(overrides)
    return small_input_space(**settings)


def synthetic_table(space, seed=0, references=(), overhead_ms=0.01):
    """A latency table of every part of `space` (and of `references`) with random entries,
    0.1-2 ms, and the given invoke overhead: for tests that need a table, not timings."""
    import numpy as np
    from proxyless_tf import latency
    rng = np.random.default_rng(seed)
    entries = {p.key: {"count": 10, "mean": overhead_ms if p.kind == "overhead" else
                       float(rng.uniform(0.1, 2.0)), "var": 0.01}
               for p in latency.table_parts(space, references)}
    return latency.LatencyTable(entries, {"runtime": "synthetic"}, "synthetic")


@pytest.fixture
def space():
    return tiny_space()


@pytest.fixture
def flags_parsed():
    """The flags readable without a command line: tests that call the library's *_from_flags
    functions set the flags they need with flagsaver."""
    from proxyless_tf import options
    if not options.FLAGS.is_parsed():
        options.FLAGS.mark_as_parsed()


def require_shared(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent (the ../shared folder beside the repository)")
    return path
