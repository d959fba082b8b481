"""Validation of a table: predicted (table) against measured (whole network) latency of random
networks of the space and the reference networks, as JSON, a markdown table and a scatter plot.

The networks are timed as the check times its own (`timing.Session`): in rounds, with more
rounds while they disagree (within about a minute), each network's latency the median of its
rounds. On a shared machine a single round can be off by 20% or more, which would count as a
table's miss what is the machine's noise."""

import dataclasses
import os

import numpy as np

from proxyless_tf import architecture, io_utils
from proxyless_tf.errors import UsageError
from proxyless_tf.latency import timing, uncertainty
from proxyless_tf.latency.host import host_description
from proxyless_tf.latency.meter import combine, rounded
from proxyless_tf.latency.parts import resolve_arch
from proxyless_tf.latency.sampling import random_archs


def validation_metrics(predicted, measured):
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    error = predicted - measured
    rel = np.abs(error) / measured
    r = None  # undefined for fewer than two points or a constant side
    if len(measured) > 1 and predicted.std() > 0 and measured.std() > 0:
        r = round(float(np.corrcoef(predicted, measured)[0, 1]), 4)
    return {"within_10pct": round(float(np.mean(rel <= 0.10)), 4),
            "rmse_ms": round(float(np.sqrt(np.mean(error ** 2))), 4),
            "mape": round(float(100 * np.mean(rel)), 3),
            "pearson_r": r, "n": int(len(measured))}


def _networks(space, table, count, seed, references):
    """(random networks + the references the table covers, names of the references left out)."""
    archs, skipped = random_archs(space, count, seed), []
    for name in references:
        try:
            arch = resolve_arch(name, space)
        except UsageError:
            skipped.append(name)
            continue
        (archs.append(arch) if table.covers(arch) else skipped.append(name))
    return archs, skipped


def _row(network, table, session, sigma):
    """A network's prediction against its latency here (the median of its rounds), with how
    well that is known (`se_pct`, one standard error)."""
    predicted = table.predict(network.arch)
    measured = uncertainty.central(network.values(session.stat))
    return {"name": network.arch.name, "ops": network.arch.ops,
            "predicted_ms": round(predicted, 4), "measured_ms": round(measured, 4),
            "measured": rounded(combine(network.timings)),
            "rounds": len(network.timings), "se_pct": _percent(session.se(network, sigma)),
            "error_pct": round(100 * (predicted - measured) / measured, 2)}


def _percent(se):
    return None if se is None else round(100 * float(se), 2)


def validate(space, table, meter, count, output_dir, seed=0, references=architecture.REFERENCE_NAMES,
             progress=True, rounds=1, budget_s=timing.BUDGET_S):
    """Predicted vs measured latency of `count` random networks of `space` plus the reference
    networks the table covers, each converted once and timed in at least `rounds` rounds (a
    pass over all networks each), more while the rounds disagree (for up to `budget_s`
    seconds). Writes validate.json, validate.md and validate.png into `output_dir` and
    returns the metrics."""
    meter.check_available()
    if rounds < 1:
        raise UsageError(f"--latency_rounds must be at least 1, got {rounds}")
    io_utils.ensure_writable_dir(output_dir, "--validate_dir")
    archs, skipped = _networks(space, table, count, seed, references)
    session = timing.Session(meter, "mean" if table.stat == "mean" else "median", progress,
                             budget_s, name="latency validate")
    networks = [timing.Network.of(arch) for arch in archs]
    session.time(networks, rounds, f"latency validate: {len(archs)} networks, "
                                   f"{rounds} round(s)")
    session.settle(networks)
    sigma = session.sigma(networks)
    if progress:
        print(f"latency validate: {len(networks)} networks timed in "
              f"{session.summary(networks)}", flush=True)
    rows = [_row(network, table, session, sigma) for network in networks]
    metrics_of = lambda group: validation_metrics([r["predicted_ms"] for r in group],
                                                  [r["measured_ms"] for r in group])
    groups = {"random": rows[:count], "references": rows[count:]}
    result = {"metrics": metrics_of(rows),
              "metrics_by_group": {name: metrics_of(g) for name, g in groups.items() if g},
              "settings": dict(meter.settings(), rounds=rounds, quiet=meter.quiet),
              "timing": session.summary(networks), "host": host_description(),
              "table": table.source, "table_settings": table.settings, "stat": table.stat,
              "space": dataclasses.asdict(space), "seed": seed, "skipped_references": skipped,
              "rows": rows}
    io_utils.write_json(os.path.join(output_dir, "validate.json"), result)
    io_utils.write_text(os.path.join(output_dir, "validate.md"), markdown(result))
    scatter_png(rows, result["metrics"], os.path.join(output_dir, "validate.png"),
                title=f"{meter.runtime}, {meter.threads} thread(s), batch {meter.batch}, "
                      f"{space.input_size}x{space.input_size}")
    return result["metrics"]


