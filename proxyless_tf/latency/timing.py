"""Timing whole networks until their latencies are known well enough, on a shared machine.

Used by the check (`check.py`) and by `latency validate`. Each network is converted once and
timed in rounds (a pass over all networks each, so that slow changes of the machine spread over
all of them). When the rounds disagree, more rounds are timed, until every network's latency is
known within `uncertainty.SE_GOAL` or the time budget (about a minute) is spent; what was done
is kept for the check's line (`Session.summary`).

The check reuses networks timed by earlier runs (`MachineCache`), but does not trust them: the
first network (the target's reference) is always timed again, and when it has drifted from its
cached timing beyond the noise, every cached network is timed again. Timings made while other
processes kept the machine busy are not cached.
"""

import dataclasses
import time

import numpy as np

from proxyless_tf.latency import cache as cache_lib, uncertainty
from proxyless_tf.latency.meter import combine, rounded
from proxyless_tf.latency.progress import progress_bar

BUDGET_S = 60.0   # more rounds only until this long after the timing began
MAX_ROUNDS = 120  # ... and at most this many rounds of any network
DRIFT = 0.05      # a cached network off by more than 5% (and the noise) is timed again
BUSY = 0.25       # other processes took more than a quarter of the CPUs: nothing is cached


@dataclasses.dataclass
class Network:
    """One network's timings: each round's median and mean (ms), from now or from the cache."""

    arch: object
    digest: str
    medians: list = dataclasses.field(default_factory=list)
    means: list = dataclasses.field(default_factory=list)
    timings: list = dataclasses.field(default_factory=list)  # this run's, in full
    cached_at: str = None    # when the cached rounds were measured (None: timed now)
    prepared: object = None  # what the meter runs, once converted

    @classmethod
    def of(cls, arch, record=None):
        """A network to time, or with a cache record (its rounds), one timed before."""
        network = cls(arch, cache_lib.network_digest(arch))
        rounds = (record or {}).get("rounds")
        if rounds and rounds.get("median") and rounds.get("mean"):
            network.medians, network.means = list(rounds["median"]), list(rounds["mean"])
            network.cached_at = record.get("measured_at")
        return network

    def values(self, stat):
        """The round values of the statistic a table compares with (`--latency_stat`)."""
        return self.means if stat == "mean" else self.medians

    def record(self):
        """The cache record of the rounds timed now."""
        return cache_lib.network_record(self.arch, rounded(combine(self.timings)),
                                        {"median": self.medians, "mean": self.means})


