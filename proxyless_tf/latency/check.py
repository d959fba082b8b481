"""The check of a latency table against the machine and runtime that run the search.

A table measured on one machine ranks networks the same way on another, but its scale may be
off (docs/latency.md: a table from another VM predicted 0.465 ms for a network that measured
0.784 ms). Before the search a few whole networks are timed here (the reference of
--target_ratio and networks spread over the space's latencies) and compared with the table's
predictions; when they are off, the table's machine-level terms are refitted:

    measured = scale x (the parts' calibrated sum) + ms_per_mweight x weights (M) + offset_ms

the cost of computing, of streaming the weights from memory (machines differ most in this:
measured here, 0.33 ms per million weights against the shipped table's 0.06) and of an invoke.
The weights' term needs networks with far more weights than the space's, so two published
networks the table covers (the lightest and the heaviest) are timed too; without them, or
without enough spread, the fit is `measured = scale x prediction + offset_ms`. Every term keeps
E[LAT] a differentiable sum over the blocks. The parts' relative costs stay the table's: when
they do not fit this machine either, the refit cannot help and the check says so.
"""

import dataclasses
import time

import numpy as np

from proxyless_tf import architecture
from proxyless_tf.errors import UsageError
from proxyless_tf.latency import cache as cache_lib
from proxyless_tf.latency.host import host_description
from proxyless_tf.latency.meter import RUNTIMES, combine, rounded, stat_of, time_networks
from proxyless_tf.latency.parts import arch_parts
from proxyless_tf.latency.sampling import spread_archs

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


MIN_WEIGHT_SPREAD = 2.0  # the weights' term is fitted when the networks' weights span 2x
# Models of the machine, tried in order: the first the networks determine and that stays
# physical (no negative cost) is used.
MODELS = (("scale", "ms_per_mweight", "ms_per_part", "offset_ms"),
          ("scale", "ms_per_part", "offset_ms"),
          ("scale", "ms_per_mweight", "offset_ms"))


def fit_machine_model(parts_ms, mweights, parts, measured, floor=None, models=MODELS):
    """{term: value} with measured ~ scale x parts_ms + ms_per_mweight x mweights +
    ms_per_part x parts + offset_ms (the terms of the first of MODELS the networks determine),
    minimising the squared relative error; None when none is determined and physical. `floor`:
    (parts_ms, mweights, parts) of the space's fastest network, which must keep at least half
    of the latency a scale alone would give it."""
    m = np.asarray(measured, float)
    columns = {"scale": np.asarray(parts_ms, float), "ms_per_mweight": np.asarray(mweights, float),
               "ms_per_part": np.asarray(parts, float), "offset_ms": np.ones(len(m))}
    for model in models:
        if len(m) < len(model) + 2 or not _spans(columns, model):
            continue
        design = np.stack([columns[t] / m for t in model], axis=1)
        coef, *_ = np.linalg.lstsq(design, np.ones(len(m)), rcond=None)
        terms = dict(zip(model, (float(c) for c in coef)))
        if any(terms[t] < 0 for t in model if t != "offset_ms"):
            continue
        if floor is not None and _value(terms, floor) < 0.5 * _scale_only(columns, m) * floor[0]:
            continue
        return terms
    return None


def _spans(columns, model):
    """Whether the networks vary enough in each term besides the scale to tell it apart."""
    for term in model:
        values = columns[term]
        if term == "ms_per_mweight" and values.max() < MIN_WEIGHT_SPREAD * values.min():
            return False
        if term == "ms_per_part" and values.max() - values.min() < 3:
            return False
    return True


def _value(terms, network):
    parts_ms, mweights, parts = network
    return (terms["scale"] * parts_ms + terms.get("ms_per_mweight", 0.0) * mweights +
            terms.get("ms_per_part", 0.0) * parts + terms["offset_ms"])


def _scale_only(columns, measured):
    ratio = columns["scale"] / measured
    return float(ratio.sum() / (ratio ** 2).sum())


