"""Where the supernet misjudges NAS-Bench-Macro's networks, block by block (issue 26).

The ranking step of `benchmarks.nas_bench_macro` scores a sample of networks with the
supernet's weights (OUTPUT_DIR/inherited.json). Mapped linearly onto the true accuracies, the
residuals (truth minus the mapped score) averaged over the networks that hold an op at a
block say where the supernet over-rates that choice (negative) or under-rates it (positive):
the choices a search steered by this supernet gets wrong.

    python -m benchmarks.supernet_bias --run=runs/nas_bench_macro
"""

import argparse
import json
import os
import sys

OPS = {"0": "identity", "1": "k3e3", "2": "k5e6"}


def residuals_by_choice(inherited, truth):
    """{op: [mean residual of the networks with op at block i, or None, for each block]} and
    the networks' count per (op, block); residual = truth - the least-squares line of truth on
    the supernet's score."""
    import numpy as np
    keys = sorted(inherited)
    score = np.array([inherited[k] for k in keys])
    true = np.array([truth[k] for k in keys])
    residual = true - np.polyval(np.polyfit(score, true, 1), score)
    table, counts = {}, {}
    for digit, op in OPS.items():
        table[op], counts[op] = [], []
        for block in range(len(keys[0])):
            has = np.array([k[block] == digit for k in keys])
            table[op].append(round(float(residual[has].mean()), 2) if has.any() else None)
            counts[op].append(int(has.sum()))
    return table, counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/nas_bench_macro",
                        help="a nas_bench_macro output folder (its inherited.json)")
    args = parser.parse_args(argv)
    path = os.path.join(args.run, "inherited.json")
    if not os.path.exists(path):
        sys.exit(f"--run={args.run}: no inherited.json there (run benchmarks.nas_bench_macro)")
    from proxyless_tf import nas_bench_macro as nbm
    bench = nbm.Benchmark()
    with open(path) as f:
        inherited = json.load(f)
    truth = {k: bench.record(k).mean_acc for k in inherited}
    table, counts = residuals_by_choice(inherited, truth)
    print("truth - supernet (points), by the op a block holds; negative: over-rated")
    for op, row in table.items():
        print(f"{op:9s}" + "".join(f"{'-' if v is None else f'{v:+.2f}':>8s}" for v in row))
    print(json.dumps({"run": args.run, "networks": len(inherited), "residual_by_op": table,
                      "networks_by_op": counts}))


if __name__ == "__main__":
    main()
