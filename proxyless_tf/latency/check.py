"""The check of a latency table against the machine and runtime that run the search.

A table measured on one machine ranks networks the same way on another, but its scale may be
off (docs/latency.md: a table from another VM predicted 0.465 ms for a network that measured
0.784 ms; on an older VM every network ran 1.8-2.9x slower), and not by one factor: machines
differ most by depthwise kernel size. Before the search a few whole networks are timed here:
the reference of --target_ratio, one uniform network per kernel size of the space (every block
its cheapest op of that kernel), networks spread over the space's latencies to fit on, and
HOLDOUT more of the space to judge the fit on (`timing.py` times them, with more rounds while
the rounds disagree, and reuses earlier timings only when the reference, timed again, has not
drifted).

How it decides (docs/latency.md, "How the check decides"):
1. Bias or noise: the table is refitted when the networks are off by more than REFIT_ABOVE on
   average *and* by more than their standard errors explain (`uncertainty.beyond_noise`); a
   noisy machine means more rounds, never a table left uncorrected.
2. The refit (`refit.py`): a scale per group of parts (shrunk toward the machine's overall
   ratio where a group's scale is implausible), else one scale and an offset. The first that
   predicts every network, the held-out ones included, within MISFIT (plus the noise) is used.
3. A table off by more than MISFIT that no refit repairs is not used as it is: the check's
   `stop` says why, and the command stops with one line (`machine.check_here`) naming
   --latency_table=auto and --nolatency_check.
"""

import dataclasses
import time

import numpy as np

from proxyless_tf import architecture
from proxyless_tf.errors import UsageError
from proxyless_tf.latency import cache as cache_lib, timing, uncertainty
from proxyless_tf.latency.host import host_description
from proxyless_tf.latency.meter import RUNTIMES
from proxyless_tf.latency.refit import (  # noqa: F401 (fit_*: the package's API)
    candidate_fits, fit_group_scales, fit_machine_terms, save_refit)
from proxyless_tf.latency.sampling import spread_archs
from proxyless_tf.ops import parse_op

REFIT_ABOVE = 0.05  # refit when the networks are off by more than 5% on average (and the noise)
MISFIT = 0.10       # a refit must predict every network within 10% (and the noise)
HOLDOUT = 3         # networks of the space timed to judge the refit on, not to fit it
HOLDOUT_SEED = 3000  # apart from the fitted networks' (2000), validation's and calibration's


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


@dataclasses.dataclass
class Check:
    """What the check found, and the table to use from here on."""

    source: object            # the table checked (LatencyTable)
    table: object             # the table to use: the refit, or the source as it is
    names: list               # networks compared
    predicted: list           # the source's predictions (ms)
    measured: list            # measured here (ms): the median of each network's rounds
    meter: str
    ses: list = dataclasses.field(default_factory=list)       # their standard errors (log)
    held_out: list = dataclasses.field(default_factory=list)  # True: not fitted on, judged on
    refitted: bool = False
    scale: float = 1.0
    offset_ms: float = 0.0
    group_scales: dict = None  # the refit's scale per group of parts (None: scale and offset)
    fit_note: str = None      # how the refit came to be what it is (shrunk toward overall)
    judged: str = None        # how the refit did on the networks, held-out ones first
    archs: list = dataclasses.field(default_factory=list)  # the networks compared
    reference: str = None
    reference_ms: float = None  # the reference measured here
    timed_now: int = 0
    cached_at: str = None     # when the cached networks were measured
    timing: str = ""          # rounds, noise, uncertainty (`timing.Session.summary`)
    drift: str = None         # how the reference drifted from its cached timing, if it did
    verdict: str = None       # why it was not refitted
    seconds: float = 0.0
    warning: str = None
    stop: str = None          # why the table must not be used as it is and no refit helps

    @property
    def after(self):
        """The predictions of the table to use (the refit's, when refitted)."""
        if self.refitted:
            return [self.table.predict(a) for a in self.archs]
        return list(self.predicted)

    @property
    def off(self):
        """How far off the table is on average (|measured / predicted - 1|)."""
        return float(np.mean(np.abs(np.array(self.measured) / np.array(self.predicted) - 1)))

    def line(self):
        """The one line a search prints about its latency model."""
        parts = [f"latency check: table {self.source.source} ({host_note(self.source)})"]
        cached = f", cached from {self.cached_at}" if self.cached_at else ""
        held = sum(self.held_out)
        parts.append(f"{len(self.names)} networks ({self.meter}; {self.timed_now} timed now"
                     f"{cached}; {held} held out)")
        if self.drift:
            parts.append(self.drift)
        if self.timing:
            parts.append(self.timing)
        if self.predicted:
            parts.append(f"measured/predicted {_ratios(self.measured, self.predicted)} before, "
                         f"{_ratios(self.measured, self.after)} after")
        if self.refitted:
            how = (f"x{self.scale:.3f} {self.offset_ms:+.3f} ms" if not self.group_scales else
                   "per part group " + ", ".join(f"{g} x{v:.3f}"
                                                 for g, v in self.group_scales.items()))
            note = f" ({self.fit_note})" if self.fit_note else ""
            parts.append(f"refitted: {how}{note}; {self.judged}; saved as {self.table.source}")
        else:
            parts.append("not refitted" + (f" ({self.verdict})" if self.verdict else ""))
        if self.reference_ms is not None:
            parts.append(f"reference {self.reference} measured {self.reference_ms:.3f} ms")
        if self.warning:
            parts.append(f"WARNING: {self.warning}")
        if self.stop:
            parts.append(f"STOP: {self.stop}")
        return "; ".join(parts) + f"; {self.seconds:.1f}s"


