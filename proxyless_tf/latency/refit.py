"""The refit of a latency table to this machine, from whole networks timed here (`check.py`).

Two models, both keeping E[LAT] a differentiable sum over the blocks:

    measured = sum over groups of scale[group] x (the table's prediction of the group's parts)
    measured = scale x prediction + offset_ms

A scale per group (`Part.group`: the blocks by kernel size, the rest `fixed`) is what machines
differ by; one scale and an offset is what is left when the networks cannot tell the groups
apart. A group's scale is a speed ratio: far from the machine's overall ratio (more than
PLAUSIBLE times) it is a fit of noise, not of a machine (the fixed group, a small share of
every network, is the one that wanders), so the scales are shrunk toward the overall ratio
(ridge) just enough to be plausible. Each fit is a candidate; `check.py` judges them on networks they were
not fitted on.
"""

import dataclasses
import json
import time

import numpy as np

from proxyless_tf.latency.host import host_description
from proxyless_tf.latency.parts import FIXED_GROUP

MIN_SPREAD = 1.5   # the offset is fitted only when the predictions span at least 1.5x
PLAUSIBLE = 3.0    # a group's scale within 3x of the machine's overall ratio, either way
SHRINK = (1e-3, 1e-2, 1e-1, 1.0, 1e6)  # ridge strengths tried, per network, weakest first


def overall_scale(predicted, measured):
    """The one scale that fits measured ~ scale x predicted best in squared relative error."""
    ratio = np.asarray(predicted, float) / np.asarray(measured, float)
    return float(ratio.sum() / (ratio ** 2).sum())


