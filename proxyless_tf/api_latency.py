"""The Python API's latency functions (re-exported by `proxyless_tf.api`, where they are
documented with the rest): the table, the search's latency term, predicted and measured
latency. Importing this module loads neither TensorFlow nor absl."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Union

from proxyless_tf import architecture, search_space
from proxyless_tf.errors import UsageError

if TYPE_CHECKING:
    import keras

    from proxyless_tf.latency import LatencyObjective, LatencyTable, Meter

Arch = Union[architecture.Architecture, str]
Table = Union["LatencyTable", str]


def latency_table(path: Table, stat: str = "auto",
                  quantization: Optional[str] = None) -> "LatencyTable":
    """A latency table: a JSON file written by `python -m proxyless_tf.latency build`, the
    official mobile_trim.yaml, or a shipped one ("proxyless_tf/tables/mobile_32.json" is found
    from any working directory). A LatencyTable is returned as it is. `quantization` ("none"
    (float32), "float16", "dynamic", "int8"): a UsageError unless the table was timed in that
    TFLite format."""
    from proxyless_tf import latency
    table = path if isinstance(path, latency.LatencyTable) else \
        latency.LatencyTable.load(os.fspath(path), stat=stat)
    if quantization is not None:
        _require_quantization(table, quantization)
    return table


_QUANTIZATION_SETTING = "quantization='{}'"  # how this API sets a format


def _require_quantization(table, quantization):
    from proxyless_tf.latency.table import require_quantization
    from proxyless_tf.quantize import check_mode
    check_mode(quantization, "quantization")
    require_quantization(table.settings, quantization, f"latency table {table.source!r}",
                         _QUANTIZATION_SETTING,
                         remedy="`python -m proxyless_tf.latency build "
                                f"--latency_quantization={quantization} --output=...`")


# How the latency check names its settings in this API (the commands name their flags).
_CHECK_WORDS = {"table": "latency table {}", "off": "pass latency_check=False",
                "compatible": "pass a meter= with its settings, or latency_check=False to use "
                              "it as it is",
                "check": "latency check", "cache": "cache_dir", "gpu": "runtime='tf_gpu'",
                "auto": "a table built here (python -m proxyless_tf.latency build)",
                "quantization": _QUANTIZATION_SETTING}


def latency_objective(space: search_space.SearchSpace, table: Table, *,
                      target_ms: Optional[float] = None, target_ratio: Optional[float] = None,
                      target_reference: str = "mobilenet_v2", latency_loss: str = "mul_log",
                      latency_lambda: Optional[float] = None, latency_a: float = 0.2,
                      latency_b: float = 0.3, latency_beta: float = 2.0,
                      latency_check: bool = True, meter: Optional["Meter"] = None,
                      check_networks: int = 2, rounds: int = 3,
                      recheck: bool = False, cache_dir: Optional[str] = None,
                      quantization: Optional[str] = None,
                      verbose: int = 1) -> "LatencyObjective":
    """The search's latency term for `space`: E[LAT] from `table` and the loss form
    `latency_loss` ("lambda", "mul_log", "add_linear", "abs", "hinge") around the target T,
    `target_ms` or `target_ratio` x the latency of `target_reference` (a reference name,
    "all:OP" or an arch JSON).

    `latency_check` (on, as in the commands): first time the reference, one uniform network
    per kernel size and `check_networks` more networks of the space on this machine with
    `meter` (default: LiteRT, 1 thread, batch 1) and refit the table to it (a scale per kernel
    size) when it is off by more than the timings' noise explains, judged on held-out networks;
    a table still off by more than 10% is a UsageError. A ratio target then refers to the
    reference as measured here. Measurements are cached in `cache_dir` (default
    ~/.cache/proxyless_tf/latency); a later check re-times the reference and what has drifted.
    Turn it off for a table measured on the target device.

    `quantization`: the TFLite format the latency is of ("none" = float32, "float16",
    "dynamic", "int8"; default: the table's own, `LatencyTable.quantization`); a table timed in
    another format is a UsageError, and the check times networks in this format."""
    from proxyless_tf.latency import machine
    from proxyless_tf.latency.config import LatencyConfig
    from proxyless_tf.latency.objective import objective_of
    from proxyless_tf.latency.parts import resolve_arch
    from proxyless_tf.latency.target import check_target_values, resolve_target
    if (target_ms is None) == (target_ratio is None):
        raise UsageError("a latency table needs one target: target_ms=MS or target_ratio=R "
                         "(R times target_reference's latency), not " +
                         ("both" if target_ms is not None else "neither"))
    check_target_values(target_ms, target_ratio)  # before any timing
    table = latency_table(table)
    if quantization is None:
        quantization = table.quantization
    _require_quantization(table, quantization)
    config = LatencyConfig(quantization=quantization,
        target_ms=target_ms, target_ratio=target_ratio, target_reference=target_reference,
        loss=latency_loss, lam=latency_lambda, a=latency_a, b=latency_b, beta=latency_beta,
        check=latency_check, check_networks=check_networks, rounds=rounds, recheck=recheck,
        cache_dir=cache_dir)
    reference_ms = None
    if config.check:
        reference = resolve_arch(target_reference, space, "target_reference") \
            if target_ratio is not None else None
        meter = meter or config.meter()
        checked = machine.check_here(
            table, space, meter, machine.machine_cache(space, meter, config), reference,
            config.check_networks, config.rounds, config.recheck, progress=verbose > 0,
            words=_CHECK_WORDS)
        table, reference_ms = checked.table, checked.reference_ms
    target = resolve_target(table, space, target_ms, target_ratio, target_reference,
                            reference_ms)
    objective = objective_of(table, space, target, config)
    low, high = objective.range_ms()
    if verbose and not low <= target <= high:
        print(f"warning: latency target {target:.4g} ms is outside the space's range "
              f"{low:.4g}-{high:.4g} ms", flush=True)
    return objective


def predict_latency(arch: Arch, table: Table, space: Optional[search_space.SearchSpace] = None
                    ) -> float:
    """The table's predicted latency of `arch` in ms (`table`: a path or a LatencyTable, e.g.
    `SearchResult.latency_table`, the table the search used, refitted to this machine)."""
    return float(latency_table(table).predict(architecture.as_architecture(arch, space)))


def measure_latency(arch: Union[Arch, "keras.Model"], *, runtime: str = "tflite",
                    threads: int = 1, batch: int = 1, warmup: int = 10, runs: int = 50,
                    space: Optional[search_space.SearchSpace] = None) -> float:
    """The median latency in ms of `arch` (random weights: latency does not depend on them) or
    of a Keras model, measured on this machine: converted to TFLite and run by LiteRT
    (`runtime="tflite"`), or run by TensorFlow ("tf_cpu", "tf_gpu"), as the tables measure."""
    from proxyless_tf import latency
    meter = latency.Meter(runtime, threads, batch, warmup, runs)
    meter.check_available()
    if isinstance(arch, (architecture.Architecture, str)):
        return float(meter.measure_arch(architecture.as_architecture(arch, space))["median"])
    return float(meter.measure(arch)["median"])
