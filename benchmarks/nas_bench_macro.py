"""Does the search beat chance? Judged against NAS-Bench-Macro's ground truth (issue 26).

NAS-Bench-Macro trained every network of its CIFAR-10 macro space (`flags/nas_bench_macro.cfg`,
3,969 distinct networks) for 50 epochs with three seeds. So one supernet trained here and a
table look-up answer what retraining on 2 cores could not:

  1. table: a latency table of the space built on this machine (LiteRT, 1 thread, batch 1) and
     every network's predicted latency;
  2. supernet: the library's recipe, weights only (seed network, grown into every candidate,
     then random paths with skips) on CIFAR-10's training images, the search's own train/valid
     split; the 10,000 test images are never used;
  3. ranking: a seeded sample of --networks networks spread evenly over the predicted latencies,
     each scored with the supernet's weights (batch norm re-estimated on the same fixed
     held-out batches for every network), on the held-out validation images; Kendall's tau and
     Spearman's rho with the benchmark's mean accuracy, over the sample and within latency
     terciles, next to the same for MACs, parameters and predicted latency;
  4. searches: the gradient search resumed from the supernet's checkpoint at the 25th, 50th
     and 75th percentile of the predicted latencies, --search_seeds seeds each, and REINFORCE
     at the median; each derived network looked up: its accuracy, its percentile and regret
     among the networks no slower than it, the expected best of 5 and 20 random networks
     within +-5% of its latency, and the uniform networks (all-identity, all-k3e3, all-k5e6).

Writes OUTPUT_DIR/results.json (also as the last line printed), results.md, pareto.png and
ranking.png; with --report, the same under docs/ (nas_bench_macro.md, nas_bench_macro.json,
nas_bench_macro/*.png). Rerunning the same command resumes: finished steps are kept.

    python -m benchmarks.nas_bench_macro --report   # the full benchmark, about 90 min on 2 cores
    python -m benchmarks.nas_bench_macro --quick    # the same code path, tiny (CI, ~2 min)
"""

import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
import time

from benchmarks import DOCS, REPO, TFDS_DIR
from benchmarks.commands import main_of, run_logged
from benchmarks.progress import StepTimes, say
from benchmarks.stats import correlations
from benchmarks.supernet_eval import evaluation_data, restore_supernet

FULL = dict(max_train_examples=0, batch_size=64, steps_per_epoch=350, warmup_epochs=16,
            seed_fraction=0.5, seed_candidate="smallest", skip_rate=0.5, weight_lr=0.05,
            search_epochs=2, reinforce_epochs=1, arch_update_every=1, arch_lr=0.05,
            search_weight_lr=0.0, latency_beta=2.0, zero_pairs="gate", search_seeds=2,
            networks=100, recalibration_batches=20, latency_rounds=3, latency_calibrate=20,
            percentiles="25,50,75", output_dir="runs/nas_bench_macro")
QUICK = dict(FULL, max_train_examples=1280, batch_size=32, steps_per_epoch=3, warmup_epochs=2,
             search_epochs=1, reinforce_epochs=1, search_seeds=1, networks=5,
             recalibration_batches=2, latency_rounds=1, latency_calibrate=0, percentiles="50",
             output_dir="runs/nas_bench_macro_quick")
RECIPE = ("max_train_examples", "batch_size", "steps_per_epoch", "warmup_epochs",
          "seed_fraction", "seed_candidate", "skip_rate", "weight_lr")
