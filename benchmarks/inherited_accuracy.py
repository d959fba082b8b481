"""What a supernet thinks of given networks: accuracy with its weights vs retrained (issue 13)

For a search's output directory on CIFAR-10 (`python -m proxyless_tf.search`; its checkpoints/
hold the supernet of the last saved epoch), every network is evaluated on the test split with
the supernet's weights, batch norm re-estimated on training batches (`proxyless_tf.derived`, as
benchmarks/supernet_ranking.py does):

  * the networks of `benchmarks/cifar10_quality.py` result files (--results), next to their
    mean retrained accuracy, with Spearman's rho between the two: does the supernet order them
    as retraining does?
  * uniform networks all:OP (--uniform): does it see what a larger candidate adds?

    python benchmarks/inherited_accuracy.py --search_dir=runs/zero_grad_warmup \\
        --results=runs/cq_skip50_long/results.json,runs/cq_hinge_long/results.json

The last line printed is a JSON summary.
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
TFDS_DIR = os.path.join(os.path.dirname(REPO), "shared", "datasets", "tfds")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--search_dir", required=True,
                        help="a search's output directory (its checkpoints/ are read)")
    parser.add_argument("--results", default="",
                        help="comma-separated results.json files of benchmarks/cifar10_quality.py")
    parser.add_argument("--uniform", default="k3e3,k3e6,k5e3,k5e6,k7e3,k7e6",
                        help="ops OP whose all:OP networks are evaluated too ('' for none)")
    parser.add_argument("--width_multiplier", type=float, default=0.5)
    parser.add_argument("--depths", default="2,2,2,2,2,1")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_train_examples", type=int, default=5000)
    parser.add_argument("--recalibration_batches", type=int, default=20)
    parser.add_argument("--data_dir", default=TFDS_DIR)
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.search_dir, "checkpoints")):
        parser.error(f"--search_dir={args.search_dir}: no checkpoints/ there")
    for path in filter(None, args.results.split(",")):
        if not os.path.exists(path):
            parser.error(f"--results: no file {path}")
    if not os.path.isdir(os.path.join(args.data_dir, "cifar10")):
        parser.error(f"--data_dir={args.data_dir}: no cifar10 in TFDS format there "
                     "(../shared/datasets/README.md)")
    return args


def networks(args, space):
    """(arch, retrained mean accuracy or None) for every network to evaluate; a network that
    several result files share (runs that reuse the random networks) once, from the first."""
    from proxyless_tf import architecture
    found, seen = [], set()
    for path in filter(None, args.results.split(",")):
        run = os.path.basename(os.path.dirname(os.path.abspath(path)))
        with open(path) as f:
            for row in json.load(f)["networks"]:
                if tuple(row["ops"]) in seen:
                    continue
                seen.add(tuple(row["ops"]))
                arch = architecture.from_space(space, row["ops"], name=f"{run}/{row['name']}")
                found.append((arch, row["acc_mean"]))
    blocks = len(space.searchable_positions())
    for op in filter(None, args.uniform.split(",")):
        found.append((architecture.from_space(space, [op] * blocks, name=f"all:{op}"), None))
    return found


def main():
    args = parse_args()
    from proxyless_tf import quiet
    quiet.start_tensorflow()
    from scipy import stats
    from proxyless_tf.search_space import small_input_space
    from supernet_ranking import evaluate_inherited
    space = small_input_space(width_multiplier=args.width_multiplier,
                              depths=tuple(int(d) for d in args.depths.split(",")))
    from proxyless_tf.errors import UsageError
    try:
        nets = networks(args, space)
    except UsageError as error:  # an op the space does not have, or a results file of another
        sys.exit(f"--uniform/--results: {error}")
    inherited, test_images = evaluate_inherited(args, space, args.search_dir, nets)
    rows = []
    for arch, retrained in nets:
        ops = [b.op for b in arch.blocks if b.searchable]
        rows.append({"name": arch.name, "inherited": round(inherited[arch.name], 4),
                     "retrained": retrained,
                     "expand6_blocks": sum(op.endswith("e6") for op in ops)})
        print(f"{arch.name:32s} supernet weights {100 * inherited[arch.name]:6.2f}%  retrained "
              f"{'-' if retrained is None else f'{100 * retrained:.2f}%':>7s}  expand-6 blocks "
              f"{rows[-1]['expand6_blocks']}", flush=True)
    compared = [r for r in rows if r["retrained"] is not None]
    summary = {"search_dir": args.search_dir, "test_images": test_images, "networks": rows}
    if len(compared) >= 3:
        rho, p_value = stats.spearmanr([r["inherited"] for r in compared],
                                       [r["retrained"] for r in compared])
        summary["spearman_inherited_vs_retrained"] = {"rho": round(float(rho), 3),
                                                      "p": round(float(p_value), 4),
                                                      "networks": len(compared)}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
