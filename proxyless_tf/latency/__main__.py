"""`python -m proxyless_tf.latency build|calibrate|predict|validate|measure` (see cli.py)."""


if __name__ == "__main__":  # before anything loads TensorFlow: no native start-up lines
    from proxyless_tf import quiet
    quiet.start_tensorflow()

from absl import app  # noqa: E402

from proxyless_tf.errors import exit_on_usage_error  # noqa: E402
from proxyless_tf.latency.cli import main  # noqa: E402

if __name__ == "__main__":
    app.run(exit_on_usage_error(main))