UNIFORM = ("identity", "k3e3", "k5e6")
REUSED_STEPS = ("latency table", "supernet", "inherited accuracy")  # with --supernet_from


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny scale: checks the code path")
    parser.add_argument("--report", action="store_true",
                        help="also write the report under docs/ (the full benchmark's)")
    parser.add_argument("--data_dir", default=TFDS_DIR)
    parser.add_argument("--supernet_from", default=None, metavar="DIR",
                        help="reuse the table, supernet and ranking of an earlier run's output "
                             "folder (same recipe): only the searches run, e.g. to try a search "
                             "setting")
    parser.add_argument("--only", default=None, metavar="NAMES",
                        help="run only the searches whose names start with one of these "
                             "(comma-separated, e.g. grad_p25)")
    for name, value in FULL.items():
        parser.add_argument(f"--{name}", type=type(value), default=None)
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not os.path.isdir(os.path.join(args.data_dir, "cifar10")):
        sys.exit(f"--data_dir={args.data_dir}: no cifar10 folder in TFDS format there")
    try:
        args.percentiles = [int(p) for p in args.percentiles.split(",")]
    except ValueError:
        sys.exit(f"--percentiles={args.percentiles}: a comma-separated list of integers")
    if 50 not in args.percentiles or not all(0 < p < 100 for p in args.percentiles):
        sys.exit(f"--percentiles={args.percentiles}: between 0 and 100, with 50 (REINFORCE's)")
    if args.only and not searches(args):
        sys.exit(f"--only={args.only}: no search's name starts with it (the searches: "
                 f"{', '.join(name for name, *_ in all_searches(args))})")
    return args


# --- 1. the latency table ------------------------------------------------------------------------
def space_flags(args):
    return ["--flagfile=flags/nas_bench_macro.cfg", f"--data_dir={os.path.abspath(args.data_dir)}"]


def build_table(args, out):
    path = os.path.join(out, "table.json")
    if not os.path.exists(path):
        run_logged("proxyless_tf.latency", ["build"] + space_flags(args) + [
            f"--output={path}", f"--latency_rounds={args.latency_rounds}",
            f"--latency_calibrate={args.latency_calibrate}"], os.path.join(out, "table.log"),
            cwd=REPO)
    return path


def predicted_latencies(table_path, bench):
    """{canonical key: predicted ms} of every network of the benchmark."""
    from proxyless_tf import latency, nas_bench_macro as nbm
    table = latency.LatencyTable.load(table_path)
    space = nbm.space()
    return {key: table.predict(nbm.arch_of(key, space_=space)) for key in bench.keys()}


# --- 2. the supernet, and the searches resumed from it ----------------------------------------------
def recipe(args):
    return {name: getattr(args, name) for name in RECIPE}


def supernet_flags(args):
    return space_flags(args) + [
        f"--max_train_examples={args.max_train_examples}", f"--batch_size={args.batch_size}",
        f"--steps_per_epoch={args.steps_per_epoch}", f"--warmup_epochs={args.warmup_epochs}",
        f"--seed_fraction={args.seed_fraction}", f"--seed_candidate={args.seed_candidate}",
        f"--skip_rate={args.skip_rate}", f"--weight_lr={args.weight_lr}",
        "--nolatency_check", "--noexport_tflite", "--checkpoint_seconds=600"]


def reuse_ranking(source, out):
    """--supernet_from: the earlier run's inherited scores, copied (the ranking is the
    supernet's: it does not change with the search settings)."""
    if not os.path.exists(os.path.join(source, "supernet", "results.json")):
        sys.exit(f"--supernet_from={source}: no finished supernet there (supernet/results.json)")
    kept = os.path.join(out, "inherited.json")
    if not os.path.exists(kept):
        from proxyless_tf import io_utils
        scores = os.path.join(source, "inherited.json")
        if not os.path.exists(scores):
            sys.exit(f"--supernet_from={source}: no inherited scores there (inherited.json)")
        io_utils.write_json(kept, io_utils.read_json(scores, what="inherited scores"))


def train_supernet(args, out, table_path):
    """OUTPUT_DIR/supernet: weights only (epochs = warm-up). A finished supernet of another
    recipe is refused: it would be scored as if it were this one."""
    folder = os.path.join(out, "supernet")
    saved = os.path.join(folder, "recipe.json")
    if os.path.exists(os.path.join(folder, "results.json")):
        with open(saved) as f:
            if json.load(f) != recipe(args):
                sys.exit(f"{folder} was trained with another recipe ({saved}); use another "
                         "--output_dir or delete that folder")
        return folder
    os.makedirs(folder, exist_ok=True)
    from proxyless_tf import io_utils
    io_utils.write_json(saved, recipe(args))
    run_logged("proxyless_tf.search", supernet_flags(args) + [
        f"--epochs={args.warmup_epochs}", f"--latency_table={table_path}",
        f"--output_dir={folder}"], os.path.join(out, "supernet.log"), cwd=REPO)
    return folder


