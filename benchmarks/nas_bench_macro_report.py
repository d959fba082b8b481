"""The report of benchmarks.nas_bench_macro: results.md, results.json, pareto.png and
ranking.png in its output folder, and `publish` copies them under docs/."""

import json
import os
import shutil

from benchmarks.reports import md_row, md_table, pyplot, save_png
from proxyless_tf import io_utils

GOAL_TEXT = {
    "tau_at_least_0.6": "supernet Kendall tau over the sample at least 0.6",
    "tau_above_macs": "supernet tau above the MACs baseline's",
    "tercile_tau_at_least_0.3": "supernet tau at least 0.3 within each latency tercile",
    "searches_at_least_best_of_20": "every gradient search at or above the expected best of 20 "
                                    "random networks at its latency",
    "searches_above_uniform": "every gradient search above every uniform network no slower",
    "searches_regret_at_most_0.5": "every gradient search's regret at most 0.5 points",
    "searches_within_5pct_of_target": "every gradient search's predicted latency within 5% of "
                                      "its target"}

SEARCH_GOALS = {  # what every gradient search must meet (benchmarks.nas_bench_macro.goals)
    "searches_at_least_best_of_20": lambda r: r["accuracy"] >= r["expected_best_of_20_random"],
    "searches_above_uniform": lambda r: r["above_uniform_no_slower"],
    "searches_regret_at_most_0.5": lambda r: r["regret"] <= 0.5,
    "searches_within_5pct_of_target": lambda r: abs(r["latency_vs_target"]) <= 0.05}


def gradient_searches(found):
    return [r for r in found.values() if r["algorithm"] == "grad"]


def write(out, results, bench, latencies, inherited, sample):
    io_utils.write_json(os.path.join(out, "results.json"), results)
    io_utils.write_text(os.path.join(out, "results.md"), markdown(results))
    pareto_png(results, bench, latencies, os.path.join(out, "pareto.png"))
    ranking_png(results, bench, inherited, sample, os.path.join(out, "ranking.png"))


def publish(out, docs):
    """The full benchmark's report under docs/: nas_bench_macro.md and .json, and its PNGs in
    docs/nas_bench_macro/."""
    figures = os.path.join(docs, "nas_bench_macro")
    os.makedirs(figures, exist_ok=True)
    for name in ("pareto.png", "ranking.png"):
        shutil.copyfile(os.path.join(out, name), os.path.join(figures, name))
    with open(os.path.join(out, "results.json")) as f:
        io_utils.write_json(os.path.join(docs, "nas_bench_macro.json"), json.load(f))
    with open(os.path.join(out, "results.md")) as f:
        text = f.read().replace("](pareto.png)", "](nas_bench_macro/pareto.png)") \
            .replace("](ranking.png)", "](nas_bench_macro/ranking.png)")
    io_utils.write_text(os.path.join(docs, "nas_bench_macro.md"), text)


def _yes(value):
    if value is None:
        return "not judged (no gradient search in this run)"
    return "**met**" if value else "not met"


def _goal_line(goal, met, searches):
    """A goal and whether it is met; a search goal with how many gradient searches meet it."""
    line = f"- {GOAL_TEXT[goal]}: {_yes(met)}"
    grad = gradient_searches(searches)
    if goal in SEARCH_GOALS and grad:
        line += f" ({sum(map(SEARCH_GOALS[goal], grad))} of {len(grad)} searches)"
    return line


def _pair(g):
    if g["kendall_tau"] is None:
        return "n/a"
    return f"{g['kendall_tau']:+.3f} ({g['spearman_rho']:+.3f})"


