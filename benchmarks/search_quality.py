"""Does the supernet learn under one-path training? (issue 13, docs/search_quality.md)

The flags/mobile.cfg space (32x32, width 0.5, depths 2,2,2,2,2,1, every candidate + zero) on the
embedded digits data, batch 32, weights only (epochs = warm-up, no architecture steps), each
recipe through `python -m proxyless_tf.search`:

    random paths   --seed_fraction=0: a random path per block in every step from the start
                   (the recipe before issue 13)
    seed + grow    --seed_fraction=0.5: the seed network (k3e3 everywhere) alone for the first
                   half, grown function-preservingly into every candidate, then random paths
    seed only      --seed_fraction=1: the seed network for every epoch, grown at the end
    seed + grow + skip  --seed_fraction=0.5 --skip_rate=0.5: as seed + grow, each block that
                   can be skipped skipped in half the steps (stochastic depth)
    full mode      --weight_mode=full: every path in every step, weighted by its probability
                   (the DARTS-style memory baseline: N paths' memory)

Per recipe: the sampled-path training accuracy per epoch (history.jsonl) and the derived
network's test accuracy with the supernet's weights, batch norm re-estimated (results.json).
Writes OUTPUT_DIR/results.json and OUTPUT_DIR/curves.png; the last line printed is a JSON summary.
Rerunning skips the recipes that are finished.

    python -m benchmarks.search_quality                # 6 epochs (~240 steps) each, ~8 min
    python -m benchmarks.search_quality --epochs=2     # quicker
"""

import argparse
import json
import os
import time

from benchmarks import REPO
from benchmarks.commands import main_of, run_logged
from benchmarks.progress import say
from benchmarks.reports import pyplot, save_png

RECIPES = {
    "random paths": ["--seed_fraction=0", "--skip_rate=0"],
    "seed + grow": ["--seed_fraction=0.5", "--skip_rate=0"],
    "seed only": ["--seed_fraction=1", "--skip_rate=0"],
    "seed + grow + skip": ["--seed_fraction=0.5", "--skip_rate=0.5"],
    "full mode": ["--weight_mode=full", "--seed_fraction=0", "--skip_rate=0"],
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--output_dir", default="runs/search_quality")
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help=f"comma-separated, among: {', '.join(RECIPES)}")
    args = parser.parse_args(argv)
    unknown = [r for r in args.recipes.split(",") if r not in RECIPES]
    if unknown or args.epochs < 1:
        parser.error(f"--recipes: unknown {unknown}" if unknown else "--epochs must be >= 1")
    return args


def run_recipe(name, args, out):
    """One weights-only search; returns (train accuracy per epoch, derived test accuracy)."""
    folder = os.path.join(out, name.replace(" ", "_").replace("+", "and"))
    if not os.path.exists(os.path.join(folder, "results.json")):
        flags = ["--flagfile=flags/mobile.cfg", f"--epochs={args.epochs}",
                 f"--warmup_epochs={args.epochs}", "--noexport_tflite", "--nolatency_check",
                 f"--output_dir={folder}", *RECIPES[name]]
        run_logged("proxyless_tf.search", flags,
                   os.path.join(out, f"{os.path.basename(folder)}.log"), cwd=REPO)
    with open(os.path.join(folder, "history.jsonl")) as f:
        history = [json.loads(line) for line in f]
    with open(os.path.join(folder, "results.json")) as f:
        results = json.load(f)
    return {"train_acc": [round(100 * h["train_acc"], 1) for h in history],
            "phases": [h["phase"] for h in history],
            "derived_test_acc": round(100 * results["derived_test_acc"], 1),
            "seconds": round(sum(h["seconds"] for h in history), 1)}


def plot(results, path):
    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    for name, r in results.items():
        epochs = range(1, len(r["train_acc"]) + 1)
        ax.plot(epochs, r["train_acc"], marker="o",
                label=f"{name} (derived net: {r['derived_test_acc']:.1f}% test)")
    ax.axhline(10, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("epoch (~40 weight steps of batch 32)")
    ax.set_ylabel("sampled-path train accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("supernet training on digits, flags/mobile.cfg space")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=90)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    started = time.time()
    results = {}
    for name in args.recipes.split(","):
        say(started, name)
        results[name] = run_recipe(name, args, out)
        print(f"    train accuracy by epoch {results[name]['train_acc']}, derived network "
              f"{results[name]['derived_test_acc']}% test", flush=True)
    summary = {"epochs": args.epochs, "recipes": results}
    from proxyless_tf import io_utils
    io_utils.write_json(os.path.join(out, "results.json"), summary)
    plot(results, os.path.join(out, "curves.png"))
    print(json.dumps(summary))


if __name__ == "__main__":
    main_of(main)()
