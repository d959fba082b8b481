"""The check of a latency table against the machine and runtime that run the search.

A table measured on one machine ranks networks the same way on another, but its scale may be
off (docs/latency.md: a table from another VM predicted 0.465 ms for a network that measured
0.784 ms), and not by one factor: machines differ most by depthwise kernel size (on a second
2-vCPU VM the shipped table's k3 and k5 blocks ran 1.45-1.5x slower, its k7 blocks as fast).
Before the search a few whole networks are timed here: the reference of --target_ratio, one
uniform network per kernel size of the space (every block its cheapest op of that kernel) and
networks spread over the space's latencies. When the table's predictions are off, it is
refitted with a scale per group of parts (`Part.group`: the blocks by kernel, the rest fixed):

    measured = sum over groups of scale[group] x (the table's prediction of the group's parts)

For the space's networks the fixed group is a constant, so its scale also takes the machine's
per-network offset. Where the networks cannot tell the groups apart (too few, a scale would
not be positive), the fit is one scale and an offset: `measured = scale x prediction +
offset_ms`. Every term keeps E[LAT] a differentiable sum over the blocks. When the refitted
table still misses a network by more than 10%, the check says so.
"""

import dataclasses
import time

import numpy as np

from proxyless_tf import architecture
from proxyless_tf.errors import UsageError
from proxyless_tf.latency import cache as cache_lib
from proxyless_tf.latency.host import host_description
from proxyless_tf.latency.meter import RUNTIMES, combine, rounded, stat_of, time_networks
from proxyless_tf.latency.parts import FIXED_GROUP
from proxyless_tf.latency.sampling import spread_archs
from proxyless_tf.search_space import ZERO, parse_op

REFIT_ABOVE = 0.05  # refit when the networks are off by more than 5% on average
TOO_NOISY = 0.20    # a network's round medians 20% apart (median over networks): no fit
MISFIT = 0.10       # still off by more than 10% after the refit: the parts do not fit
MIN_SPREAD = 1.5    # the offset is fitted only when the predictions span at least 1.5x