def refitted_table(table, scale, offset_ms, path, networks, terms=None):
    """`table` refitted to this machine, saved at `path`: with `terms` (`fit_machine_model`),
    scale x (factor x the parts' sum) + its other terms; without, scale x (its whole
    prediction) + offset_ms."""
    if terms is None:
        terms = {"ms_per_mweight": table.ms_per_mweight * scale,
                 "ms_per_part": table.ms_per_part * scale,
                 "offset_ms": table.offset_ms * scale + offset_ms}
    ms_per_mweight = terms.get("ms_per_mweight", table.ms_per_mweight * scale)
    offset_ms = terms["offset_ms"]
    calibration = dict(table.calibration, factor=round(table.factor * scale, 6),
                       ms_per_mweight=round(ms_per_mweight, 6),
                       ms_per_part=round(terms.get("ms_per_part", 0.0), 6),
                       offset_ms=round(offset_ms, 6))
    refit = {"from": table.source, "from_digest": table.digest(), "host": host_description(),
             "scale": round(scale, 4), "offset_ms": round(offset_ms, 4),
             "ms_per_mweight": round(ms_per_mweight, 4), "networks": networks,
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
    terms: dict = None        # the refit's terms (fit_machine_model; None: scale and offset)
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
        if self.refitted and self.terms is not None:
            return [self.table.predict(a) for a in self.archs]
        return [self.scale * p + self.offset_ms for p in self.predicted]

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
            extra = "" if self.terms is None else "".join(
                f" {self.terms[t]:+.3f} {unit}" for t, unit in
                (("ms_per_mweight", "ms/M weights"), ("ms_per_part", "ms/part"))
                if round(self.terms.get(t, 0.0), 3))
            parts.append(f"refitted: x{self.scale:.3f}{extra} {self.offset_ms:+.3f} ms, saved "
                         f"as {self.table.source}")
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


def weight_anchors(space, table, count=2):
    """Published networks (in the space's resolution and strides) the table covers, with far
    more weights than the space's: the lightest and the heaviest of them (`count` 1: the
    heaviest; 0: none), for the fit of the weights' term."""
    covered = []
    for name in architecture.REFERENCE_NAMES:
        try:
            arch = architecture.resolve(name, space)
        except UsageError:  # a space of another shape
            continue
        if table.covers(arch):
            covered.append((sum(part.weights for part in arch_parts(arch)), arch))
    covered.sort(key=lambda item: item[0])
    chosen = covered[-1:] if count == 1 else (covered[:1] + covered[-1:] if count > 1 else [])
    return [arch for _, arch in chosen]


def _fastest(table, space):
    """(parts' calibrated sum, weights in millions, parts) of the space's fastest network."""
    ops = [p.candidates[int(np.argmin(c))] for p, c in
           zip(space.searchable_positions(), table.space_costs(space)[1])]
    arch = architecture.from_space(space, ops, name="fastest")
    return (table.factor * table.raw_sum(arch),
            sum(part.weights for part in arch_parts(arch)) / 1e6, len(arch_parts(arch)))


def run_check(table, space, meter, machine_cache, reference=None, networks=3, rounds=3,
              recheck=False, progress=True, anchors=0):
    """Times `reference` (an Architecture, or None) and `networks` networks of `space` spread
    over the table's predictions (cached in `machine_cache`), compares them with `table` and
    refits its scale and offset when they are off by more than REFIT_ABOVE. Returns a Check;
    too noisy measurements leave the table as it is and are not cached."""
    started = time.time()
    if rounds < 1 or networks < 0:
        raise UsageError(f"--latency_rounds must be at least 1 and --latency_check_networks "
                         f"at least 0, got {rounds} and {networks}")
    archs = _distinct(([reference] if reference is not None else []) +
                      spread_archs(space, table.predict, networks) +
                      weight_anchors(space, table, anchors))
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
        _refit(check, table, space, machine_cache, richer=bool(anchors))
    check.seconds = time.time() - started
    return check


def _refit(check, table, space, machine_cache, richer=False):
    """Refits `check.table` when its networks are off by more than REFIT_ABOVE on average;
    warns when the refit still misses one by more than MISFIT."""
    if not check.predicted:
        return
    error = np.abs(np.array(check.measured) / np.array(check.predicted) - 1)
    if error.mean() > REFIT_ABOVE:
        fixed_ms, costs = table.space_costs(space)
        floor = fixed_ms + float(sum(c.min() for c in costs))
        # The space's networks alone cannot tell a cost per weight or per part from the scale
        # (they all have about as many of both): the richer models need the published networks.
        terms = None if not richer else fit_machine_model(
            [table.factor * table.raw_sum(a) for a in check.archs],
            [sum(part.weights for part in arch_parts(a)) / 1e6 for a in check.archs],
            [len(arch_parts(a)) for a in check.archs], check.measured,
            floor=_fastest(table, space))
        if terms is not None:
            check.terms, check.scale, check.offset_ms = terms, terms["scale"], terms["offset_ms"]
        else:
            check.scale, check.offset_ms = fit_machine_terms(check.predicted, check.measured,
                                                             floor)
        check.table = refitted_table(table, check.scale, check.offset_ms,
                                     machine_cache.refit_path(table), len(check.predicted),
                                     check.terms)
        check.refitted = True
    worst = float(np.max(np.abs(np.array(check.measured) / np.array(check.after) - 1)))
    if worst > MISFIT:
        after = " even after the refit" if check.refitted else ""
        check.warning = (f"a network is off by {100 * worst:.0f}%{after}: the table's parts "
                         f"do not match this machine; build a table here with "
                         f"--latency_table=auto")
