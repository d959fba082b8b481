"""`python -m proxyless_tf.latency build|calibrate|predict|validate|measure|compare [--flags]`

    build     measure a table for the flags' space into --output (resumes an interrupted build)
    calibrate fit a table's calibration again from whole networks (its parts as they are)
    predict   a network's predicted latency, part by part; the last line is the total in ms
    validate  random and reference networks: predicted vs measured, after the check against
              this machine (--latency_check; --nolatency_check validates the table as it is);
              timed as the check times, with more rounds (up to about a minute) while they
              disagree
    measure   one network end to end, next to its prediction and target when a table is set
    compare   the ops' costs in each of --compare_formats (the tables built here, cached as for
              --latency_table=auto), their ratios to the first format, and whether the ops' order
              of cost changes: --output=DIR gets compare.json, compare.md and compare.png

`--table=auto` (= `--latency_table=auto`) is the table built on this machine and cached
(docs/latency.md). Every command times and predicts in --latency_quantization's format.
"""

import json
import time

from proxyless_tf import options
from proxyless_tf.errors import UsageError
from proxyless_tf.flag_configs import latency_config_from_flags
from proxyless_tf.latency.build import build_table, calibrate
from proxyless_tf.latency.machine import checked_table, table_path
from proxyless_tf.latency.meter import configure_tf_threads, stat_of
from proxyless_tf.latency.parts import resolve_arch, table_parts
from proxyless_tf.latency.table import LatencyTable
from proxyless_tf.latency.target import reference_network, resolve_target
from proxyless_tf.latency.validate import validate

USAGE = ("usage: python -m proxyless_tf.latency build|calibrate|predict|validate|measure|compare "
         "[--flags]")
FLAGS = options.FLAGS


def _describe_calibration(table):
    return f"factor {table.factor:.4f}, {table.ms_per_mweight:.4f} ms per million weights"


def _waited(meter):
    return f", {meter.waited:.1f}s of it waiting for quiet CPUs" if meter.quiet > 0 else ""


def _meter(config):
    meter = config.meter()
    configure_tf_threads(meter)
    return meter


def _table(space, meter, config, command):
    if not config.table:
        raise UsageError(f"latency {command} needs --table=TABLE (or --latency_table)")
    return LatencyTable.load(table_path(space, meter, config), stat=config.stat,
                             quantization=config.quantization)


def _arch(space, command):
    if not FLAGS.arch:
        raise UsageError(f"latency {command} needs --arch=ARCH.json, a reference name or all:OP")
    return resolve_arch(FLAGS.arch, space)


def measure(space, config):
    """One network end to end, next to its prediction if a table is set."""
    arch = _arch(space, "measure")
    meter = _meter(config)
    meter.check_available()
    stats = meter.measure_arch(arch)
    result = {"arch": FLAGS.arch, "measured_ms": round(stats["median"], 4), "measured": stats}
    if config.table:
        table = _table(space, meter, config, "measure")
        result["measured_ms"] = round(stat_of(stats, table.stat), 4)
        result["predicted_ms"] = round(table.predict(arch), 4)
        result["error_pct"] = round(100 * (result["predicted_ms"] - result["measured_ms"])
                                    / result["measured_ms"], 2)
        if config.target_ms is not None or config.target_ratio is not None:
            target = resolve_target(table, space, config.target_ms, config.target_ratio,
                                    config.target_reference)
            result["target_ms"] = round(target, 4)
            for what in ("predicted", "measured"):
                result[f"{what}_vs_target"] = round(result[f"{what}_ms"] / target, 4)
    print(json.dumps(result))


def build(space, config):
    if not FLAGS.output:
        raise UsageError("latency build needs --output=TABLE.json")
    meter = _meter(config)
    started = time.time()
    table, measured, reused = build_table(space, meter, FLAGS.output, list(config.references),
                                          config.rebuild, rounds=config.rounds,
                                          calibration=config.calibrate)
    factor = f", calibration {_describe_calibration(table)}" if table.factor != 1.0 else ""
    print(f"{FLAGS.output}: {len(table.entries)} entries ({measured} measured, {reused} "
          f"reused){factor} in {time.time() - started:.1f}s{_waited(meter)}")