def fit_machine_terms(predicted, measured, floor_ms=None):
    """(scale, offset_ms) with measured ~ scale x predicted + offset_ms, minimising the squared
    relative error (a slow network must not outweigh the fast ones the search aims at).

    The offset needs networks far apart (at least 3, spanning MIN_SPREAD): otherwise, or when
    the fit would leave the fastest network (`floor_ms`, default the fastest given) under half
    of what a scale alone predicts, it is the scale alone."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    ratio = p / m
    scale_only = float(ratio.sum() / (ratio ** 2).sum())
    if len(p) < 3 or p.max() < MIN_SPREAD * p.min():
        return scale_only, 0.0
    design = np.stack([p / m, 1.0 / m], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, np.ones(len(m)), rcond=None)
    floor = p.min() if floor_ms is None else floor_ms
    if scale <= 0 or scale * floor + offset < 0.5 * scale_only * floor:
        return scale_only, 0.0
    return float(scale), float(offset)


def fit_group_scales(group_ms, measured):
    """{group: scale} with measured ~ sum over groups of scale x group_ms[group] (the table's
    prediction of a network's parts by group, `LatencyTable.group_ms`), minimising the squared
    relative error; None when the networks cannot tell the groups apart (fewer networks than
    groups + 1, groups that always appear in the same proportion) or a scale is not positive."""
    groups = sorted({g for row in group_ms for g, ms in row.items() if ms > 0})
    m = np.asarray(measured, float)
    design = np.array([[row.get(g, 0.0) for g in groups] for row in group_ms]) / m[:, None]
    if len(m) < len(groups) + 1 or np.linalg.matrix_rank(design) < len(groups):
        return None
    scales, *_ = np.linalg.lstsq(design, np.ones(len(m)), rcond=None)
    if np.any(scales <= 0):
        return None
    return {g: float(s) for g, s in zip(groups, scales)}


def refitted_table(table, path, networks, scale=1.0, offset_ms=0.0, group_scales=None):
    """`table` refitted to this machine, saved at `path`: each group of parts times its
    `group_scales` entry, or (without them) scale x its whole prediction + offset_ms. Both
    compose with a refit the table already carries (a refitted table checked again)."""
    if group_scales:
        calibration = dict(table.calibration, group_scales={
            g: round(table.group_scale(g) * s, 6) for g, s in sorted(group_scales.items())})
    else:  # the fixed group's scale multiplies offset_ms too (LatencyTable.network_ms)
        calibration = dict(table.calibration, factor=round(table.factor * scale, 6),
                           ms_per_mweight=round(table.ms_per_mweight * scale, 6),
                           offset_ms=round(table.offset_ms * scale + offset_ms /
                                           table.group_scale(FIXED_GROUP), 6))
    refit = {"from": table.source, "from_digest": table.digest(), "host": host_description(),
             "scale": round(scale, 4), "offset_ms": round(offset_ms, 4),
             "group_scales": calibration.get("group_scales"), "networks": networks,
             "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    refitted = table.with_calibration(calibration, path, refit=refit)
    refitted.save(path)
    return refitted


def unchecked_reason(table):
    """Why `table` cannot be checked here (None when it can): tables this project did not
    measure (the official Pixel-1 table, synthetic ones) record no runtime to compare with."""
    runtime = table.settings.get("runtime")
    if runtime not in RUNTIMES:
        return (f"table {table.source} records no runtime this project measures "
                f"({runtime or 'none'}); its figures are used as they are")
    return None


def host_note(table):
    recorded, here = table.settings.get("host"), host_description()
    if recorded is None:
        return "host not recorded"
    if recorded == here:
        return "measured on this machine"
    return f"measured on another machine: {recorded!r}, this one is {here!r}"


def _ratios(measured, predicted):
    """'geometric mean (min-max)' of measured / predicted."""
    r = np.asarray(measured, float) / np.asarray(predicted, float)
    return f"{float(np.exp(np.log(r).mean())):.2f} ({r.min():.2f}-{r.max():.2f})"


def _spread(stats):
    """How far apart a timing's rounds were: max / min of the round medians - 1 (0 for one)."""
    medians = stats.get("round_medians") or [stats["median"]]
    return max(medians) / min(medians) - 1.0


@dataclasses.dataclass
class Check:
    """What the check found, and the table to use from here on."""

    source: object            # the table checked (LatencyTable)
    table: object             # the table to use: the refit, or the source as it is
    names: list               # networks compared
    predicted: list           # the source's predictions (ms)
    measured: list            # measured here (ms)
    meter: str
    refitted: bool = False
    scale: float = 1.0
    offset_ms: float = 0.0
    group_scales: dict = None  # the refit's scale per group of parts (None: scale and offset)
    archs: list = dataclasses.field(default_factory=list)  # the networks compared
    reference: str = None
    reference_ms: float = None  # the reference measured here (None when too noisy)
    timed_now: int = 0
    cached_at: str = None     # when the cached networks were measured
    seconds: float = 0.0
    warning: str = None

    @property
    def after(self):
        """The predictions of the table to use (the refit's, when refitted)."""
        if self.refitted:
            return [self.table.predict(a) for a in self.archs]
        return list(self.predicted)

    def line(self):
        """The one line a search prints about its latency model."""
        parts = [f"latency check: table {self.source.source} ({host_note(self.source)})"]
        cached = f", cached from {self.cached_at}" if self.cached_at else ""
        parts.append(f"{len(self.names)} networks ({self.meter}; {self.timed_now} timed now"
                     f"{cached})")
        if self.predicted:
            parts.append(f"measured/predicted {_ratios(self.measured, self.predicted)} before, "
                         f"{_ratios(self.measured, self.after)} after")
        if self.refitted:
            how = (f"x{self.scale:.3f} {self.offset_ms:+.3f} ms" if not self.group_scales else
                   "per part group " + ", ".join(f"{g} x{v:.3f}"
                                                 for g, v in self.group_scales.items()))
            parts.append(f"refitted: {how}, saved as {self.table.source}")
        else:
            parts.append("not refitted" + ("" if self.warning else
                                           f" (within {100 * REFIT_ABOVE:.0f}%)"))
        if self.reference_ms is not None:
            parts.append(f"reference {self.reference} measured {self.reference_ms:.3f} ms")
        if self.warning:
            parts.append(f"WARNING: {self.warning}")
        return "; ".join(parts) + f"; {self.seconds:.1f}s"


def _distinct(archs):
    """`archs` without repeats (the reference may be one of the spread networks), in order."""
    unique = {}
    for arch in archs:
        unique.setdefault(cache_lib.network_digest(arch), arch)
    return list(unique.values())


def _timed(archs, meter, machine_cache, rounds, recheck, progress):
    """({digest: record} of every network in `archs`, the newly timed ones' digests, the
    cached ones' digests). Networks in the cache are not timed again unless `recheck`."""
    known = {} if recheck else machine_cache.load_networks()
    digests = [cache_lib.network_digest(a) for a in archs]
    todo = [(d, a) for d, a in zip(digests, archs) if d not in known]
    fresh = {}
    if todo:
        meter.check_available()
        title = (f"latency check: timing {len(todo)} networks on this machine "
                 f"({meter.describe()}), {rounds} round(s)")
        timings = time_networks(meter, [a for _, a in todo], rounds, title, progress)
        fresh = {d: cache_lib.network_record(a, rounded(combine(t)))
                 for (d, a), t in zip(todo, timings)}
    return {**known, **fresh}, fresh, [d for d in digests if d not in fresh]


def kernel_anchors(space, table):
    """One uniform network per depthwise kernel size of the space's candidates: every block
    runs the candidate of that kernel the table finds cheapest (`all:k3e3`, ...). Each
    exposes one group of parts (`Part.group`) for the refit."""
    by_kernel = {}
    for op in space.candidates:
        if op != ZERO:
            arch = architecture.resolve(f"all:{op}", space)
            kernel = parse_op(op).kernel
            if kernel not in by_kernel or table.predict(arch) < table.predict(by_kernel[kernel]):
                by_kernel[kernel] = arch
    return [by_kernel[k] for k in sorted(by_kernel)]


def run_check(table, space, meter, machine_cache, reference=None, networks=2, rounds=3,
              recheck=False, progress=True):
    """Times `reference` (an Architecture, or None), one uniform network per kernel size
    (`kernel_anchors`) and `networks` networks of `space` spread over the table's predictions
    (cached in `machine_cache`), compares them with `table` and refits it when they are off by
    more than REFIT_ABOVE. Returns a Check; too noisy measurements leave the table as it is and
    are not cached."""
    started = time.time()
    if rounds < 1 or networks < 0:
        raise UsageError(f"--latency_rounds must be at least 1 and --latency_check_networks "
                         f"at least 0, got {rounds} and {networks}")
    anchors = kernel_anchors(space, table)
    archs = _distinct(([reference] if reference is not None else []) + anchors +
                      spread_archs(space, table.predict, networks, exclude=anchors))
    records, fresh, cached = _timed(archs, meter, machine_cache, rounds, recheck, progress)
    noise = float(np.median([_spread(r["stats"]) for r in fresh.values()])) if fresh else 0.0
    if noise <= TOO_NOISY:
        machine_cache.save_networks(records)
    measured = [stat_of(records[cache_lib.network_digest(a)]["stats"], table.stat)
                for a in archs]
    compared = [(a, table.predict(a), m) for a, m in zip(archs, measured) if table.covers(a)]
    check = Check(table, table, [c[0].name for c in compared], [c[1] for c in compared],
                  [c[2] for c in compared], meter.describe(), timed_now=len(fresh),
                  archs=[c[0] for c in compared],
                  reference=reference.name if reference is not None else None,
                  cached_at=min((records[d]["measured_at"] for d in cached), default=None))
    if noise > TOO_NOISY:
        check.warning = (f"measurements too noisy to fit (rounds differ by {100 * noise:.0f}% "
                         f"in the median network): the table is used as it is; time on a "
                         f"quieter machine or with --latency_quiet=0.25")
    else:
        check.reference_ms = measured[0] if reference is not None else None
        _refit(check, table, space, machine_cache)
    check.seconds = time.time() - started
    return check


def _refit(check, table, space, machine_cache):
    """Refits `check.table` when its networks are off by more than REFIT_ABOVE on average
    (a scale per group of parts, else one scale and an offset); warns when the refit still
    misses one by more than MISFIT."""
    if not check.predicted:
        return
    error = np.abs(np.array(check.measured) / np.array(check.predicted) - 1)
    if error.mean() > REFIT_ABOVE:
        check.group_scales = fit_group_scales([table.group_ms(a) for a in check.archs],
                                              check.measured)
        if check.group_scales is None:
            fixed_ms, costs = table.space_costs(space)
            floor = fixed_ms + float(sum(c.min() for c in costs))
            check.scale, check.offset_ms = fit_machine_terms(check.predicted, check.measured,
                                                             floor)
        check.table = refitted_table(table, machine_cache.refit_path(table),
                                     len(check.predicted), check.scale, check.offset_ms,
                                     check.group_scales)
        check.refitted = True
    worst = float(np.max(np.abs(np.array(check.measured) / np.array(check.after) - 1)))
    if worst > MISFIT:
        after = " even after the refit" if check.refitted else ""
        check.warning = (f"a network is off by {100 * worst:.0f}%{after}: the table's parts "
                         f"do not match this machine; build a table here with "
                         f"--latency_table=auto")
