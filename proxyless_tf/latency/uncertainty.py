"""How sure the check is of what it timed: a network's latency from its rounds, the noise of
one round, the standard error that leaves, and whether a table's error is more than it.

A shared machine adds noise to every round (another job, frequency changes, the VM's
neighbours); a table measured elsewhere adds a bias to every network. The check must correct
the bias whatever the noise, and must not chase the noise: it compares the measured/predicted
ratios with their standard errors instead of refusing to fit above a fixed noise level.
Everything is in log space, where a machine twice as slow is +log 2 for every network and the
noise of a round is relative (a 1 ms network varies by about as many percent as a 2 ms one).
"""

import numpy as np
from scipy import stats

MIN_SE = 0.005  # no timing is known better than 0.5%: a noise-free (synthetic) meter is not exact
SE_GOAL = 0.03  # rounds are added until each network's latency is known within 3% (one SE)
Z = 3.0         # a bias or a drift is real when it is this many standard errors from none
ALPHA = 1e-3    # ... or when the networks' errors together are this unlikely under noise alone
MEDIAN_SE = np.sqrt(np.pi / 2)  # the median's standard error / the mean's, normal noise


def central(values):
    """A network's latency from its round values (ms): their median. A round under another
    job's load is an outlier the median ignores; unlike the quietest round (a table entry's
    choice), it is what a single timing of the network (the export report's) typically sees."""
    return float(np.median(values))


def noise_sigma(round_values):
    """The relative standard deviation of one round's timing (log space), pooled over the
    networks (a list of each network's round values); None without a network timed twice.

    Robust: the MAD of the log values about their network's mean (scaled to a standard
    deviation, and by sqrt(n / (n - 1)) for the mean's own share of each network's values), so
    that a few rounds under load do not set the noise of all."""
    residuals = []
    for values in round_values:
        if len(values) > 1:
            logs = np.log(np.asarray(values, float))
            residuals.append((logs - logs.mean()) * np.sqrt(len(logs) / (len(logs) - 1)))
    if not residuals:
        return None
    return float(stats.median_abs_deviation(np.concatenate(residuals), scale="normal"))


def standard_error(sigma, rounds):
    """The standard error of `central` (log space) over `rounds` rounds of noise `sigma`
    (None: unknown, one round and nothing to compare it with); at least MIN_SE."""
    if sigma is None:
        return None
    return max(MIN_SE, MEDIAN_SE * sigma / np.sqrt(rounds))


def log_errors(measured, predicted):
    """log(measured / predicted) of each network."""
    return np.log(np.asarray(measured, float) / np.asarray(predicted, float))


def beyond_noise(errors, ses):
    """Whether log errors (`log_errors`) with standard errors `ses` are more than noise: their
    mean is Z standard errors from 0 (a machine uniformly slower or faster), or their squared
    z-scores add up to a chi-square this unlikely (some groups of parts slower, others not)."""
    errors, ses = np.asarray(errors, float), np.asarray(ses, float)
    if not len(errors):
        return False
    mean_z = abs(errors.mean()) / (np.sqrt((ses ** 2).sum()) / len(errors))
    chi2 = float(((errors / ses) ** 2).sum())
    return bool(mean_z > Z or stats.chi2.sf(chi2, len(errors)) < ALPHA)


def drifted(before, after, se_before, se_after, tolerance):
    """Whether a network timed now (`after`, ms) has drifted from its cached timing (`before`):
    more than `tolerance` (relative) apart and more than Z standard errors."""
    change = abs(np.log(after / before))
    return bool(change > np.log1p(tolerance) and change > Z * np.hypot(se_before, se_after))


def describe(sigma):
    """The noise of a round in words, for the check's line."""
    return "unknown (1 round)" if sigma is None else f"{100 * np.expm1(sigma):.0f}%"