def recalibrate(space, config):
    """A new calibration for a table, its parts as they are."""
    meter = _meter(config)
    table = _table(space, meter, config, "calibrate")
    meter.require_compatible(table.settings, f"--table={FLAGS.latency_table}",
                             "give the flags it was built with")
    if FLAGS.latency_calibrate < 1:
        raise UsageError(f"--latency_calibrate must be at least 1, got {FLAGS.latency_calibrate}")
    missing = [p.key for p in table_parts(space) if p.key not in table.entries]
    if missing:
        raise UsageError(f"--table={FLAGS.latency_table} has no entry {missing[0]!r} of the "
                         "flags' space; build it first")
    started = time.time()
    calibration = calibrate(space, table, meter, FLAGS.latency_calibrate, FLAGS.latency_rounds)
    table = table.with_calibration(calibration, table.source)
    table.save(table.source)
    print(f"{FLAGS.latency_table}: calibration {_describe_calibration(table)} from "
          f"{FLAGS.latency_calibrate} networks in {time.time() - started:.1f}s")


def predict(space, config):
    arch = _arch(space, "predict")
    table = _table(space, config.meter(), config, "predict")
    for key, ms in table.breakdown(arch):
        print(f"{ms:10.4f}  {key}")
    print(f"{table.predict(arch):.4f}")


def validate_command(space, config):
    """Validates the table the search would use here: checked and refitted first (reusing the
    check's cached measurements) unless --nolatency_check."""
    if not config.table:
        raise UsageError("latency validate needs --table=TABLE (or --latency_table)")
    meter = _meter(config)
    table = checked_table(space, config, meter,
                          reference=reference_network(space, config)).table
    count, rounds = FLAGS.validate_count, FLAGS.latency_rounds
    if FLAGS.quick:  # after the check, so that it times networks as the search's check does
        count, rounds = min(count, 8), 1
        meter.runs, meter.warmup = min(meter.runs, 20), min(meter.warmup, 5)
    if count < 1:
        raise UsageError(f"--validate_count must be at least 1, got {count}")
    started = time.time()
    metrics = validate(space, table, meter, count, FLAGS.validate_dir, FLAGS.seed, rounds=rounds)
    print(f"wrote {FLAGS.validate_dir}/validate.json, validate.md, validate.png "
          f"in {time.time() - started:.1f}s{_waited(meter)}")
    print(json.dumps(metrics))


def compare_command(space, config):
    """The ops' costs in each of --compare_formats, from the tables built on this machine for
    them (measured now where the cache has none), into --output (a folder)."""
    from proxyless_tf.latency import compare
    from proxyless_tf.latency.machine import built_here
    formats = [f for f in FLAGS.compare_formats if f]
    if not FLAGS.output:
        raise UsageError("latency compare needs --output=DIR (compare.json, .md and .png)")
    if len(formats) < 2 or len(set(formats)) != len(formats):
        raise UsageError(f"--compare_formats={','.join(formats)}: give two or more different "
                         "formats, the base first (e.g. none,int8)")
    from proxyless_tf.quantize import check_mode
    for quantization in formats:
        check_mode(quantization, "--compare_formats")
    if config.runtime != "tflite":  # every format but none is a TFLite conversion
        raise UsageError(f"--compare_formats compares TFLite formats: it needs "
                         f"--latency_runtime=tflite, not {config.runtime}")
    configs = {q: config.replace(quantization=q) for q in formats}
    meters = {q: c.meter() for q, c in configs.items()}  # every format checked before any build
    started, tables = time.time(), {}
    for quantization in formats:
        configure_tf_threads(meters[quantization])
        tables[quantization] = built_here(space, meters[quantization], configs[quantization])
    result = compare.compare_tables(space, tables)
    paths = compare.write(result, FLAGS.output, f"{space.input_size}x{space.input_size}, "
                          f"{config.runtime}, {config.threads} thread(s), batch {config.batch}")
    print(compare.markdown(result), end="")
    print(f"wrote {', '.join(paths)} in {time.time() - started:.1f}s")


COMMANDS = {"build": build, "calibrate": recalibrate, "predict": predict,
            "validate": validate_command, "measure": measure, "compare": compare_command}


def main(argv):
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # keep the converter's chatter out of the console
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise UsageError(USAGE)
    space = options.space_from_flags(num_classes=FLAGS.latency_num_classes)
    COMMANDS[argv[1]](space, latency_config_from_flags())  # the one config of the command
