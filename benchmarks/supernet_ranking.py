"""Does the supernet rank networks as training them alone does? (issue 13)

On CIFAR-10 (`../shared/datasets/tfds`, TFDS format), the `flags/mobile.cfg` space (32x32, width
0.5, depths 2,2,2,2,2,1, candidates k{3,5,7}e{3,6} + zero), a 10,000-image training subset:

  1. a supernet trained the library's way, weights only: `python -m proxyless_tf.search` with
     --epochs equal to --warmup_epochs (the seed network first, grown into every candidate,
     then random paths; skippable blocks skipped with probability --skip_rate, the library's
     0.5 by default), into OUTPUT_DIR/supernet;
  2. --count architectures spread evenly over the space's predicted latencies (the shipped
     table `proxyless_tf/tables/mobile_32.json`, used only to spread them) from a pool that
     spans small to large networks;
  3. each evaluated on the whole test split with the supernet's weights, batch norm
     re-estimated (`proxyless_tf.derived`) on the same --recalibration_batches batches for
     every network and every rerun: held-out training images (the validation split, not
     augmented), shuffled with --calibration_seed, cached;
  4. each trained alone with one short recipe (`python -m proxyless_tf.train`, the same flags
     for all) and evaluated on the same test split;
  5. Kendall's tau and Spearman's rho between the two accuracies, and a scatter plot.

Writes OUTPUT_DIR/results.json, results.md and ranking.png; OUTPUT_DIR/nets/NAME/ holds each
network's arch.json and training run. Rerunning the same command skips what is finished; a
finished supernet whose flags.txt shows other settings is refused (exit 1, naming them), and
inherited scores kept from other evaluation settings are computed again. The last line printed
is a JSON summary.

    python -m benchmarks.supernet_ranking            # the full benchmark (docs/search_quality.md)
    python -m benchmarks.supernet_ranking --quick    # the same code path, tiny, a few minutes
"""

import argparse
import json
import os
import sys
import time

from benchmarks import REPO, TFDS_DIR, supernet_eval
from benchmarks.commands import main_of, run_logged
from benchmarks.progress import say
from benchmarks.reports import md_row, md_table, pyplot, save_png, signed
from benchmarks.stats import correlations, rounded, spearman

TABLE = os.path.join(REPO, "proxyless_tf", "tables", "mobile_32.json")

FULL = dict(count=10, max_train_examples=10000, batch_size=128, supernet_epochs=10,
            seed_epochs=4, seed_candidate="smallest", skip_rate=0.5, weight_lr=0.05,
            train_epochs=3, train_warmup_epochs=1,
            train_lr=0.05,
            width_multiplier=0.5, depths="2,2,2,2,2,1", recalibration_batches=20,
            calibration_seed=0, output_dir="runs/supernet_ranking")
QUICK = dict(count=4, max_train_examples=640, batch_size=64, supernet_epochs=2, seed_epochs=1,
             seed_candidate="smallest", skip_rate=0.5,
             weight_lr=0.05, train_epochs=1, train_warmup_epochs=0, train_lr=0.05,
             width_multiplier=0.25, depths="1,1,1,1,1,1", recalibration_batches=2,
             calibration_seed=0,
             output_dir="runs/supernet_ranking_quick")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny scale: checks the code path")
    for name, value in FULL.items():
        parser.add_argument(f"--{name}", type=type(value), default=None)
    parser.add_argument("--data_dir", default=TFDS_DIR)
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.count < 3:
        parser.error("--count must be at least 3 (a rank correlation needs networks to rank)")
    if not os.path.isdir(os.path.join(args.data_dir, "cifar10")):
        parser.error(f"--data_dir={args.data_dir}: no cifar10 in TFDS format there "
                     "(../shared/datasets/README.md)")
    return args


def common_flags(args):
    """The data and space flags every subprocess gets: one recipe for all."""
    return ["--dataset=cifar10", f"--data_dir={args.data_dir}", "--space=small_input",
            "--input_size=32", f"--width_multiplier={args.width_multiplier}",
            f"--depths={args.depths}", f"--batch_size={args.batch_size}",
            f"--max_train_examples={args.max_train_examples}", "--valid_fraction=0.1",
            "--seed=0"]


# --- the steps ----------------------------------------------------------------------------------
def train_supernet(args, out):
    """OUTPUT_DIR/supernet: weights only (epochs = warm-up), seed network then random paths."""
    folder = os.path.join(out, "supernet")
    flags = supernet_flags(args)
    if os.path.exists(os.path.join(folder, "results.json")):
        differing = flags_differing(os.path.join(folder, "flags.txt"), flags)
        if differing:  # a supernet of another recipe would be scored as if it were this one
            sys.exit(f"{folder} was trained with other settings ({', '.join(differing)}); "
                     "use another --output_dir or delete that folder")
        return folder
    run_logged("proxyless_tf.search", flags + [f"--output_dir={folder}"],
               os.path.join(out, "supernet.log"), cwd=REPO)
    return folder


