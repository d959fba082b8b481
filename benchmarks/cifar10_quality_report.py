"""benchmarks.cifar10_quality's results: one row per network (its size, predicted and measured
latency, retrained accuracies), the summary (each search against the best random network, and
whether the seeds tell the networks apart: benchmarks.stats), OUTPUT_DIR/results.json,
results.md and latency_accuracy.png."""

import json
import os
import time

from benchmarks import stats
from benchmarks.cifar10_quality_settings import FLAGS, recipe_text
from benchmarks.cifar10_quality_steps import (measured_ms, search_results, searchable_ops,
                                              size_of)
from benchmarks.reports import md_row, md_table, percent, pyplot, save_png
from proxyless_tf import io_utils


def short_ops(ops):
    """k3e6 -> 36, zero -> --: a network's searchable choices in a table cell."""
    return " ".join("--" if op == "zero" else op[1:].replace("e", "") for op in ops)


def net_row(net, table, target, out, runs, baseline_ms):
    """One network's line of the results. `measured_vs_baseline` is drift-free: the table and
    these timings are taken at different times, and a busier machine slows every network
    alike, so this ratio (against --target_ratio) still shows where a network sits. A searched
    network's line also holds its search's seed and results.json figures."""
    import numpy as np
    params, macs = size_of(net.arch)
    measured = io_utils.read_json(os.path.join(net.dir(out), "latency.json"))
    accs = [r["test_accuracy"] for r in runs]
    row = {
        "name": net.name, "kind": net.kind,
        "ops": searchable_ops(net.arch),
        "params": params, "macs": macs, "predicted_ms": round(table.predict(net.arch), 4),
        "measured_ms": round(measured["measured_ms"], 4),
        "measured_vs_target": round(measured["measured_ms"] / target, 4),
        "measured_vs_baseline": round(measured["measured_ms"] / baseline_ms, 4),
        "latency": measured["stats"], "seeds": [r["seed"] for r in runs],
        "test_accuracy": accs, "acc_mean": float(np.mean(accs)),
        "acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
        "test_examples": runs[0]["test_examples"], "train_examples": runs[0]["train_examples"],
        "train_seconds": [r["train_seconds_this_run"] for r in runs]}
    if net.kind == "searched":
        found = search_results(out, net.search_seed)
        row.update(search_seed=net.search_seed,
                   supernet_train_acc=found.get("supernet_train_acc"),
                   derived_test_acc=found.get("derived_test_acc"))
    return row


def summary(rows, target, wall_s, quick=False):
    """The last line: every searched network (its search seed, the supernet's last-epoch train
    accuracy, the derived network's test accuracy with the supernet's weights, its retrained
    test accuracy, latencies) and whether it beats the best random network (a higher mean
    retrained accuracy; a tie does not), next to the random networks and the baseline."""
    import numpy as np
    by_kind = lambda kind: [r for r in rows if r["kind"] == kind]
    searched = sorted(by_kind("searched"), key=lambda r: r["search_seed"])
    baseline, randoms = by_kind("baseline")[0], by_kind("random")
    random_accs = [r["acc_mean"] for r in randoms]
    best = max(randoms, key=lambda r: r["acc_mean"])
    per_search = [{
        "name": r["name"], "search_seed": r["search_seed"],
        "supernet_train_acc": stats.rounded(r.get("supernet_train_acc")),
        "derived_test_acc": stats.rounded(r.get("derived_test_acc")),
        "acc": round(r["acc_mean"], 4),
        "predicted_ms": r["predicted_ms"], "measured_ms": r["measured_ms"],
        "measured_vs_target": r["measured_vs_target"],
        "within_10pct": bool(abs(r["measured_vs_target"] - 1) <= 0.10),
        "vs_baseline_measured": r["measured_vs_baseline"],
        "random_beaten": int(sum(r["acc_mean"] > a for a in random_accs)),
        "beats_best_random": bool(r["acc_mean"] > best["acc_mean"])} for r in searched]
    return {
        "target_ms": round(target, 4),
        "searched": per_search,
        "search_seeds": len(searched),
        "searched_beating_best_random": sum(s["beats_best_random"] for s in per_search),
        "searched_acc_mean": round(float(np.mean([r["acc_mean"] for r in searched])), 4),
        "best_random": best["name"],
        "random_acc_mean": round(float(np.mean(random_accs)), 4),
        "random_acc_max": round(float(best["acc_mean"]), 4),
        "random_count": len(randoms),
        "baseline_acc": round(baseline["acc_mean"], 4),
        "baseline_measured_ms": baseline["measured_ms"],
        "seeds": len(baseline["test_accuracy"]), "told_apart": stats.told_apart(rows),
        "accuracy_follows": stats.what_accuracy_follows(rows),
        "quick": bool(quick),
        "wall_s": round(wall_s, 1)}