def all_searches(args):
    """(name, algorithm, percentile, seed) of every search of the plan."""
    return [(f"grad_p{p}_s{s}", "grad", p, s) for p in args.percentiles
            for s in range(args.search_seeds)] + [("reinforce_p50_s0", "reinforce", 50, 0)]


def searches(args):
    """(name, algorithm, percentile, seed) of every search to run (--only: those whose names
    start with one of its prefixes)."""
    plan = all_searches(args)
    if not args.only:
        return plan
    prefixes = tuple(args.only.split(","))
    return [s for s in plan if s[0].startswith(prefixes)]


def search_epochs(args, algo):
    """Search epochs after the supernet's: two for the gradient search, whose alphas are still
    spread after one at the 75th percentile (docs/search_quality.md); REINFORCE one."""
    return args.search_epochs if algo == "grad" else args.reinforce_epochs


def search_settings(args, algo, target_ms, seed):
    """The flags of one search on top of the supernet's, as {flag: value}."""
    return {"epochs": args.warmup_epochs + search_epochs(args, algo),
            "arch_update_every": args.arch_update_every, "arch_lr": args.arch_lr,
            "search_weight_lr": args.search_weight_lr, "latency_beta": args.latency_beta,
            "zero_pairs": args.zero_pairs, "arch_algo": algo, "search_seed": seed,
            "target_ms": round(target_ms, 6)}


def earlier_settings(folder, log_path):
    """The settings an earlier search in `folder` ran with: its settings.json, or for a folder
    from before that file, the flags of the last command its log records (those it names)."""
    from proxyless_tf import io_utils
    saved = os.path.join(folder, "settings.json")
    if os.path.exists(saved):
        return io_utils.read_json(saved, what="settings")
    if not os.path.exists(log_path):
        return None
    with open(log_path) as f:
        commands = [line for line in f if line.startswith("$ ")]
    if not commands:
        return None
    return dict(token[2:].split("=", 1) for token in shlex.split(commands[-1][2:])
                if token.startswith("--") and "=" in token)


