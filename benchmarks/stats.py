"""The statistics the benchmarks report: rank correlations (Kendall's tau, Spearman's rho) and
whether retrained accuracies tell networks apart at all (one-way ANOVA)."""

import math


def rounded(value, digits=4):
    """`value` as a float rounded to `digits` (None: not rounded); None for None or NaN (an
    undefined statistic: null in the JSON)."""
    if value is None or value != value:
        return None
    return float(value) if digits is None else round(float(value), digits)


def spearman(x, y):
    """(Spearman's rho, p) of x with y; (None, None) when either is constant (no order)."""
    from scipy import stats
    if len(set(x)) < 2 or len(set(y)) < 2:
        return None, None
    rho, p_value = stats.spearmanr(x, y)
    return rounded(rho, None), rounded(p_value, None)


def correlations(x, y, digits=None):
    """Kendall's tau and Spearman's rho of x with y, with their p-values; None where undefined
    (fewer than two distinct values), rounded to `digits` when given."""
    from scipy import stats
    tau, tau_p = stats.kendalltau(x, y)
    rho, rho_p = stats.spearmanr(x, y)
    values = {"kendall_tau": tau, "kendall_p": tau_p, "spearman_rho": rho, "spearman_p": rho_p}
    return {name: rounded(value, digits) for name, value in values.items()}


def told_apart(rows):
    """Whether the retrained accuracies tell the networks apart at all: a one-way ANOVA over
    the networks' per-seed accuracies (rows' `test_accuracy`; None with fewer than 2 seeds
    each). If every network were as good as every other, all S searches would beat all R random
    networks with probability 1 / C(R+S, S) (the S searched being the top S of R+S
    exchangeable results): the goal's pass rate by luck alone. networks_sd: how much the
    networks themselves differ, from the variance of their means less the seed variance over n
    seeds (method of moments; 0 when the means spread no more than seed noise gives), and
    networks_sd_upper95, the upper end of its 95% interval (from the ANOVA's F:
    (F / F_0.025 - 1) x seed variance / n): an estimate of 0 says the networks could not be
    told apart, not that they are equal."""
    import numpy as np
    from scipy import stats
    groups = [np.asarray(r["test_accuracy"], np.float64) for r in rows]
    if min(len(g) for g in groups) < 2:
        return None
    f_value, p_value = stats.f_oneway(*groups)
    randoms = sum(r["kind"] == "random" for r in rows)
    searches = sum(r["kind"] == "searched" for r in rows)
    # sample standard deviations, in accuracy (0-1): within a network over its seeds (pooled),
    # and across the networks' means
    seed_sd = float(np.sqrt(np.mean([np.var(g, ddof=1) for g in groups])))
    means_sd = float(np.std([g.mean() for g in groups], ddof=1))
    seeds = len(groups) / sum(1.0 / len(g) for g in groups)  # harmonic mean of seeds per network
    f_low = stats.f.ppf(0.025, len(groups) - 1, sum(len(g) for g in groups) - len(groups))
    return {"networks": len(groups), "anova_f": rounded(f_value),
            "anova_p": rounded(p_value),
            "seed_sd": rounded(seed_sd), "means_sd": rounded(means_sd),
            "networks_sd": rounded(np.sqrt(max(0.0, means_sd ** 2 - seed_sd ** 2 / seeds))),
            "networks_sd_upper95": rounded(np.sqrt(max(0.0, (f_value / f_low - 1.0)
                                                       * seed_sd ** 2 / seeds))),
            "chance_every_search_beats_best_random_if_all_equal":
                rounded(1.0 / math.comb(randoms + searches, searches))}


# what a network's mean retrained accuracy is compared with (Spearman's rho over the networks)
NETWORK_TRAITS = {
    "expand6_blocks": lambda row: sum(op.endswith("e6") for op in row["ops"]),
    "skipped_blocks": lambda row: sum(op == "zero" for op in row["ops"]),
    "params": lambda row: row["params"],
    "macs": lambda row: row["macs"]}


def what_accuracy_follows(rows):
    """Spearman's rho (and p) of the networks' mean retrained accuracy with each trait: at equal
    latency, what the better networks have more of (None for fewer than 4 networks; a trait
    every network shares orders nothing: rho and p None)."""
    if len(rows) < 4:
        return None
    accs = [row["acc_mean"] for row in rows]
    follows = {}
    for name, trait in NETWORK_TRAITS.items():
        rho, p_value = spearman([trait(row) for row in rows], accs)
        follows[name] = {"rho": rounded(rho, 3), "p": rounded(p_value)}
    return follows
