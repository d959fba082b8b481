"""`python tests/search_driver.py KILL_AT FLAGS...`: `python -m proxyless_tf.search FLAGS...` that
SIGKILLs itself at a chosen point, as a crash, an OOM kill or a pulled plug would stop it:

    step:N   inside weight step N (counted from 1 in this process), mid-epoch
    save:N   inside the N-th checkpoint save of this process, after the checkpoint's files are
             written and before the checkpoint state names it
    none     never
"""

import os
import signal
import sys

from proxyless_tf import quiet

quiet.start_tensorflow()

from absl import app  # noqa: E402
from tensorflow.python.checkpoint import checkpoint_management  # noqa: E402

from proxyless_tf import search, search_steps  # noqa: E402
from proxyless_tf.errors import exit_on_usage_error  # noqa: E402


def kill_on_call(owner, name, n):
    original = getattr(owner, name)
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, name, wrapped)


if __name__ == "__main__":
    where, _, count = sys.argv.pop(1).partition(":")
    if where == "step":
        kill_on_call(search_steps.SearchSteps, "weight_step", int(count))
    elif where == "save":
        kill_on_call(checkpoint_management, "update_checkpoint_state_internal", int(count))
    app.run(exit_on_usage_error(search.main))