class Session:
    """Timings of one command with one meter: the rounds it timed, the time it took, whether
    the machine was busy meanwhile."""

    def __init__(self, meter, stat="median", progress=True, budget_s=BUDGET_S,
                 max_rounds=MAX_ROUNDS, name="latency check"):
        self.meter, self.stat, self.progress, self.name = meter, stat, progress, name
        self.deadline = time.time() + budget_s
        self.max_rounds = max_rounds
        self.extra_rounds = 0
        self.drift = None  # (reference name, cached ms, now ms) when the cache had drifted
        self.load = meter.other_load().start()
        self.busy = None

    def sigma(self, networks):
        return uncertainty.noise_sigma([n.values(self.stat) for n in networks
                                        if n.values(self.stat)])

    def se(self, network, sigma):
        return uncertainty.standard_error(sigma, len(network.values(self.stat)))

    def time(self, networks, rounds, title):
        """Converts the networks not yet converted, then times `rounds` rounds of them all."""
        todo = [n for n in networks if n.prepared is None]
        bar = progress_bar(len(todo) + len(networks) * rounds, title, enabled=self.progress,
                           unit="network")
        prepared = self.meter.prepare_all((self.meter.network(n.arch) for n in todo),
                                          tick=bar.update)
        for network, converted in zip(todo, prepared):
            network.prepared = converted
        for r in range(rounds):
            self._round(networks)
            bar.update(len(todo) + (r + 1) * len(networks))

    def _round(self, networks):
        for network in networks:
            stats = self.meter.time(network.prepared)
            network.timings.append(stats)
            network.medians.append(float(f"{stats['median']:.6g}"))
            network.means.append(float(f"{stats['mean']:.6g}"))

    def settle(self, networks, everyone=None):
        """More rounds of `networks` while one of them is known less well than SE_GOAL (the
        noise pooled over `everyone`, default `networks`), within the budget."""
        everyone = everyone or networks
        announced = False
        while networks and time.time() < self.deadline:
            sigma = self.sigma(everyone)
            worst = max((self.se(n, sigma) or np.inf) for n in networks)
            rounds = max(len(n.values(self.stat)) for n in networks)
            if worst <= uncertainty.SE_GOAL or rounds >= self.max_rounds:
                return
            if not announced and self.progress:
                print(f"{self.name}: rounds differ by {uncertainty.describe(sigma)}: timing "
                      f"more rounds of {len(networks)} networks (up to "
                      f"{max(0.0, self.deadline - time.time()):.0f}s)", flush=True)
                announced = True
            self._round(networks)
            self.extra_rounds += 1

    def finish(self):
        """Whether the timings may be cached: the machine was not busy while they ran."""
        self.busy = self.load.stop()
        return self.busy is None or self.busy <= BUSY

    def summary(self, networks):
        """What was timed, in words: rounds, the noise of a round, the standard error."""
        counts = [len(n.values(self.stat)) for n in networks]
        sigma = self.sigma(networks)
        ses = [self.se(n, sigma) for n in networks]
        rounds = f"{min(counts)}" if min(counts) == max(counts) else \
            f"{min(counts)}-{max(counts)}"
        known = "" if sigma is None else \
            f", each known within {100 * max(ses):.1f}%"
        extra = f" ({self.extra_rounds} added)" if self.extra_rounds else ""
        busy = "" if self.busy is None or self.busy <= BUSY else \
            f"; other processes took {100 * self.busy:.0f}% of the CPUs: not cached"
        return (f"{rounds} rounds{extra}, rounds differ by {uncertainty.describe(sigma)}"
                f"{known}{busy}")


def measure_cached(session, archs, machine_cache, rounds, recheck=False):
    """The networks of `archs` timed, from `machine_cache` where it has them and the first
    network, timed again, says the machine has not drifted since; the rest (or, after a drift,
    all) timed now, with more rounds while the rounds disagree. Caches what was timed now
    unless the machine was busy."""
    known = {} if recheck else machine_cache.load_networks()
    networks = [Network.of(arch, known.get(cache_lib.network_digest(arch))) for arch in archs]
    probe = None
    if networks[0].cached_at:  # the reference: timed again whatever the cache holds
        probe = Network.of(networks[0].arch)
    todo = [n for n in networks if not n.cached_at] + ([probe] if probe else [])
    if todo:
        session.meter.check_available()
        session.time(todo, rounds, f"latency check: timing {len(todo)} networks on this machine "
                                   f"({session.meter.describe()}), {rounds} round(s)")
        session.settle(todo, networks + [probe] if probe else networks)
    if probe is not None:
        networks = _after_drift(session, networks, probe, rounds)
    if session.finish():
        machine_cache.save_networks({n.digest: n.record() for n in networks if n.timings})
    return networks


def _after_drift(session, networks, probe, rounds):
    """`networks` with the reference as timed now (`probe`), and every cached network timed
    again when the reference drifted from its cached timing."""
    cached = networks[0]
    sigma = session.sigma(networks + [probe])
    before, now = (uncertainty.central(n.values(session.stat)) for n in (cached, probe))
    networks = [probe] + networks[1:]
    if not uncertainty.drifted(before, now, session.se(cached, sigma) or 0.0,
                               session.se(probe, sigma) or 0.0, DRIFT):
        return networks
    session.drift = (cached.arch.name, before, now)
    stale = [Network.of(n.arch) for n in networks if n.cached_at]
    session.time(stale, rounds, f"latency check: {cached.arch.name} measured {now:.3f} ms, "
                                f"{before:.3f} ms when cached: timing {len(stale)} cached "
                                f"networks again")
    fresh = {n.digest: n for n in stale}
    networks = [fresh.get(n.digest, n) if n.cached_at else n for n in networks]
    session.settle(networks)
    return networks
