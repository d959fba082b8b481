"""What a supernet thinks of given networks: accuracy with its weights vs retrained (issue 13)

For a search's output directory on CIFAR-10 (`python -m proxyless_tf.search`; its checkpoints/
hold the supernet of the last saved epoch), every network is evaluated on the test split with
the supernet's weights, batch norm re-estimated (`proxyless_tf.derived`) as
benchmarks.supernet_ranking does: on the same seeded, cached batches of the validation split
(held-out training images, not augmented) for every network and every rerun:

  * the networks of `benchmarks.cifar10_quality` result files (--results), next to their
    mean retrained accuracy, with Spearman's rho and Kendall's tau: does the supernet order them
    as retraining does?
  * uniform networks all:OP (--uniform): does it see what a larger candidate adds?
  * the weight of the wider candidates' added channels: in each path whose expansion is above
    the block's narrowest candidate, the mean |projection weight| of its hidden channels beyond
    the narrowest one's width, relative to those within it. 0 means those channels compute
    nothing yet (they were added by growth with zero projection weights), about 1 that they
    weigh as much as the others.

    python -m benchmarks.inherited_accuracy --search_dir=runs/zero_grad_warmup \\
        --results=runs/cq_skip50_long/results.json,runs/cq_hinge_long/results.json

The last line printed is a JSON summary, also written to SEARCH_DIR/inherited_accuracy.json,
next to inherited_accuracy.png: supernet weights against retrained, one point per network.
"""

import argparse
import json
import os
import sys

from benchmarks import TFDS_DIR
from benchmarks.commands import main_of
from benchmarks.reports import pyplot, save_png
from benchmarks.stats import correlations, rounded
from benchmarks.supernet_eval import evaluate_inherited, restore_supernet


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--search_dir", required=True,
                        help="a search's output directory (its checkpoints/ are read)")
    parser.add_argument("--results", default="",
                        help="comma-separated results.json files of benchmarks.cifar10_quality")
    parser.add_argument("--uniform", default="k3e3,k3e6,k5e3,k5e6,k7e3,k7e6",
                        help="ops OP whose all:OP networks are evaluated too ('' for none)")
    parser.add_argument("--width_multiplier", type=float, default=0.5)
    parser.add_argument("--depths", default="2,2,2,2,2,1")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_train_examples", type=int, default=5000)
    parser.add_argument("--recalibration_batches", type=int, default=20)
    parser.add_argument("--calibration_seed", type=int, default=0,
                        help="the shuffle of the batches batch norm is re-estimated on")
    parser.add_argument("--data_dir", default=TFDS_DIR)
    args = parser.parse_args(argv)
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


def added_channel_weight(net):
    """{"block/op": ratio} for every MBConv path wider than its block's narrowest MBConv
    candidate: mean |projection weight| of the hidden channels beyond the narrowest width over
    the mean of those within it (see the module docstring)."""
    import numpy as np
    from proxyless_tf.ops import parse_op
    ratios = {}
    for m in net.mixed_ops:
        ops = [(op, path) for op, path in zip(m.candidates, m.paths) if path is not None]
        if not ops:
            continue
        narrowest = min(parse_op(op).expand for op, _ in ops)
        for op, path in ops:
            if parse_op(op).expand == narrowest:
                continue
            kernel = [layer for layer in path.layers
                      if layer.name.endswith("_project_conv")][0].get_weights()[0]
            inside = kernel.shape[2] * narrowest // parse_op(op).expand
            ratios[f"{m.block_index}/{op}"] = float(np.abs(kernel[:, :, inside:]).mean()
                                                    / np.abs(kernel[:, :, :inside]).mean())
    return ratios


def scatter_png(summary, path):
    """Inherited against retrained accuracy, coloured by expand-6 blocks; the uniform networks
    all:OP (not retrained) as ticks along the bottom."""
    compared = [r for r in summary["networks"] if r["retrained"] is not None]
    uniform = [r for r in summary["networks"] if r["retrained"] is None]
    if not summary["networks"]:
        return  # nothing evaluated (--uniform= and no --results): no picture
    fig, ax = pyplot().subplots(figsize=(6, 4.5))
    points = ax.scatter([100 * r["inherited"] for r in compared],
                        [100 * r["retrained"] for r in compared],
                        c=[r["expand6_blocks"] for r in compared], cmap="viridis", vmin=0)
    fig.colorbar(points, label="expand-6 blocks")
    for r in uniform:
        ax.axvline(100 * r["inherited"], ymax=0.05, color="grey")
    if uniform:  # their ticks crowd where the ops score alike: their values in a corner
        ax.text(0.02, 0.97, "ticks: all:OP with the supernet's weights\n" + "\n".join(
            f"{r['name']} {100 * r['inherited']:.1f}%" for r in uniform), fontsize=7,
            transform=ax.transAxes, va="top", color="grey")
    ax.set_xlabel("test accuracy with the supernet's weights (%)")
    ax.set_ylabel("retrained test accuracy, mean of seeds (%)")
    title = os.path.normpath(summary["search_dir"])
    if "kendall_inherited_vs_retrained" in summary:
        title += (f"\nKendall tau {summary['kendall_inherited_vs_retrained']['tau']:+.2f}, "
                  f"Spearman rho {summary['spearman_inherited_vs_retrained']['rho']:+.2f} "
                  f"({len(compared)} networks)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def main(argv=None):
    args = parse_args(argv)
    from proxyless_tf import quiet
    quiet.start_tensorflow()
    from proxyless_tf.search_space import small_input_space
    space = small_input_space(width_multiplier=args.width_multiplier,
                              depths=tuple(int(d) for d in args.depths.split(",")))
    from proxyless_tf.errors import UsageError
    try:
        nets = networks(args, space)
    except UsageError as error:  # an op the space does not have, or a results file of another
        sys.exit(f"--uniform/--results: {error}")
    net = restore_supernet(space, args.search_dir)
    added = added_channel_weight(net)
    if added:
        values = sorted(added.values())
        print(f"added channels' projection weight / the narrowest candidate's channels: median "
              f"{values[len(values) // 2]:.3f} ({values[0]:.3f}-{values[-1]:.3f}) over "
              f"{len(values)} paths", flush=True)
    inherited, test_images = evaluate_inherited(args, space, args.search_dir, nets, net)
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
    summary = {"search_dir": args.search_dir, "test_images": test_images, "networks": rows,
               "added_channel_weight": {name: round(v, 4) for name, v in added.items()}}
    if len(compared) >= 3:
        found = correlations([r["inherited"] for r in compared],
                             [r["retrained"] for r in compared])
        summary["spearman_inherited_vs_retrained"] = {"rho": rounded(found["spearman_rho"], 3),
                                                      "p": rounded(found["spearman_p"]),
                                                      "networks": len(compared)}
        summary["kendall_inherited_vs_retrained"] = {"tau": rounded(found["kendall_tau"], 3),
                                                     "p": rounded(found["kendall_p"])}
    from proxyless_tf import io_utils
    io_utils.write_json(os.path.join(args.search_dir, "inherited_accuracy.json"), summary)
    scatter_png(summary, os.path.join(args.search_dir, "inherited_accuracy.png"))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main_of(main)()