def markdown(rows, summary_, target, header):
    """results.md: every network, then one line per search against the best random network;
    `header` is the first line (the target and the meter)."""
    lines = [header, ""] + md_table(
        ["network", "ops", "params", "MMACs", "predicted ms", "measured ms", "measured / T",
         "measured / baseline", "test accuracy %", "seeds"])
    for r in rows:
        spread = f" +- {100 * r['acc_std']:.2f}" if r["acc_std"] is not None else ""
        lines.append(md_row([
            r["name"], f"`{short_ops(r['ops'])}`", f"{r['params']:,}", f"{r['macs'] / 1e6:.2f}",
            f"{r['predicted_ms']:.3f}", f"{r['measured_ms']:.3f}", f"{r['measured_vs_target']:.3f}",
            f"{r['measured_vs_baseline']:.3f}", f"{100 * r['acc_mean']:.2f}{spread}",
            len(r["test_accuracy"])]))
    best = summary_["best_random"]
    lines += ["", f"Searches against the best random network ({best}, "
              f"{100 * summary_['random_acc_max']:.2f}%):", ""] + md_table(
        ["search seed", "network", "supernet train acc % (last epoch)",
         "derived test acc % (supernet weights)", "retrained test acc %", "predicted ms",
         "measured ms", "measured / T", "random beaten", "beats best random"])
    for s in summary_["searched"]:
        lines.append(md_row([
            s["search_seed"], s["name"], percent(s["supernet_train_acc"]),
            percent(s["derived_test_acc"]), f"{100 * s['acc']:.2f}", f"{s['predicted_ms']:.3f}",
            f"{s['measured_ms']:.3f}", f"{s['measured_vs_target']:.3f}",
            f"{s['random_beaten']} of {summary_['random_count']}",
            "yes" if s["beats_best_random"] else "no"]))
    lines += ["", f"Test accuracy on {rows[0]['test_examples']:,} test images after training on "
              f"{rows[0]['train_examples']:,} images; spread = standard deviation over seeds. "
              "measured / baseline: against the all:k3e6 baseline timed in the same rounds; "
              "unlike measured / T it does not move when the machine runs faster or slower than "
              "when the table was built. Supernet train acc: sampled paths, the search's last "
              "epoch; derived test acc: the searched network with the supernet's weights, batch "
              "norm re-estimated, before any retraining."]
    apart = summary_.get("told_apart")
    if apart:
        lines += ["", f"Are the networks told apart at this scale? One-way ANOVA over the "
                  f"{apart['networks']} networks' seeds: F = {apart['anova_f']:.2f}, "
                  f"p = {apart['anova_p']:.3f}. Standard deviation over the seeds of one "
                  f"network (pooled): {100 * apart['seed_sd']:.2f} points; over the networks' "
                  f"means: {100 * apart['means_sd']:.2f}; of the networks themselves (the "
                  f"means' variance less the seed variance over the seeds): "
                  f"{100 * apart.get('networks_sd', 0.0):.2f} (95% interval up to "
                  f"{100 * apart.get('networks_sd_upper95', 0.0):.2f}). If all networks were "
                  f"equal, every search would beat the best random one with probability "
                  f"{apart['chance_every_search_beats_best_random_if_all_equal']:.3f}."]
    follows = summary_.get("accuracy_follows")
    if follows:
        lines += ["", "What the mean retrained accuracy follows over these networks (Spearman's "
                  "rho, p): " + ", ".join(f"{name.replace('_', ' ')} {v['rho']:+.2f} "
                                           f"({v['p']:.3f})" for name, v in follows.items()
                                           if v["rho"] is not None) + "."]
    lines += ["", "```", json.dumps(summary_), "```"]
    return "\n".join(lines) + "\n"


