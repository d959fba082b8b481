"""Building a table on this machine: every part of a space timed on its own, then a calibration
that relates a whole network's latency to the sum of its parts."""

import contextlib
import os

import numpy as np

from proxyless_tf.errors import UsageError
from proxyless_tf.latency.host import host_description
from proxyless_tf.latency.meter import combine, rounded, stat_of, time_networks
from proxyless_tf.latency.parts import arch_parts, table_parts
from proxyless_tf.latency.progress import progress_bar
from proxyless_tf.latency.sampling import calibration_archs
from proxyless_tf.latency.table import LatencyTable


def calibrate(space, table, meter, count, rounds=1, seed=1000, progress=True):
    """Measures `count` networks of `space` end to end (`calibration_archs`, seeds apart from
    `validate`'s) and fits how a whole network's latency relates to its parts' sum:

        measured = factor * sum of parts + ms_per_mweight * weights (millions)

    A part timed on its own runs again and again with its weights in the CPU's caches; inside a
    network the other layers evict them, so every inference streams the whole network's
    weights from memory once. The second term is that cost. Both coefficients minimise the
    squared *relative* error over the networks (a noisy slow network must not outweigh the
    fast ones); when the fit gives the weights no positive cost, or there are fewer than 4
    networks, it is the factor alone: the median of measured / summed."""
    archs = calibration_archs(space, count, seed)
    timings = time_networks(meter, archs, rounds, f"latency calibrate: {count} networks of the "
                            f"space, {rounds} round(s)", progress)
    measured = np.array([stat_of(combine(t), table.stat) for t in timings])
    summed = np.array([table.raw_sum(arch) for arch in archs])
    mweights = np.array([sum(p.weights for p in arch_parts(arch)) / 1e6 for arch in archs])
    factor, per_mweight = fit_calibration(summed, mweights, measured)
    fitted = factor * summed + per_mweight * mweights
    return {"factor": round(factor, 4), "ms_per_mweight": round(per_mweight, 4), "n": count,
            "seed": seed, "ratios": [round(float(r), 4) for r in measured / summed],
            "fit_error_pct": [round(float(e), 2) for e in 100 * (fitted / measured - 1)]}


def fit_calibration(summed, mweights, measured):
    """(factor, ms per million weights): see `calibrate`."""
    summed, mweights, measured = (np.asarray(a, float) for a in (summed, mweights, measured))
    if len(measured) >= 4:
        design = np.stack([summed / measured, mweights / measured], axis=1)
        (factor, per_mweight), *_ = np.linalg.lstsq(design, np.ones(len(measured)), rcond=None)
        if per_mweight > 0 and factor > 0:
            return float(factor), float(per_mweight)
    return float(np.median(measured / summed)), 0.0


def _existing(output, meter, settings, rebuild):
    """(entries, settings) to continue from: those of the table at `output`, if any."""
    if not os.path.exists(output) or rebuild:
        return {}, settings
    old = LatencyTable.load(output)
    meter.require_compatible(old.settings, repr(output),
                             "use another --output or --latency_rebuild")
    return dict(old.entries), dict(old.settings, **{k: settings[k]
                                                   for k in ("warmup", "runs", "rounds")})


def build_table(space, meter, output, references=(), rebuild=False, progress=True, rounds=1,
                calibration=0):
    """Measures every part of `space` (and of `references`) into the table at `output`.

    Each part is converted once (in `meter.quantization`'s format, as a part of a network:
    int8 parts keep int8 input and output, `Meter.prepare`) and timed in `rounds` rounds,
    a pass over all parts each, so that slow changes of the machine's state spread over every
    entry (see `combine`). Entries already in `output` (same runtime, threads, batch and
    format) are reused; the file is rewritten
    after every entry of the last round, so an interrupted build resumes where it stopped.
    With `calibration` = N > 0, N random networks are then measured end to end to set the
    table's calibration factor (again whenever new entries were measured).
    Returns (table, number measured, number reused)."""
    meter.check_available()
    if rounds < 1:
        raise UsageError(f"--latency_rounds must be at least 1, got {rounds}")
    settings = dict(meter.settings(), rounds=rounds, host=host_description())
    entries, settings = _existing(output, meter, settings, rebuild)
    parts = table_parts(space, references)
    todo = [p for p in parts if p.key not in entries]
    bar = progress_bar(len(todo) * rounds, f"latency build: {len(todo)} parts to measure in "
                       f"{rounds} round(s), {len(parts) - len(todo)} already in {output}",
                       enabled=progress, unit="timing")
    prepared, timings = [], {p.key: [] for p in todo}
    # converted in the first round, each just before its first timing: one round saves each
    # entry as soon as it is timed
    with contextlib.closing(meter.prepare_each((p.model() for p in todo), True)) as converted:
        for r in range(rounds):
            for i, part in enumerate(todo):
                if r == 0:
                    prepared.append(next(converted))
                timings[part.key].append(meter.time(prepared[i]))
                if r == rounds - 1:
                    entries[part.key] = rounded(combine(timings[part.key]))
                    LatencyTable(entries, settings, output).save(output)
                bar.update(r * len(todo) + i + 1)
    table = LatencyTable(entries, settings, output)
    if calibration and (todo or not settings.get("calibration")):
        settings["calibration"] = calibrate(space, table, meter, calibration, rounds,
                                            progress=progress)
        table = LatencyTable(entries, settings, output)
    if not todo or calibration:
        table.save(output)
    return table, len(todo), len(parts) - len(todo)