def _calibration_lines(settings):
    calibration = (settings or {}).get("calibration")
    if not calibration:
        return []
    lines = ["", f"table calibration: factor {calibration['factor']}, "
                 f"{calibration.get('ms_per_mweight', 0.0)} ms per million weights, from "
                 f"{calibration.get('n', '?')} networks (seed {calibration.get('seed', '?')})"]
    refit = (settings or {}).get("refit")
    if refit:
        groups = refit.get("group_scales")
        how = (", ".join(f"{g} x{v}" for g, v in groups.items()) if groups else
               f"x{refit['scale']} {refit['offset_ms']:+} ms")
        lines.append(f"refitted to {refit['host']} ({refit['at']}): {how} from "
                     f"{refit['networks']} networks, table `{refit['from']}`")
    return lines


def markdown(result):
    m = result["metrics"]
    lines = ["# Latency validation: predicted (table sum) vs measured (whole network)", "",
             f"runtime {result['settings']['runtime']}, threads {result['settings']['threads']}, "
             f"batch {result['settings']['batch']}, statistic {result['stat']}, "
             f"table `{result['table']}`", "",
             f"timed in {result.get('timing', '?')}", "",
             f"n = {m['n']}, within +-10%: {100 * m['within_10pct']:.1f}%, RMSE {m['rmse_ms']:.3f} ms, "
             f"MAPE {m['mape']:.2f}%, Pearson r {m['pearson_r']}", ""]
    for name, g in result.get("metrics_by_group", {}).items():
        lines += [f"- {name} networks: n = {g['n']}, within +-10%: {100 * g['within_10pct']:.1f}%, "
                  f"MAPE {g['mape']:.2f}%"]
    lines += _calibration_lines(result.get("table_settings"))
    lines += ["", "| network | predicted ms | measured ms | error % |", "|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {r['predicted_ms']:.3f} | {r['measured_ms']:.3f} | "
                     f"{r['error_pct']:+.2f} |")
    return "\n".join(lines) + "\n"


def scatter_png(rows, metrics, path, title=""):
    from proxyless_tf.plots import pyplot, save_png
    plt = pyplot()
    predicted = np.array([r["predicted_ms"] for r in rows])
    measured = np.array([r["measured_ms"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, hi = 0.9 * min(predicted.min(), measured.min()), 1.1 * max(predicted.max(), measured.max())
    line = np.array([lo, hi])
    ax.plot(line, line, "k-", lw=1, label="y = x")
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="gray", alpha=0.2, label="+-10%")
    is_ref = np.array([not r["name"].startswith("random") for r in rows])
    ax.scatter(measured[~is_ref], predicted[~is_ref], s=14, label="random architectures")
    if is_ref.any():
        ax.scatter(measured[is_ref], predicted[is_ref], s=30, marker="*", color="red",
                   label="reference networks")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency, table sum (ms)")
    ax.set_title(f"{title}\nn={metrics['n']}, within 10%: {100 * metrics['within_10pct']:.0f}%, "
                 f"MAPE {metrics['mape']:.1f}%, r={metrics['pearson_r']}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_png(fig, path, dpi=100)