def same_settings(earlier, settings):
    """Whether every setting both name has the same value (numbers compared as numbers)."""
    def value(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return str(v)
    return all(value(earlier[k]) == value(v) for k, v in settings.items() if k in earlier)


def run_search(args, out, supernet, table_path, name, algo, target_ms, seed):
    """A search resumed from a copy of the supernet's checkpoints: the same weights and data
    split for every search, its own sampling seed (--search_seed) and target. An earlier
    search in the same folder with other settings, finished or not, is refused: it would be
    reported, or resumed, as if it were this one."""
    from proxyless_tf import architecture, io_utils
    folder = os.path.join(out, "searches", name)
    log_path = os.path.join(out, "searches", f"{name}.log")
    settings = search_settings(args, algo, target_ms, seed)
    earlier = earlier_settings(folder, log_path) if os.path.isdir(folder) else None
    if earlier is not None and not same_settings(earlier, settings):
        sys.exit(f"{folder} was searched with other settings ({name}.log, settings.json); use "
                 "another --output_dir or delete that folder")
    if not os.path.exists(os.path.join(folder, "results.json")):
        if not os.path.isdir(os.path.join(folder, "checkpoints")):
            shutil.copytree(os.path.join(supernet, "checkpoints"),
                            os.path.join(folder, "checkpoints"))
        io_utils.write_json(os.path.join(folder, "settings.json"), settings)
        run_logged("proxyless_tf.search", supernet_flags(args) + [
            f"--{flag}={value}" for flag, value in settings.items()] + [
            f"--latency_table={table_path}", f"--output_dir={folder}"], log_path, cwd=REPO)
    return architecture.Architecture.load(os.path.join(folder, "arch.json"))


# --- 3. ranking ----------------------------------------------------------------------------------
def ranking_sample(latencies, count, seed=0):
    """`count` distinct networks, one drawn at random from each of `count` equal-count bins of
    the networks sorted by predicted latency: spread evenly over the latency range."""
    import numpy as np
    keys = sorted(latencies, key=lambda k: (latencies[k], k))
    bins = np.array_split(np.arange(len(keys)), count)
    rng = np.random.default_rng(seed)
    return [keys[int(rng.choice(b))] for b in bins]


def inherited_accuracies(args, out, supernet, keys, kept_in="inherited.json", known=None):
    """{key: accuracy on the held-out validation images with the supernet's weights}, batch
    norm re-estimated on the same fixed batches for every network; kept in OUTPUT_DIR/kept_in
    and extended as networks are scored (resumable); `known` scores are not scored again."""
    from proxyless_tf import io_utils
    path = os.path.join(out, kept_in)
    kept = io_utils.read_json(path, what="inherited scores") if os.path.exists(path) else {}
    kept = {**(known or {}), **kept}
    todo = [k for k in keys if k not in kept]
    if not todo:
        return kept
    import keras
    from proxyless_tf import derived, nas_bench_macro as nbm
    calibration, valid, net = evaluation(args, supernet)
    bar = keras.utils.Progbar(len(todo), verbose=1 if sys.stdout.isatty() else 2,
                              unit_name="network")
    for i, key in enumerate(todo):
        model = derived.derived_network(net, calibration, nbm.arch_of(key),
                                        args.recalibration_batches)
        kept[key] = derived.accuracy(model, valid)
        bar.update(i + 1)
        if (i + 1) % 10 == 0 or i + 1 == len(todo):
            io_utils.write_json(path, kept)
    return kept


def evaluation(args, supernet_dir):
    """(calibration batches, validation split, supernet with its trained weights): the search's
    own split (seed 0), the calibration its first batches, cached so every network sees the
    same images."""
    from proxyless_tf import nas_bench_macro as nbm
    calibration, splits = evaluation_data(args)
    net = restore_supernet(nbm.space(), supernet_dir)
    for _ in calibration:  # read to its end once: a cache read only in part is dropped
        pass
    # the split repeats for the architecture steps: its first pass holds each image once
    valid = splits.valid.unbatch().take(splits.valid_size).batch(args.batch_size)
    return calibration, valid, net


def ranking(sample, inherited, bench, latencies):
    """Correlations of each score with the true mean accuracy: over the sample and within
    terciles of its predicted latency."""
    import numpy as np
    keys = sorted(sample, key=lambda k: latencies[k])
    scores = {"supernet": lambda k: inherited[k], "macs": lambda k: bench.records[k].flops,
              "params": lambda k: bench.records[k].params, "predicted_latency": latencies.get}
    groups = {"all": keys, **{f"tercile_{i + 1}": list(part) for i, part in
                              enumerate(np.array_split(np.array(keys), 3))}}
    return {score: {group: correlations([fn(k) for k in ks],
                                        [bench.records[k].mean_acc for k in ks], digits=4)
                    for group, ks in groups.items()}
            for score, fn in scores.items()}


# --- 4. what the searched networks are worth -------------------------------------------------------
def judged(arch, target_ms, bench, latencies, uniform):
    import numpy as np
    from proxyless_tf import nas_bench_macro as nbm
    key = nbm.key_of(arch)
    keys = bench.keys()
    result = nbm.standing(bench.records[key].mean_acc, latencies[key],
                          [bench.records[k].mean_acc for k in keys],
                          np.array([latencies[k] for k in keys]))
    beaten = [u for u in uniform.values() if u["latency_ms"] <= latencies[key]]
    result.update(key=key, target_ms=round(target_ms, 4),
                  latency_vs_target=round(latencies[key] / target_ms - 1, 4),
                  above_uniform_no_slower=all(result["accuracy"] > u["accuracy"]
                                              for u in beaten))
    return result


def uniform_networks(bench, latencies):
    from proxyless_tf import nas_bench_macro as nbm
    out = {}
    for digit, op in enumerate(UNIFORM):
        key = nbm.canonical(str(digit) * 8)
        out[f"all:{op}"] = {"key": key, "accuracy": bench.records[key].mean_acc,
                            "latency_ms": latencies[key], "macs": bench.records[key].flops}
    return out


def goals(rank, found):
    """Each goal met or not; the searches' goals None (not judged) without a gradient search in
    the run (--only)."""
    from benchmarks.nas_bench_macro_report import SEARCH_GOALS, gradient_searches
    grad = gradient_searches(found)
    terciles = [rank["supernet"][f"tercile_{i}"]["kendall_tau"] or -1.0 for i in (1, 2, 3)]
    return {
        "tau_at_least_0.6": rank["supernet"]["all"]["kendall_tau"] >= 0.6,
        "tau_above_macs": rank["supernet"]["all"]["kendall_tau"] >
        rank["macs"]["all"]["kendall_tau"],
        "tercile_tau_at_least_0.3": min(terciles) >= 0.3,
        **{goal: all(map(meets, grad)) if grad else None for goal, meets in SEARCH_GOALS.items()}}


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    out = os.path.abspath(args.output_dir)
    os.makedirs(os.path.join(out, "searches"), exist_ok=True)
    import numpy as np
    from benchmarks import nas_bench_macro_report as report
    from proxyless_tf import nas_bench_macro as nbm
    bench = nbm.Benchmark()
    steps = StepTimes(out)
    step = lambda name, fn, *fn_args: steps.run(started, name, fn, *fn_args)  # noqa: E731

    source = os.path.abspath(args.supernet_from) if args.supernet_from else out
    if args.supernet_from:
        reuse_ranking(source, out)
        steps.inherit(StepTimes(source), REUSED_STEPS)
    table_path = step("latency table", build_table, args, source)
    latencies = step("predicted latency of every network", predicted_latencies, table_path, bench)
    ms = np.array(list(latencies.values()))
    targets = {p: float(np.percentile(ms, p)) for p in args.percentiles}
    say(started, "targets " + ", ".join(f"p{p} {t:.3f} ms" for p, t in targets.items()))
    supernet = step("supernet", train_supernet, args, source, table_path)
    sample = ranking_sample(latencies, args.networks)
    inherited = step("inherited accuracy", inherited_accuracies, args, out, supernet, sample)
    rank = ranking(sample, inherited, bench, latencies)
    say(started, f"ranking: supernet tau {rank['supernet']['all']['kendall_tau']:+.3f}, "
                 f"MACs tau {rank['macs']['all']['kendall_tau']:+.3f}")
    uniform = uniform_networks(bench, latencies)
    found = {}
    for name, algo, p, seed in searches(args):
        arch = step(f"search {name}", run_search, args, out, supernet, table_path, name, algo,
                    targets[p], seed)
        found[name] = dict(judged(arch, targets[p], bench, latencies, uniform), algorithm=algo,
                           percentile=p, seed=seed)
        say(started, f"{name}: {found[name]['key']} {found[name]['accuracy']:.2f}% "
                     f"regret {found[name]['regret']:.2f}")
    results = {
        "benchmark": "nas_bench_macro", "quick": args.quick,
        "date": datetime.date.today().isoformat(),
        "command": "python -m benchmarks.nas_bench_macro " + " ".join(argv or sys.argv[1:]),
        "recipe": recipe(args), "search": {k: getattr(args, k) for k in (
            "search_epochs", "reinforce_epochs", "arch_update_every", "arch_lr",
            "search_weight_lr", "latency_beta", "zero_pairs", "search_seeds", "percentiles")},
        "networks": len(bench), "sample": len(sample), "targets_ms": targets,
        "ranking": rank, "kendall_tau": rank["supernet"]["all"]["kendall_tau"],
        "macs_kendall_tau": rank["macs"]["all"]["kendall_tau"],
        "worst_regret": max((r["regret"] for r in found.values() if r["algorithm"] == "grad"),
                            default=None),
        "supernet_from": args.supernet_from, "only": args.only,
        "searches": found, "uniform": uniform, "goals": goals(rank, found),
        "steps_s": steps.times, "wall_s": steps.total_s()}
    report.write(out, results, bench, latencies, inherited, sample)
    if args.report:
        report.publish(out, DOCS)
    print(json.dumps({k: results[k] for k in ("kendall_tau", "macs_kendall_tau",
                                              "worst_regret", "goals", "wall_s")}))
    return results


if __name__ == "__main__":
    main_of(main)()
