"""The library's commands as a benchmark runs them: `python -m module args` with its output in a
log file (and chosen lines echoed), a failure stopping the benchmark with one line."""

import os
import re
import shlex
import subprocess
import sys

from benchmarks import REPO
from proxyless_tf.errors import UsageError, exit_on_usage_error

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_logged(module, args, log_path, echo=None, cwd=None):
    """`python -m module args` (in `cwd`, by default ours; it inherits our niceness), its
    output appended to log_path after a `$ command` line, and the lines `echo(line)` selects
    also printed. A usage error of the child (exit status 2 and an `error:` line) is raised as
    ours (UsageError); any other failure exits with one line naming the log."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",  # live echo
               PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ warnings stay out of the log
    command = [sys.executable, "-m", module, *args]
    errors = []
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in process.stdout:
            log.write(line)
            log.flush()  # so that `tail -f` on the log follows the run
            if line.startswith("error:"):
                errors.append(line.strip()[len("error:"):].strip())
            if echo and echo(line):  # Keras colours its progress bar and redraws it after a \r
                plain = ANSI.sub("", line).split("\r")[-1].replace("\b", "").rstrip()
                print(f"      {plain[-220:]}", flush=True)
        status = process.wait()
    if status == 2 and errors:
        raise UsageError(f"{module}: {errors[-1]}")
    if status:
        sys.exit(f"error: {module} failed with exit status {status}; see {log_path}")


def main_of(main):
    """An argparse benchmark's `main(argv=None)` for `if __name__ == "__main__":`: a UsageError
    (its own or a command's it ran) is one `error:` line and exit status 2, no traceback."""
    return lambda: exit_on_usage_error(main)(None)  # its return value: main's