def markdown(r):
    rank = r["ranking"]
    lines = [
        "# The search against NAS-Bench-Macro's ground truth",
        "",
        f"{r['date']}, `{r['command']}`, {r['wall_s'] / 60:.0f} min of steps on this machine "
        "(a step reused from an earlier run counted as long as it took then)"
        f"{' (quick mode: code path only, the figures mean nothing)' if r['quick'] else ''}.",
        "",
        f"{r['networks']:,} distinct networks, each trained on CIFAR-10 for 50 epochs with three "
        "seeds by the benchmark's authors; here one supernet, a latency table built on this "
        "machine, and look-ups. Recipe: " + ", ".join(f"{k}={v}" for k, v in r["recipe"].items())
        + "; search: " + ", ".join(f"{k}={v}" for k, v in r["search"].items()) + ".",
        "", "## Goals", ""]
    lines += [_goal_line(k, v, r["searches"]) for k, v in r["goals"].items()]
    if False in r["goals"].values():
        lines += ["", "Where a goal is not met, what was tried and why it falls short: "
                  "docs/search_quality.md (its summary, then the history's sections 12 on)."]
    lines += ["", f"## Ranking ({r['sample']} networks spread over the predicted latency)", "",
              "Kendall tau (Spearman rho) of each score with the benchmark's mean accuracy.",
              ""] + md_table(["score", "all", "fastest third", "middle third", "slowest third"])
    for score, groups in rank.items():
        lines.append(md_row([score] + [_pair(g) for g in (
            groups["all"], groups["tercile_1"], groups["tercile_2"], groups["tercile_3"])]))
    lines += ["", "![inherited vs true accuracy](ranking.png)", "", "## Searches", ""]
    lines += md_table(["search", "target ms", "network", "accuracy", "predicted vs target",
                       "percentile (no slower)", "regret", "best of 5 / 20 random (+-5%)",
                       "above uniform"])
    for name, s in r["searches"].items():
        lines.append(md_row([
            name, f"{s['target_ms']:.3f}", f"`{s['key']}`", f"{s['accuracy']:.2f}",
            f"{s['latency_vs_target']:+.1%}", f"{s['percentile_no_slower']:.1f}",
            f"{s['regret']:.2f}",
            f"{s['expected_best_of_5_random']:.2f} / {s['expected_best_of_20_random']:.2f}",
            s["above_uniform_no_slower"]]))
    lines += ["", "Uniform networks (the hand-designed references):", ""]
    lines += [f"- {name} `{u['key']}`: {u['accuracy']:.2f}%, predicted {u['latency_ms']:.3f} ms, "
              f"{u['macs'] / 1e6:.1f}M MACs" for name, u in r["uniform"].items()]
    lines += ["", "![predicted latency vs true accuracy](pareto.png)", "",
              "Time per step (s): " + ", ".join(f"{k} {v}" for k, v in r["steps_s"].items()), ""]
    return "\n".join(lines)


def pareto_png(r, bench, latencies, path):
    import numpy as np
    from proxyless_tf import nas_bench_macro as nbm
    keys = bench.keys()
    lat = np.array([latencies[k] for k in keys])
    acc = np.array([bench.records[k].mean_acc for k in keys])
    front = nbm.pareto_front(lat, acc)
    fig, ax = pyplot().subplots(figsize=(8, 5))
    ax.scatter(lat, acc, s=3, c="0.7", label=f"all {len(keys):,} networks")
    ax.plot(lat[front], acc[front], "k-", lw=1, label="Pareto front")
    for name, u in r["uniform"].items():
        ax.scatter(u["latency_ms"], u["accuracy"], marker="s", s=40, label=name)
    for name, s in r["searches"].items():
        ax.scatter(s["latency_ms"], s["accuracy"], marker="*", s=120, label=name)
    for p, t in r["targets_ms"].items():
        ax.axvline(t, color="0.5", ls=":", lw=0.8)
    ax.set_ylim(max(acc.min(), np.percentile(acc, 1) - 1), acc.max() + 0.5)
    ax.set_xlabel("predicted latency on this machine (ms, TFLite, 1 thread)")
    ax.set_ylabel("NAS-Bench-Macro mean test accuracy (%)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_png(fig, path, dpi=120)


def ranking_png(r, bench, inherited, sample, path):
    fig, ax = pyplot().subplots(figsize=(6, 4.5))
    x = [100 * inherited[k] for k in sample]
    y = [bench.records[k].mean_acc for k in sample]
    ax.scatter(x, y, s=12)
    tau = r["ranking"]["supernet"]["all"]["kendall_tau"]
    ax.set_title(f"supernet vs truth: Kendall tau {tau:+.3f} "
                 f"(MACs {r['ranking']['macs']['all']['kendall_tau']:+.3f})", fontsize=10)
    ax.set_xlabel("inherited accuracy on held-out training images (%)")
    ax.set_ylabel("NAS-Bench-Macro mean test accuracy (%)")
    fig.tight_layout()
    save_png(fig, path, dpi=120)
