"""LatencyConfig: every setting of the latency model the library takes, in one frozen value (the
commands fill it from their --latency_* / --target_* flags, `proxyless_tf.flag_configs`; the
Python API builds it from its keyword arguments). The defaults are the flags' defaults.

    the meter     how a network is timed here: runtime, threads, batch, warmup, runs, clean,
                  quiet, quiet_timeout, quantization (`meter()` makes the Meter)
    the table     table (a path, or AUTO: the one built on this machine, cached), stat,
                  cache_dir; building one: references, rounds, calibrate, rebuild
    the check     check, check_networks, recheck (and rounds) of `check.py`
    the target    target_ms or target_ratio x target_reference's latency
    the loss      loss (a LOSS_FORMS form), lam, a, b, beta of `objective.LatencyObjective`
    source        where REINFORCE and the tuner get a sampled network's latency: the table,
                  or measured with the meter
"""

import dataclasses
from typing import Optional, Tuple

REFERENCES = ("mobilenet_v2", "proxyless_mobile", "proxyless_gpu", "proxyless_cpu")


@dataclasses.dataclass(frozen=True)
class LatencyConfig:
    # the meter
    runtime: str = "tflite"          # tflite, tf_cpu or tf_gpu (meter.RUNTIMES)
    threads: int = 1                 # 0: the runtime's default
    batch: int = 1
    warmup: int = 10                 # untimed runs before each measurement
    runs: int = 50                   # timed runs per measurement
    clean: bool = True               # tflite, 1 thread: drop runs during which it was preempted
    quiet: float = 0.0               # > 0: first wait until the CPUs are at most this busy
    quiet_timeout: float = 60.0      # seconds
    quantization: str = "none"       # the TFLite format timed: none (float32), float16, dynamic,
                                     # int8 (`quantize.MODES`); a table must record the same
    # the table
    table: Optional[str] = None      # a path, or "auto"; None: no latency term
    stat: str = "auto"               # auto, mean or median
    cache_dir: Optional[str] = None  # None: $XDG_CACHE_HOME/proxyless_tf/latency
    references: Tuple[str, ...] = REFERENCES  # networks a build measures the blocks of too
    rounds: int = 3                  # timing rounds of a build, calibration, check, validation
    calibrate: int = 20              # networks a build times end to end to calibrate (0: none)
    rebuild: bool = False            # a build measures again entries already in the table
    # the check of the table against this machine
    check: bool = True
    check_networks: int = 2
    recheck: bool = False            # time the check's networks again, not from the cache
    # the target
    target_ms: Optional[float] = None
    target_ratio: Optional[float] = None
    target_reference: str = "mobilenet_v2"
    # the architecture loss
    loss: str = "mul_log"            # objective.LOSS_FORMS
    lam: Optional[float] = None      # lambda; None: 0.2 for add_linear, 0.2/T for lambda
    a: float = 0.2
    b: float = 0.3
    beta: float = 2.0
    # REINFORCE and the tuner
    source: str = "table"            # table or measure

    def __post_init__(self):  # a list (a flag's value) is kept as a tuple: the config is frozen
        object.__setattr__(self, "references", tuple(r for r in self.references if r))

    def meter(self):
        """The Meter of these settings (a new one each time: a meter counts its waiting)."""
        from proxyless_tf.latency.meter import Meter
        return Meter(self.runtime, self.threads, self.batch, self.warmup, self.runs, self.clean,
                     self.quiet, self.quiet_timeout, self.quantization)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