def supernet_flags(args):
    """The supernet's recipe: proxyless_tf.search's flags, less --output_dir."""
    return common_flags(args) + [
        f"--epochs={args.supernet_epochs}", f"--warmup_epochs={args.supernet_epochs}",
        f"--seed_fraction={args.seed_epochs / args.supernet_epochs}",
        f"--seed_candidate={args.seed_candidate}", f"--skip_rate={args.skip_rate}",
        f"--weight_lr={args.weight_lr}"]


# what the library did before these flags existed: a flags.txt of an older run lacks them
FLAGS_BEFORE_THEY_EXISTED = {"skip_rate": "0", "seed_candidate": "smallest"}


def flags_differing(flags_txt, flags):
    """The `--name=value` entries of `flags` whose value flags_txt (a finished run's
    flags.txt) does not share: "--name=old (now new)". A name it lacks counts as its value
    before the flag existed (FLAGS_BEFORE_THEY_EXISTED) or, for any other, as differing;
    --data_dir never differs (the same data may lie elsewhere on another checkout). No
    flags.txt at all (not written by proxyless_tf.search): nothing to compare."""
    if not os.path.exists(flags_txt):
        return []
    with open(flags_txt) as f:
        saved = dict(line.strip()[2:].split("=", 1) for line in f
                     if line.startswith("--") and "=" in line)
    differing = []
    for flag in flags:
        name, value = flag[2:].split("=", 1)
        old = saved.get(name, FLAGS_BEFORE_THEY_EXISTED.get(name))
        if name != "data_dir" and (old is None or not same_value(old, value)):
            differing.append(f"--{name}={'(absent)' if old is None else old} (now {value})")
    return differing


def same_value(a, b):
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def choose_archs(space, count):
    """`count` distinct networks at evenly spaced ranks of predicted latency, from a pool that
    spans nearly all-small to nearly all-large networks (latency.calibration_archs)."""
    import numpy as np
    from proxyless_tf import architecture, latency
    table = latency.LatencyTable.load(TABLE)
    pool = {tuple(a.ops): a for a in latency.calibration_archs(space, 400, seed=7, prefix="p")}
    ranked = sorted(pool.values(), key=table.predict)
    picks = [ranked[int(i)] for i in np.round(np.linspace(0, len(ranked) - 1, count))]
    return [(architecture.from_space(space, [b.op for b in a.blocks if b.searchable],
                                     name=f"net{i:02d}"), table.predict(a))
            for i, a in enumerate(picks)]


def evaluation_settings(args):
    """What an inherited score depends on besides the supernet and the network."""
    return {"calibration": "validation split, seeded, cached",
            **{name: getattr(args, name) for name in (
                "recalibration_batches", "calibration_seed", "batch_size",
                "max_train_examples")}}


def inherited_accuracies(args, space, folder, archs):
    """Test accuracy of every arch with the supernet's weights, batch norm re-estimated (kept
    in SUPERNET/inherited.json: a rerun with the same networks and evaluation settings
    reuses them)."""
    saved = os.path.join(folder, "inherited.json")
    names = sorted(arch.name for arch, _ in archs)
    if os.path.exists(saved):
        with open(saved) as f:
            kept = json.load(f)
        if sorted(kept["accuracies"]) == names and \
                kept.get("settings") == evaluation_settings(args):
            return kept["accuracies"], kept["test_images"]
    result, test_images = supernet_eval.evaluate_inherited(args, space, folder, archs)
    from proxyless_tf import io_utils
    io_utils.write_json(saved, {"accuracies": result, "test_images": test_images,
                                "settings": evaluation_settings(args)})
    return result, test_images


def standalone_accuracy(args, out, arch):
    """Trains `arch` alone with the recipe (reused when done); its test accuracy."""
    folder = os.path.join(out, "nets", arch.name)
    os.makedirs(folder, exist_ok=True)
    arch_path = os.path.join(folder, "arch.json")
    arch.save(arch_path)
    train_dir = os.path.join(folder, "train")
    results = os.path.join(train_dir, "results.json")
    if not os.path.exists(results):
        run_logged("proxyless_tf.train", common_flags(args) + [
            f"--arch={arch_path}", f"--train_epochs={args.train_epochs}",
            f"--train_warmup_epochs={args.train_warmup_epochs}", f"--train_lr={args.train_lr}",
            f"--train_output_dir={train_dir}"], os.path.join(folder, "train.log"), cwd=REPO)
    with open(results) as f:
        return float(json.load(f)["test_accuracy"])


