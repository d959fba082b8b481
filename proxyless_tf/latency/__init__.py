"""Latency: lookup tables measured on the target runtime, prediction, validation against whole
networks, the check of a table against the machine that runs the search, and the
differentiable latency objective of the search.

    python -m proxyless_tf.latency build    --flagfile=flags/mobile.cfg --output=TABLE
    python -m proxyless_tf.latency predict  --flagfile=flags/mobile.cfg --table=TABLE --arch=A
    python -m proxyless_tf.latency validate --flagfile=flags/mobile.cfg --table=TABLE [--quick]
    python -m proxyless_tf.latency measure  --flagfile=flags/mobile.cfg [--table=TABLE] --arch=A

The modules, one concept each:

    parts      the parts of a network a table has entries for, and their keys
    table      LatencyTable: entries, calibration, the prediction of a whole network
    host       the machine a measurement was made on
    meter      Meter: how a network is timed (LiteRT or TensorFlow), rounds combined
    progress   the progress bar of long measurements (Keras' Progbar)
    sampling   networks drawn from a space to time end to end
    build      building and calibrating a table on this machine
    validate   predicted vs measured on random and reference networks, with a report
    compare    the ops' costs in several TFLite formats (int8 / float32) and their order
    cache      the user cache of measurements made on this machine
    uncertainty  how well the rounds know a latency: noise, standard errors, bias beyond noise
    timing     timing networks until they are known well enough (adaptive rounds, drift, load)
    refit      the fits of a table to this machine (group scales, scale + offset, shrinkage)
    check      the check of a table against this machine: time, decide, refit or stop
    config     LatencyConfig: every setting of the latency model, in one value
    machine    a config's table on this machine: built here, or checked and refitted
    target     the latency target T
    objective  LatencyObjective, the differentiable E[LAT] and the architecture loss
    cli        the command line (`__main__`)

Importing the package does not load TensorFlow; `objective` (which needs it) loads on first
use of its names, so that the command line can quiet TensorFlow's start-up first.
"""

import importlib

from proxyless_tf.latency.build import build_table, calibrate, fit_calibration
from proxyless_tf.latency.cache import MachineCache, cache_root
from proxyless_tf.latency.check import Check, fit_group_scales, fit_machine_terms, run_check
from proxyless_tf.latency.config import LatencyConfig
from proxyless_tf.latency.host import host_description
from proxyless_tf.latency.machine import AUTO, checked_table, load_table, table_path
from proxyless_tf.latency.meter import RUNTIMES, Meter, combine, stat_of, time_networks
from proxyless_tf.latency.parts import (OVERHEAD_KEY, OVERHEAD_PART, Part, arch_parts,
                                        block_part, head_key, logits_key,
                                        resolve_arch, space_parts, stem_key, table_parts)
from proxyless_tf.latency.sampling import calibration_archs, random_archs, spread_archs
from proxyless_tf.latency.table import FORMAT, LatencyTable, resolve_table_path
from proxyless_tf.latency.target import reference_network, resolve_target
from proxyless_tf.latency.validate import scatter_png, validate, validation_metrics

_LAZY = {"LatencyObjective": "objective", "LOSS_FORMS": "objective",
         "objective_from_config": "objective", "objective_of": "objective"}

__all__ = [
    "AUTO", "Check", "FORMAT", "LOSS_FORMS", "LatencyConfig", "LatencyObjective",
    "LatencyTable", "MachineCache", "Meter", "OVERHEAD_KEY", "OVERHEAD_PART", "Part",
    "RUNTIMES", "arch_parts", "block_part", "build_table", "cache_root", "calibrate",
    "calibration_archs", "checked_table", "combine", "fit_calibration", "fit_group_scales",
    "fit_machine_terms", "head_key", "host_description", "load_table", "logits_key",
    "objective_from_config", "objective_of", "random_archs", "reference_network",
    "resolve_arch", "resolve_table_path", "resolve_target", "run_check", "scatter_png",
    "space_parts", "spread_archs", "stat_of", "stem_key", "table_parts", "table_path",
    "time_networks", "validate", "validation_metrics",
]


def __getattr__(name):  # PEP 562: the names that need TensorFlow load on first use
    if name in _LAZY:
        module = importlib.import_module(f"proxyless_tf.latency.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
