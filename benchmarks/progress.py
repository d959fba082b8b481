"""How a benchmark says where it is: messages stamped with the elapsed time, a progress bar over
the estimated seconds of the steps still to do, and the seconds each step took over every run of
an output folder."""

import os
import sys
import time


def elapsed(seconds):
    """12m05s."""
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def say(started, message):
    """`message` on its own line, after the time since `started` (time.time())."""
    print(f"[{elapsed(time.time() - started)}] {message}", flush=True)


class Steps:
    """The steps still to do with their estimated seconds, and Keras' progress bar over them
    (keras.utils.Progbar, counting estimated seconds of work: its ETA is the estimate left,
    rescaled by the pace so far). Messages are plain lines with the elapsed time."""

    def __init__(self):
        self.started = time.time()
        self.plan = {}  # key -> estimated seconds, for the steps still to do
        self.bar = None
        self.done_s = 0

    def add(self, key, seconds):
        self.plan[key] = max(1, int(round(seconds)))

    def total_s(self):
        return sum(self.plan.values())

    def start_bar(self):
        import keras
        total = self.total_s()
        verbose = (1 if sys.stdout.isatty() else 2) if total else 0  # logs: one line at the end
        self.bar = keras.utils.Progbar(total or 1, verbose=verbose, unit_name="est_s")

    def finish(self, key):
        """Step `key` is done: the bar moves by its estimate (nothing when it was not planned,
        i.e. a previous run finished it)."""
        seconds = self.plan.pop(key, 0)
        if not seconds or self.bar is None:
            return
        self.done_s += seconds
        self.bar.update(self.done_s)
        if self.bar.verbose == 1 and self.done_s < self.bar.target:
            print(flush=True)  # the bar leaves its line open until the end; messages follow it

    def say(self, message):
        say(self.started, message)


class StepTimes:
    """Seconds per step over every run of one output folder (OUTPUT_DIR/steps.json): a rerun
    that finds a step done adds the little it took to the step's time, so the total is the
    benchmark's whole cost, interrupted runs' finished steps included."""

    def __init__(self, out):
        from proxyless_tf import io_utils
        self.path = os.path.join(out, "steps.json")
        self.times = io_utils.read_json(self.path, what="step times") \
            if os.path.exists(self.path) else {}

    def add(self, name, seconds):
        from proxyless_tf import io_utils
        self.times[name] = round(self.times.get(name, 0.0) + seconds, 1)
        io_utils.write_json(self.path, self.times)

    def total_s(self):
        return round(sum(self.times.values()), 1)

    def inherit(self, other, names):
        """The times of `names` as `other` (the run whose results this one reuses) recorded
        them, where this folder has none yet: the total stays the whole benchmark's cost."""
        from proxyless_tf import io_utils
        for name in names:
            if name not in self.times and name in other.times:
                self.times[name] = other.times[name]
        io_utils.write_json(self.path, self.times)

    def run(self, started, name, fn, *args):
        """fn(*args) as step `name`: announced, timed, its seconds added; its value."""
        t = time.time()
        say(started, f"{name} ...")
        value = fn(*args)
        self.add(name, time.time() - t)
        return value