def _distinct(archs):
    """`archs` without repeats (the reference may be one of the spread networks), in order."""
    unique = {}
    for arch in archs:
        unique.setdefault(cache_lib.network_digest(arch), arch)
    return list(unique.values())


def kernel_anchors(space, table):
    """One uniform network per refit group of the space's candidates (`Op.group`: an MBConv's
    depthwise kernel size, 'fixed' for the rest): every block runs the candidate of that group
    the table finds cheapest (`all:k3e3`, ...). Each exposes one group of parts for the refit.
    Ops that only skip blocks (`zero`) expose none."""
    by_group = {}
    for name in space.candidates:
        op = parse_op(name)
        if not any(op.has_layers(p.stride, p.in_channels, p.out_channels)
                   for p in space.searchable_positions()):
            continue
        arch = architecture.resolve(f"all:{name}", space)
        if op.group not in by_group or table.predict(arch) < table.predict(by_group[op.group]):
            by_group[op.group] = arch
    return [by_group[g] for g in sorted(by_group)]


def _networks(space, table, reference, networks, holdout):
    """(the networks to fit on: the reference first, the uniform network of each kernel, then
    `networks` spread ones; `holdout` more of the space, spread likewise, to judge on)."""
    anchors = kernel_anchors(space, table)
    fitted = _distinct(([reference] if reference is not None else []) + anchors +
                       spread_archs(space, table.predict, networks, exclude=anchors))
    return fitted, _held_out(space, table, fitted, holdout)


def _held_out(space, table, fitted, holdout):
    """`holdout` networks spread as the fitted ones (another seed), none with the same parts
    as a fitted one (networks that differ only where blocks are skipped can have); fewer
    where the space has no more."""
    taken = {cache_lib.network_digest(a) for a in fitted}
    held = []
    for count in range(holdout, 3 * holdout + 1):
        held = [a for a in _distinct(spread_archs(space, table.predict, count, HOLDOUT_SEED,
                                                  exclude=fitted))
                if cache_lib.network_digest(a) not in taken]
        if len(held) >= holdout:
            return held[:holdout]
    return held


def run_check(table, space, meter, machine_cache, reference=None, networks=2, rounds=3,
              recheck=False, progress=True, holdout=HOLDOUT, budget_s=timing.BUDGET_S):
    """Times `reference` (an Architecture, or None), one uniform network per kernel size
    (`kernel_anchors`), `networks` networks of `space` spread over the table's predictions and
    `holdout` more (cached in `machine_cache`, checked against the reference timed again),
    with more rounds while they disagree (for up to `budget_s` seconds), compares them with
    `table` and refits it when it is off beyond REFIT_ABOVE and the noise. Returns a Check;
    its `stop` is set when the table is off by more than MISFIT and no refit repairs it."""
    started = time.time()
    if rounds < 1 or networks < 0 or holdout < 0:
        raise UsageError(f"--latency_rounds must be at least 1 and --latency_check_networks "
                         f"at least 0, got {rounds} and {networks}")
    fitted, held = _networks(space, table, reference, networks, holdout)
    session = timing.Session(meter, "mean" if table.stat == "mean" else "median", progress,
                             budget_s)
    timed = timing.measure_cached(session, fitted + held, machine_cache, rounds, recheck)
    check = _compared(table, meter, session, timed, len(fitted))
    if reference is not None:
        check.reference = reference.name
        check.reference_ms = uncertainty.central(timed[0].values(session.stat))
    _decide(check, table, space, machine_cache)
    check.seconds = time.time() - started
    return check