def fit_machine_terms(predicted, measured, floor_ms=None):
    """(scale, offset_ms) with measured ~ scale x predicted + offset_ms, minimising the squared
    relative error (a slow network must not outweigh the fast ones the search aims at).

    The offset needs networks far apart (at least 3, spanning MIN_SPREAD): otherwise, or when
    the fit would leave the fastest network (`floor_ms`, default the fastest given) under half
    of what a scale alone predicts, it is the scale alone."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    scale_only = overall_scale(p, m)
    if len(p) < 3 or p.max() < MIN_SPREAD * p.min():
        return scale_only, 0.0
    design = np.stack([p / m, 1.0 / m], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, np.ones(len(m)), rcond=None)
    floor = p.min() if floor_ms is None else floor_ms
    if scale <= 0 or scale * floor + offset < 0.5 * scale_only * floor:
        return scale_only, 0.0
    return float(scale), float(offset)


def fit_group_scales(group_ms, measured, toward=None, strength=0.0):
    """{group: scale} with measured ~ sum over groups of scale x group_ms[group] (the table's
    prediction of a network's parts by group, `LatencyTable.group_ms`), minimising the squared
    relative error; None when the networks cannot tell the groups apart (fewer networks than
    groups + 1, groups that always appear in the same proportion) or a scale is not positive.

    With `strength` > 0, each scale is also pulled toward `toward` (ridge): the penalty
    strength x networks x (scale / toward - 1)^2 per group, which moves the scales the
    networks hardly constrain and leaves the others."""
    groups = sorted({g for row in group_ms for g, ms in row.items() if ms > 0})
    m = np.asarray(measured, float)
    design = np.array([[row.get(g, 0.0) for g in groups] for row in group_ms]) / m[:, None]
    if len(m) < len(groups) + 1 or np.linalg.matrix_rank(design) < len(groups):
        return None
    target = np.ones(len(m))
    if strength > 0:
        weight = np.sqrt(strength * len(m))
        design = np.vstack([design, weight / toward * np.eye(len(groups))])
        target = np.concatenate([target, np.full(len(groups), weight)])
    scales, *_ = np.linalg.lstsq(design, target, rcond=None)
    if np.any(scales <= 0):
        return None
    return {g: float(s) for g, s in zip(groups, scales)}


def implausible(group_scales, overall):
    """The groups whose scale is more than PLAUSIBLE times off the overall ratio."""
    return [g for g, s in sorted(group_scales.items())
            if not overall / PLAUSIBLE <= s <= overall * PLAUSIBLE]


@dataclasses.dataclass
class Fit:
    """A candidate refit: a scale per group, or one scale and an offset."""

    scale: float = 1.0
    offset_ms: float = 0.0
    group_scales: dict = None
    note: str = None  # why it is what it is (shrunk), for the check's line

    def describe(self):
        if not self.group_scales:
            return f"x{self.scale:.3f} {self.offset_ms:+.3f} ms"
        return "per part group " + ", ".join(f"{g} x{v:.3f}"
                                             for g, v in self.group_scales.items())

    def calibration(self, table):
        """`table`'s calibration with this fit: each group's scale, or (without them) scale x
        the whole prediction + offset_ms. Both compose with a refit the table already
        carries (a refitted table checked again)."""
        if self.group_scales:
            return dict(table.calibration, group_scales={
                g: round(table.group_scale(g) * s, 6)
                for g, s in sorted(self.group_scales.items())})
        # the fixed group's scale multiplies offset_ms too (LatencyTable.network_ms)
        return dict(table.calibration, factor=round(table.factor * self.scale, 6),
                    ms_per_mweight=round(table.ms_per_mweight * self.scale, 6),
                    offset_ms=round(table.offset_ms * self.scale + self.offset_ms /
                                    table.group_scale(FIXED_GROUP), 6))

    def applied(self, table):
        """`table` refitted in memory (its source names the fit until it is saved)."""
        return table.with_calibration(self.calibration(table), f"{table.source} refitted")


def group_fit(group_ms, measured, overall):
    """The group scales as a Fit, shrunk toward `overall` as little as makes them plausible
    (the last strength leaves hardly more than `overall` itself); None when the networks
    cannot tell the groups apart."""
    scales = fit_group_scales(group_ms, measured)
    if scales is None:
        return None
    odd = implausible(scales, overall)
    if not odd:
        return Fit(group_scales=scales)
    why = f"{odd[0]} x{scales[odd[0]]:.3f} is more than {PLAUSIBLE:g}x off"
    for strength in SHRINK:
        shrunk = fit_group_scales(group_ms, measured, overall, strength)
        if shrunk is not None and not implausible(shrunk, overall):
            return Fit(group_scales=shrunk, note=f"shrunk toward the overall x{overall:.3f}: "
                                                 f"{why}")
    return None


def candidate_fits(table, space, archs, measured):
    """The refits of `table` to the networks `archs` measured so (ms), the preferred first:
    a scale per group (shrunk where implausible), then one scale and an offset."""
    predicted = [table.predict(a) for a in archs]
    overall = overall_scale(predicted, measured)
    groups = group_fit([table.group_ms(a) for a in archs], measured, overall)
    fixed_ms, costs = table.space_costs(space)
    floor = fixed_ms + float(sum(c.min() for c in costs))
    scale, offset = fit_machine_terms(predicted, measured, floor)
    return [f for f in (groups, Fit(scale, offset)) if f is not None]


def save_refit(table, fit, machine_cache, networks, held_out):
    """`table` refitted with `fit`, saved in `machine_cache` (its file named after the table,
    the space and the fit) with a record of where it came from."""
    calibration = fit.calibration(table)
    path = machine_cache.refit_path(table, json.dumps(calibration, sort_keys=True))
    refit = {"from": table.source, "from_digest": table.digest(), "host": host_description(),
             "space": machine_cache.key["space"], "scale": round(fit.scale, 4),
             "offset_ms": round(fit.offset_ms, 4), "group_scales": calibration.get("group_scales"),
             "networks": networks, "held_out": held_out, "note": fit.note,
             "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    refitted = table.with_calibration(calibration, path, refit=refit)
    refitted.save(path)
    return refitted