# What each accuracy follows: Spearman's rho of both accuracies with simple counts of the ops,
# to tell a ranking error of the supernet from one of the short standalone recipe.
TRAITS = {"depth (blocks not skipped)": lambda ops: sum(op != "zero" for op in ops),
          "expand-6 blocks": lambda ops: sum(op.endswith("e6") for op in ops)}


def traits(rows):
    result = {}
    for name, count in TRAITS.items():
        counts = [count(r["ops"]) for r in rows]
        if len(set(counts)) < 2:  # every network alike: nothing to correlate
            continue
        result[name] = {which: rounded(spearman(counts, [r[key] for r in rows])[0], 3)
                        for which, key in (("supernet", "supernet_acc"),
                                           ("alone", "standalone_acc"))}
    return result


def scatter_png(rows, summary, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    xs = [100 * r["supernet_acc"] for r in rows]
    ys = [100 * r["standalone_acc"] for r in rows]
    points = ax.scatter(xs, ys, c=[r["predicted_ms"] for r in rows], cmap="viridis")
    fig.colorbar(points, label="predicted latency (ms)")
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(r["name"][3:], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("test accuracy with supernet weights (%)")
    ax.set_ylabel("test accuracy trained alone (%)")
    ax.set_title(f"Kendall tau {summary['kendall_tau']:.2f}, Spearman rho "
                 f"{summary['spearman_rho']:.2f} ({len(rows)} networks)")
    fig.tight_layout()
    save_png(fig, path)


def markdown(rows, summary, args):
    lines = ["# Supernet ranking on CIFAR-10", "",
             f"{len(rows)} networks of the space, {args.max_train_examples} training images, "
             f"{summary['test_images']} test images. Supernet: {args.supernet_epochs} epochs "
             f"({args.seed_epochs} seed), skip rate {args.skip_rate:g}; alone: {args.train_epochs} "
             "epochs.", "",
             f"**Kendall tau {summary['kendall_tau']:.3f}** (p {summary['kendall_p']:.3g}), "
             f"Spearman rho {summary['spearman_rho']:.3f} (p {summary['spearman_p']:.3g})", "",
             "Spearman's rho of each accuracy with a count of the ops:", ""]
    for name, rho in summary["traits"].items():
        lines.append(f"- {name}: supernet {signed(rho['supernet'])}, alone "
                     f"{signed(rho['alone'])}")
    lines += [""] + md_table(["network", "ops", "predicted ms", "supernet acc %", "alone acc %"])
    for r in rows:
        lines.append(md_row([r["name"], f"`{' '.join(r['ops'])}`", f"{r['predicted_ms']:.3f}",
                             f"{100 * r['supernet_acc']:.2f}", f"{100 * r['standalone_acc']:.2f}"]))
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    from proxyless_tf import io_utils, quiet
    quiet.start_tensorflow()
    from proxyless_tf.search_space import small_input_space
    space = small_input_space(width_multiplier=args.width_multiplier,
                              depths=tuple(int(d) for d in args.depths.split(",")))
    archs = choose_archs(space, args.count)
    say(started, f"{len(archs)} networks, predicted {archs[0][1]:.3f}-{archs[-1][1]:.3f} ms; "
                 f"training the supernet ({args.supernet_epochs} epochs)")
    folder = train_supernet(args, out)
    say(started, "supernet trained; evaluating every network with its weights")
    inherited, test_images = inherited_accuracies(args, space, folder, archs)
    rows = []
    for i, (arch, predicted) in enumerate(archs):
        say(started, f"training {arch.name} alone ({i + 1}/{len(archs)}): "
                     f"{' '.join(b.op for b in arch.blocks if b.searchable)}")
        rows.append({"name": arch.name, "ops": [b.op for b in arch.blocks if b.searchable],
                     "predicted_ms": predicted, "supernet_acc": inherited[arch.name],
                     "standalone_acc": standalone_accuracy(args, out, arch)})
    summary = correlations([r["supernet_acc"] for r in rows], [r["standalone_acc"] for r in rows])
    summary.update(traits=traits(rows), networks=len(rows), test_images=test_images,
                   quick=args.quick,
                   wall_s=round(time.time() - started, 1))
    io_utils.write_json(os.path.join(out, "results.json"), {"summary": summary, "rows": rows,
                                                             "settings": vars(args)})
    io_utils.write_text(os.path.join(out, "results.md"), markdown(rows, summary, args))
    scatter_png(rows, summary, os.path.join(out, "ranking.png"))
    say(started, f"wrote {out}/results.json, results.md, ranking.png")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main_of(main)()
