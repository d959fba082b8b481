"""Progress of a long measurement, with Keras' progress bar like the search's epochs."""

import sys


def progress_bar(total, title, enabled=True, unit="model"):
    """A `keras.utils.Progbar` over `total` steps on stdout, after a line saying what is being
    done. On a terminal it is redrawn in place; in a log (not a terminal) it writes one summary
    line when done (count, time, time per step), as the search's epoch bars do, instead of a
    line per step."""
    import keras
    if not enabled or total <= 0:
        return keras.utils.Progbar(total, verbose=0)
    print(title, flush=True)
    verbose = 1 if sys.stdout.isatty() else 2
    return keras.utils.Progbar(total, verbose=verbose, unit_name=unit)
