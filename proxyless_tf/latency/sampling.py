"""Networks drawn from a search space to measure end to end: for validation (uniform), for a
table's calibration (spanning small to large) and for the check on this machine (spread over
the predicted latencies)."""

import numpy as np

from proxyless_tf import architecture


def random_archs(space, count, seed=0):
    """Uniform random networks: every searchable block picks any candidate alike."""
    rng = np.random.default_rng(seed)
    archs = []
    for i in range(count):
        ops = [p.candidates[rng.integers(len(p.candidates))] for p in space.searchable_positions()]
        archs.append(architecture.from_space(space, ops, name=f"random{i:03d}"))
    return archs


def calibration_archs(space, count, seed=1000, prefix="calibration"):
    """Networks for the calibration fit that span the space: every other one uniform, as
    `random_archs`; the others each drawn from its own random preference over the candidates
    (Dirichlet, concentration 0.3), from nearly all-small to nearly all-large networks. Uniform
    networks alone all have about the same number of weights, which leaves the weights'
    coefficient confounded with a constant."""
    rng = np.random.default_rng(seed)
    positions = space.searchable_positions()
    archs = []
    for i in range(count):
        ops = []
        preference = rng.dirichlet([0.3] * len(space.candidates)) if i % 2 else None
        for p in positions:
            if preference is None:
                ops.append(p.candidates[rng.integers(len(p.candidates))])
            else:
                weights = np.array([preference[space.candidates.index(c)] for c in p.candidates])
                weights = weights if weights.sum() > 0 else np.ones(len(weights))
                ops.append(p.candidates[rng.choice(len(p.candidates), p=weights / weights.sum())])
        archs.append(architecture.from_space(space, ops, name=f"{prefix}{i:03d}"))
    return archs


def spread_archs(space, predict, count, seed=2000, pool=64, upto=0.5, exclude=()):
    """`count` networks whose predicted latencies (`predict(arch)` in ms) spread evenly over
    the faster part of a pool drawn as `calibration_archs` (seeds apart from validation's and
    the calibration's): the fastest, the one at rank `upto` (the median) and evenly spaced
    ranks between. A fit of a scale and a constant needs networks far apart (a few uniform
    samples all cost about the same), and latency targets, fractions of a reference network,
    lie in the faster half; the slowest networks, dominated by a few large kernels, would pull
    the fit away from there. Networks with the same ops as one of `exclude` are not drawn."""
    if count < 1:
        return []
    taken = {tuple(arch.ops) for arch in exclude}
    candidates = sorted((a for a in calibration_archs(space, max(pool, count), seed, "check")
                         if tuple(a.ops) not in taken), key=predict)
    if not candidates:  # a space of a few networks, all of them excluded
        return []
    last = min(len(candidates) - 1, max(count - 1, round(upto * (len(candidates) - 1))))
    ranks = np.unique(np.round(np.linspace(0, last, count)).astype(int))
    return [candidates[i] for i in ranks]
