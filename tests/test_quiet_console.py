"""The commands' consoles carry no TensorFlow C++ start-up lines (issue 14): TensorFlow, its
TFLite converter and LiteRT write them from C++ to the process's stderr, and proxyless_tf.quiet
captures them where they are printed. Run with TensorFlow's own log level left as a user has it
(unset), which is when those lines appear."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

# absl's pre-init banner, glog-style lines (I1129 08:51:06.123 ...), and the CPU/GPU notes.
NATIVE = re.compile(r"All log messages before absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d|"
                    r"cuda|cuInit|cpu_feature_guard|oneDNN custom operations|XNNPACK delegate",
                    re.MULTILINE)


def console(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    env["PYTHONPATH"] = REPO
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.parametrize("args", [
    ("proxyless_tf.show", "--arch=mobilenet_v2"),
    ("proxyless_tf.latency", "predict", "--flagfile=flags/mobile.cfg", "--arch=all:k3e6"),
    ("export", "--flagfile=flags/mobile.cfg", "--arch=all:k3e3", "--output=OUT/net.tflite",
     "--latency_runs=5", "--report_images=32"),
], ids=["show", "latency predict", "export (converter and LiteRT)"])
def test_a_command_prints_no_native_start_up_lines(args, tmp_path):
    text = console(*[a.replace("OUT", str(tmp_path)) for a in args])
    assert text.strip(), "the command printed nothing"
    assert not NATIVE.search(text), NATIVE.search(text).group(0)


def test_the_pattern_finds_the_lines_tensorflow_prints_when_not_captured():
    """The check itself can fail: TensorFlow imported without proxyless_tf.quiet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    done = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.constant(1) + 1"],
                          env=env, capture_output=True, text=True, timeout=300)
    if not done.stderr.strip():
        pytest.skip("TensorFlow prints no start-up lines on this machine")
    assert NATIVE.search(done.stderr), done.stderr[-2000:]
