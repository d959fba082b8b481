"""Measurements run by hand, each a module run from the repository root:

    python -m benchmarks.cifar10_quality --quick
    python -m benchmarks.nas_bench_macro --quick
    python -m benchmarks.default_job --runs=1 --quick   # the default job N times: wall time
                                                        # per phase, stalls (docs/benchmarks.md)

Each benchmark's own module is its runner (its flags, its steps in order, its console); what
several share is a module of its own: `stats` (rank correlations, ANOVA), `reports` (markdown
tables, PNGs), `progress` (elapsed time, progress bar, step times), `commands` (a library
command run with its output in a log), `supernet_eval` (a supernet's weights on given networks).
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFDS_DIR = os.path.join(os.path.dirname(REPO), "shared", "datasets", "tfds")
DOCS = os.path.join(REPO, "docs")
