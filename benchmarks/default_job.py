"""The default job, run again and again: its wall time, where the time goes, and no pause.

Runs the README's main command (`python -m proxyless_tf.search --flagfile=flags/mobile.cfg`)
--runs times in a row in this clone, each into its own folder, and reads back what each run
wrote: phases.json (setup, latency check, seed, warmup, search, results, release, export), the
derived network's test accuracy, and its measured latency against the target and the
prediction. A run whose `release` phase (the step from the search's results to its return,
where a pause was once seen) exceeds --pause_s, or whose time outside the job's clock
(interpreter start and exit) exceeds twice that, is a stall; the JSON line's `stalls`
counts them and the exit status is 1 if there is one.

    python -m benchmarks.default_job --runs=10            # about 20 min on 2 cores
    python -m benchmarks.default_job --runs=1 --quick     # the code path (smoke space)

Writes OUTPUT_DIR/results.json and results.md; run it from a plain shell with nothing else
running (the latency check and the export time networks).
"""

import argparse
import datetime
import glob
import json
import os
import statistics
import sys
import time

from benchmarks import REPO
from benchmarks.commands import main_of, run_logged
from benchmarks.reports import md_row, md_table

COMMAND = ["proxyless_tf.search", "--flagfile=flags/mobile.cfg"]  # python -m ...
QUICK = ["--flagfile=flags/smoke.cfg"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="the smoke space: the code path")
    parser.add_argument("--pause_s", type=float, default=5.0,
                        help="a release phase longer than this (or twice this outside the "
                             "job's clock) is a stall")
    parser.add_argument("--output_dir", default="runs/default_job")
    parser.add_argument("--flagfile", action="append", default=[],
                        help="more flags for the job, e.g. flags/mobile_int8.cfg")
    args = parser.parse_args(argv)
    if args.runs < 1:
        sys.exit(f"--runs={args.runs}: at least 1")
    return args


def run_once(args, folder):
    """One default job into `folder`; its wall time, phases and figures."""
    module, *flags = COMMAND
    started = time.time()
    extra = [f"--flagfile={f}" for f in args.flagfile]
    run_logged(module, flags + extra + (QUICK if args.quick else []) + [
        f"--output_dir={folder}"], folder + ".log", cwd=REPO)
    wall_s = round(time.time() - started, 1)
    with open(os.path.join(folder, "phases.json")) as f:
        phases = json.load(f)
    reports = sorted(glob.glob(os.path.join(folder, "derived.*.report.json")))  # float32, int8
    if len(reports) != 1:
        sys.exit(f"error: {folder}: expected one derived.KIND.report.json, found {len(reports)}")
    with open(reports[0]) as f:
        latency = json.load(f)["latency"]
    with open(os.path.join(folder, "results.json")) as f:
        results = json.load(f)
    # outside the job's clock: the interpreter's start and exit (a pause there shows too)
    outside_s = round(wall_s - phases["total"], 1)
    return {"wall_s": wall_s, "phases_s": phases, "outside_clock_s": outside_s,
            "stall": is_stall(phases["release"], outside_s, args.pause_s),
            "supernet_train_acc": results["supernet_train_acc"],
            "derived_test_acc": results["derived_test_acc"],
            "measured_ms": _rounded(latency["median_ms"]),
            "predicted_ms": _rounded(latency.get("predicted_ms")),
            "target_ms": _rounded(latency.get("target_ms")),
            "misses": latency["misses"] + (latency.get("ratio") or {}).get("misses", [])}


def is_stall(release_s, outside_clock_s, pause_s):
    """A run stalled if its release phase took over `pause_s`, or over twice that passed
    outside the job's clock (the interpreter's start and exit)."""
    return release_s > pause_s or outside_clock_s > 2 * pause_s


def _rounded(ms):
    return None if ms is None else round(ms, 4)


def _ms(value):
    return "-" if value is None else f"{value:.3f}"


def markdown(summary, runs):
    phases = list(runs[0]["phases_s"])
    lines = [f"# The default job, {len(runs)} run{'s' if len(runs) > 1 else ''} in a row", "",
             f"{summary['date']}, `{summary['command']}`: median wall {summary['median_wall_s']} s "
             f"(process start to exit), {summary['stalls']} stall(s).", ""] + md_table(
                 ["run", "wall s", *phases, "test acc", "measured / predicted / target ms"])
    for i, r in enumerate(runs, 1):
        lines.append(md_row([i, f"{r['wall_s']:.0f}",
                             *(f"{r['phases_s'].get(p, 0):.1f}" for p in phases),
                             f"{100 * r['derived_test_acc']:.2f}%",
                             f"{_ms(r['measured_ms'])} / {_ms(r['predicted_ms'])} / "
                             f"{_ms(r['target_ms'])}"]))
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    from proxyless_tf import io_utils
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    runs = []
    for i in range(args.runs):
        runs.append(run_once(args, os.path.join(out, f"run{i + 1:02d}")))
        r = runs[-1]
        print(f"run {i + 1}/{args.runs}: {r['wall_s']:.0f} s; " +
              ", ".join(f"{p} {s:.0f}" for p, s in r["phases_s"].items()) +
              f"; outside the clock {r['outside_clock_s']:.0f}"
              f"; {_ms(r['measured_ms'])} ms vs target {_ms(r['target_ms'])}"
              + ("; STALL" if r["stall"] else ""), flush=True)
    walls = [r["wall_s"] for r in runs]
    summary = {"benchmark": "default_job", "date": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="minutes"),
        "command": "python -m benchmarks.default_job " + " ".join(argv or sys.argv[1:]),
        "runs": len(runs), "median_wall_s": statistics.median(walls),
        "max_wall_s": max(walls), "max_release_s": max(r["phases_s"]["release"] for r in runs),
        "stalls": sum(r["stall"] for r in runs),
        "median_phases_s": {p: statistics.median(r["phases_s"].get(p, 0.0) for r in runs)
                            for p in runs[0]["phases_s"]}}
    io_utils.write_json(os.path.join(out, "results.json"), dict(summary, per_run=runs))
    io_utils.write_text(os.path.join(out, "results.md"), markdown(summary, runs))
    print(json.dumps(summary))
    return 1 if summary["stalls"] else 0


if __name__ == "__main__":
    sys.exit(main_of(main)())