def scatter_png(rows, target, path):
    plt = pyplot()
    styles = {"random": dict(marker="o", color="tab:blue", label="random (predicted within "
                             f"{100 * FLAGS.random_tolerance:g}% of T)"),
              "baseline": dict(marker="s", color="tab:green", label="baseline all:k3e6"),
              "searched": dict(marker="*", color="tab:red", s=180,
                                label="searched (one per search seed)")}
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    ax.axvspan(0.9 * target, 1.1 * target, color="gray", alpha=0.15, label="T +-10%")
    ax.axvline(target, color="gray", lw=1, ls="--", label=f"T = {target:.3f} ms")
    best_random = max(100 * r["acc_mean"] for r in rows if r["kind"] == "random")
    ax.axhline(best_random, color="tab:blue", lw=1, ls=":", label="best random network")
    for kind, style in styles.items():
        pts = [r for r in rows if r["kind"] == kind]
        x = [r["measured_ms"] for r in pts]
        y = [100 * r["acc_mean"] for r in pts]
        err = [100 * (r["acc_std"] or 0.0) for r in pts]
        ax.errorbar(x, y, yerr=err if any(err) else None, fmt="none", ecolor=style["color"],
                    alpha=0.6)
        ax.scatter(x, y, s=style.pop("s", 50), zorder=3, **style)
    for r in rows:
        ax.annotate(r["name"], (r["measured_ms"], 100 * r["acc_mean"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("measured latency, LiteRT 1 thread, batch 1 (ms)")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.set_title(f"CIFAR-10: accuracy vs measured latency ({'--quick' if FLAGS.quick else 'full'})",
                 fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_png(fig, path)


def earlier_wall_s(out):
    """Seconds the earlier runs that wrote OUTPUT_DIR/results.json took (0 if none): a rerun
    (more seeds, or only the results written again) adds its own time to theirs rather than
    replacing the whole benchmark's time with its own."""
    path = os.path.join(out, "results.json")
    if not os.path.exists(path):
        return 0.0
    with open(path) as f:
        return float(json.load(f).get("summary", {}).get("wall_s") or 0.0)


def write_results(out, nets, table, target, runs, started):
    baseline_ms = measured_ms(next(n for n in nets if n.kind == "baseline"), out)
    rows = [net_row(net, table, target, out, runs[net.name], baseline_ms) for net in nets]
    result = summary(rows, target, earlier_wall_s(out) + time.time() - started,
                     quick=FLAGS.quick)
    data = {"summary": result, "target_ms": target, "table": table.source,
            "table_settings": table.settings, "recipe": recipe_text(),
            "flags": {name: FLAGS[name].value for name in
                      ("seeds", "search_seeds", "random_count", "random_tolerance", "seed",
                       "target_ms", "target_ratio", "target_reference", "latency_table",
                       "latency_check", "latency_loss", "latency_beta", "quick")},
            "networks": rows}
    header = (f"Target T = {target:.3f} ms (LiteRT, {FLAGS.latency_threads} thread, batch "
              f"{FLAGS.latency_batch}); ops per searchable block: kernel+expand (36 = k3e6), "
              "-- = skipped.")
    io_utils.write_json(os.path.join(out, "results.json"), data)
    io_utils.write_text(os.path.join(out, "results.md"), markdown(rows, result, target, header))
    scatter_png(rows, target, os.path.join(out, "latency_accuracy.png"))
    return result