def _compared(table, meter, session, timed, fitted):
    """A Check of the timed networks the table covers (the first `fitted` are to fit on)."""
    sigma = session.sigma(timed)
    rows = [(n, i >= fitted) for i, n in enumerate(timed) if table.covers(n.arch)]
    check = Check(table, table, [n.arch.name for n, _ in rows],
                  [table.predict(n.arch) for n, _ in rows],
                  [uncertainty.central(n.values(session.stat)) for n, _ in rows],
                  meter.describe(), ses=[session.se(n, sigma) or np.inf for n, _ in rows],
                  held_out=[h for _, h in rows], archs=[n.arch for n, _ in rows],
                  timed_now=sum(1 for n in timed if n.timings), timing=session.summary(timed),
                  cached_at=min((n.cached_at for n in timed if n.cached_at), default=None))
    if session.drift:
        name, before, now = session.drift
        check.drift = (f"{name} drifted from {before:.3f} ms (cached) to {now:.3f} ms: the "
                       f"cached networks timed again")
    return check


def _decide(check, table, space, machine_cache):
    """Refits `check.table` when its networks are off beyond REFIT_ABOVE and the noise, with
    the first candidate fit that predicts every network within MISFIT (and the noise); sets
    `check.stop` when the table is off by more than MISFIT and none does."""
    if not check.predicted:
        return
    errors = uncertainty.log_errors(check.measured, check.predicted)
    if check.off <= REFIT_ABOVE or not uncertainty.beyond_noise(errors, check.ses):
        _unrefitted(check)
        return
    fit_rows = [i for i, held in enumerate(check.held_out) if not held]
    tried = []
    for fit in candidate_fits(table, space, [check.archs[i] for i in fit_rows],
                              [check.measured[i] for i in fit_rows]):
        misses = _misses(check, fit.applied(table))
        tried.append((fit, misses))
        if misses["fails"] == 0:
            _adopt(check, table, fit, misses, machine_cache)
            return
    fit, misses = min(tried, key=lambda t: t[1]["worst"])
    reason = (f"no refit predicts the networks within {100 * MISFIT:.0f}% (best: "
              f"{fit.describe()}, {misses['text']})")
    if check.off > MISFIT:
        check.stop = (f"table {table.source} is off by {100 * check.off:.0f}% on this machine "
                      f"and {reason}")
    else:
        check.warning = f"{reason}: the table (off by {100 * check.off:.0f}%) is used as it is"


def _unrefitted(check):
    """Why the table is used as it is: within REFIT_ABOVE, or within the noise."""
    if check.off <= REFIT_ABOVE:
        check.verdict = f"within {100 * REFIT_ABOVE:.0f}%"
        return
    check.verdict = "within the noise"
    se = max(check.ses)
    known = f"each network known within {100 * se:.0f}%" if np.isfinite(se) else \
        "one round each, so the noise is unknown"
    check.warning = (f"measurements too noisy to tell whether the table is off (by "
                     f"{100 * check.off:.0f}% on average, {known}): the table is used as it "
                     f"is; time on a quieter machine or with --latency_quiet=0.25")


def _misses(check, refitted):
    """How `refitted` predicts the check's networks: a network fails when it is off by more
    than MISFIT plus Z standard errors; `worst` and `text` tell the held-out ones first."""
    errors = np.abs(uncertainty.log_errors(check.measured,
                                           [refitted.predict(a) for a in check.archs]))
    allowed = np.log1p(MISFIT) + uncertainty.Z * np.asarray(check.ses)
    held = np.asarray(check.held_out, bool)
    judged = held if held.any() else ~held
    worst = float(np.expm1(errors[judged].max()))
    what = (f"{int(held.sum())} held-out networks" if held.any() else
            f"the {int(judged.sum())} networks fitted on (none held out)")
    return {"fails": int((errors > allowed).sum()), "worst": worst,
            "text": f"{what} within {100 * worst:.1f}%"}


def _adopt(check, table, fit, misses, machine_cache):
    check.table = save_refit(table, fit, machine_cache, networks=len(check.names) -
                             sum(check.held_out), held_out=sum(check.held_out))
    check.refitted = True
    check.scale, check.offset_ms, check.group_scales = fit.scale, fit.offset_ms, fit.group_scales
    check.fit_note, check.judged = fit.note, f"judged on {misses['text']}"
