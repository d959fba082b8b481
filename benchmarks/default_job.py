"""The default job, run again and again: its wall time, where the time goes, and no pause.

Runs the README's main command (`python -m proxyless_tf.search --flagfile=flags/mobile.cfg`)
--runs times in a row in this clone, each into its own folder, and reads back what each run
wrote: phases.json (setup, latency check, seed, warmup, search, results, release, export), the
derived network's test accuracy, and its measured latency against the target and the
prediction. A run whose `release` phase (the step from the search's results to its return,
where a ~30 s pause was once seen) exceeds --pause_s is a stall; the JSON line's `stalls`
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

COMMAND = ["proxyless_tf.search", "--flagfile=flags/mobile.cfg"]  # python -m ...
QUICK = ["--flagfile=flags/smoke.cfg"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="the smoke space: the code path")
    parser.add_argument("--pause_s", type=float, default=5.0,
                        help="a release phase longer than this is a stall")
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
    run_logged(module, flags + (QUICK if args.quick else []) + [f"--output_dir={folder}"],
               folder + ".log", cwd=REPO)
    wall_s = round(time.time() - started, 1)
    with open(os.path.join(folder, "phases.json")) as f:
        phases = json.load(f)
    reports = glob.glob(os.path.join(folder, "derived.*.report.json"))  # float32, int8, ...
    with open(reports[0]) as f:
        latency = json.load(f)["latency"]
    with open(os.path.join(folder, "results.json")) as f:
        results = json.load(f)
    return {"wall_s": wall_s, "phases_s": phases, "stall": phases["release"] > args.pause_s,
            "supernet_train_acc": results["supernet_train_acc"],
            "derived_test_acc": results["derived_test_acc"],
            "measured_ms": round(latency["median_ms"], 4),
            "predicted_ms": round(latency["predicted_ms"], 4),
            "target_ms": round(latency["target_ms"], 4),
            "misses": latency["misses"] + latency.get("ratio", {}).get("misses", [])}


def markdown(summary, runs):
    phases = list(runs[0]["phases_s"])
    lines = [f"# The default job, {len(runs)} run{'s' if len(runs) > 1 else ''} in a row", "",
             f"{summary['date']}, `{summary['command']}`: median wall {summary['median_wall_s']} s "
             f"(process start to exit), {summary['stalls']} stall(s).", "",
             "| run | wall s | " + " | ".join(phases) + " | test acc | measured / predicted / "
             "target ms |", "|---" * (len(phases) + 4) + "|"]
    for i, r in enumerate(runs, 1):
        cells = [f"{r['phases_s'].get(p, 0):.1f}" for p in phases]
        lines.append(f"| {i} | {r['wall_s']:.0f} | " + " | ".join(cells) +
                     f" | {100 * r['derived_test_acc']:.2f}% | {r['measured_ms']:.3f} / "
                     f"{r['predicted_ms']:.3f} / {r['target_ms']:.3f} |")
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
              f"; {r['measured_ms']:.3f} ms vs target {r['target_ms']:.3f}"
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
