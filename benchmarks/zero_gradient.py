"""Does the binary-gate gradient judge `zero` as the loss does? (issue 13, docs/search_quality.md)

In a searched supernet (a `python -m proxyless_tf.search` output directory on CIFAR-10), for
validation batches and each block that can be skipped: the other blocks take a path drawn from
softmax(alpha), the block itself a candidate other than `zero` drawn the same way (`op`). Then,
as the architecture step computes it (mode "two", batch-norm batch statistics):

  * the actual cross-entropy with the block at `op` and at `zero`: which network is better;
  * dCE/dg of the pair's gates, with `op`'s gate on and with `zero`'s gate on. `zero`'s output
    is 0, so its own dCE/dg is 0 and the update of its alpha is -p_op * p_zero * dCE/dg_op
    (Eq. 4): the step raises alpha_zero exactly when dCE/dg_op > 0.

It reports, per block and overall, how often `zero` is actually better (CE lower) and how often
the gradient would raise alpha_zero, with each gate state weighted as the step draws it
(p_op : p_zero). `--zero_pairs=loss` (the search flag) judges such pairs by the two CEs instead.

Then the latency term, when the search had one (its flags.txt: --latency_table, --target_ms,
--latency_loss): the gradient of the step's latency loss (`LatencyObjective.loss` of E[LAT]
over every candidate, as the step computes it) with respect to each alpha_zero: whether
E[LAT] is below the target and in how many blocks the latency term lowers alpha_zero. The
two-sided `abs` loss lowers it whenever E[LAT] is under the target.

    python -m benchmarks.zero_gradient --search_dir=runs/cq_skip50/search_seed0
    python -m benchmarks.zero_gradient --search_dir=runs/cq_skip50/search_seed0 --batches=0

(the second: the latency term alone).
"""

import argparse
import json
import os

from benchmarks import TFDS_DIR
from benchmarks.commands import main_of
from benchmarks.supernet_eval import restore_supernet


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--search_dir", required=True,
                        help="a search's output directory (its checkpoints/ are read)")
    parser.add_argument("--batches", type=int, default=20,
                        help="validation batches (0: the latency term alone)")
    parser.add_argument("--width_multiplier", type=float, default=0.5)
    parser.add_argument("--depths", default="2,2,2,2,2,1")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_train_examples", type=int, default=5000)
    parser.add_argument("--data_dir", default=TFDS_DIR)
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.search_dir, "checkpoints")):
        parser.error(f"--search_dir={args.search_dir}: no checkpoints/ there")
    return args


def gate_state(net, images, labels, paths, block, on):
    """CE and dCE/dg of block `block`'s pair (op, zero) with gate `on` (0: op, 1: zero) on."""
    import tensorflow as tf
    pairs = tf.stack([paths, paths], axis=1)
    pairs = tf.tensor_scatter_nd_update(pairs, [[block, 1]], [net.mixed_ops[block].layout.zero])
    gates = tf.one_hot(tf.fill([len(paths)], 0), 2).numpy()
    gates[block] = [1.0, 0.0] if on == 0 else [0.0, 1.0]
    gates = tf.constant(gates)
    with tf.GradientTape() as tape:
        tape.watch(gates)
        logits = net(images, mode="two", paths=pairs, gates=gates, training=True)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
    return float(ce), tape.gradient(ce, gates)[block].numpy()


def search_flags(search_dir):
    """The search's own flags (its flags.txt), as a dict of --name=value strings."""
    path = os.path.join(search_dir, "flags.txt")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return dict(line.strip()[2:].split("=", 1) for line in f if "=" in line)


def latency_term(net, space, search_dir):
    """How the step's latency loss (of E[LAT] over every candidate, as the step computes it)
    moves alpha_zero in each block that can be skipped."""
    import tensorflow as tf
    from proxyless_tf import latency
    flags = search_flags(search_dir)
    if not flags.get("latency_table") or not flags.get("target_ms"):
        return None
    table = latency.LatencyTable.load(flags["latency_table"])
    objective = latency.LatencyObjective(
        table, space, float(flags["target_ms"]), loss=flags.get("latency_loss", "abs"),
        beta=float(flags.get("latency_beta", 2.0)),
        lam=float(flags["latency_lambda"]) if flags.get("latency_lambda") else None)
    zero = [m.layout.zero for m in net.mixed_ops]  # None where a block cannot be skipped
    alphas = [tf.convert_to_tensor(a) for a in net.alphas]
    with tf.GradientTape() as tape:
        tape.watch(alphas)
        expected = objective.expected(alphas)
        loss = objective.loss(tf.constant(1.0), expected)  # a CE > 0 (mul_log scales it)
    grads = tape.gradient(loss, alphas)
    lowers = [float(grads[s][z]) > 0 for s, z in enumerate(zero) if z is not None]
    return {"latency_loss": objective.form, "target_ms": objective.target_ms,
            "expected_ms": round(float(expected), 4),
            "E_below_target": float(expected) < objective.target_ms,
            "skippable_blocks": len(lowers),
            "latency_term_lowers_alpha_zero": sum(lowers)}


def accuracy_term(net, args):
    """Per skippable block: the actual CE with the block at `op` and at `zero` against the sign
    of the gate-gradient update of alpha_zero, on validation batches."""
    import numpy as np
    import tensorflow as tf
    from proxyless_tf import data
    splits = data.load("cifar10", 32, args.batch_size, args.data_dir, False, 0.1, 0,
                       args.max_train_examples)
    rng = np.random.default_rng(0)
    probs = [tf.nn.softmax(a).numpy() for a in net.alphas]
    skippable = [s for s, m in enumerate(net.mixed_ops) if m.layout.zero is not None]
    rows = {s: [] for s in skippable}
    for images, labels in splits.valid.take(args.batches):
        paths = np.array([rng.choice(len(p), p=p) for p in probs], np.int32)
        for s in skippable:
            m, p = net.mixed_ops[s], probs[s]
            zero = m.layout.zero
            others = np.delete(np.arange(len(p)), zero)
            op = rng.choice(others, p=p[others] / p[others].sum())
            block_paths = paths.copy()
            block_paths[s] = op
            ce_op, grad_op_on = gate_state(net, images, labels, tf.constant(block_paths), s, 0)
            ce_zero, grad_zero_on = gate_state(net, images, labels, tf.constant(block_paths), s, 1)
            w_op = p[op] / (p[op] + p[zero])  # the step's chance of drawing op's gate on
            expected = w_op * grad_op_on[0] + (1 - w_op) * grad_zero_on[0]  # dCE/dg_op
            rows[s].append({"op": m.candidates[op], "ce_op": ce_op, "ce_zero": ce_zero,
                            "dce_dg_op": float(expected), "dce_dg_zero": float(grad_op_on[1])})
    summary = {"blocks": {}}
    for s, r in rows.items():
        summary["blocks"][s] = {
            "p_zero": round(float(probs[s][net.mixed_ops[s].layout.zero]), 3),
            "zero_better": round(float(np.mean([x["ce_zero"] < x["ce_op"] for x in r])), 3),
            "mean_ce_zero_minus_op": round(float(np.mean([x["ce_zero"] - x["ce_op"]
                                                          for x in r])), 4),
            "gradient_raises_zero": round(float(np.mean([x["dce_dg_op"] > 0 for x in r])), 3)}
    every = [x for r in rows.values() for x in r]
    summary["overall"] = {
        "pairs": len(every),
        "zero_better": round(float(np.mean([x["ce_zero"] < x["ce_op"] for x in every])), 3),
        "gradient_raises_zero": round(float(np.mean([x["dce_dg_op"] > 0 for x in every])), 3),
        "agree": round(float(np.mean([(x["ce_zero"] < x["ce_op"]) == (x["dce_dg_op"] > 0)
                                      for x in every])), 3),
        # the premise: zero's output is 0, so its own gate gradient is 0
        "zero_gate_gradient_max_abs": float(np.max([abs(x["dce_dg_zero"]) for x in every]))}
    for s, b in summary["blocks"].items():
        print(f"block {s}: p(zero) {b['p_zero']}, zero better in {100 * b['zero_better']:.0f}% "
              f"of batches (mean CE zero - op {b['mean_ce_zero_minus_op']:+.4f}), gradient "
              f"raises alpha_zero in {100 * b['gradient_raises_zero']:.0f}%", flush=True)
    return summary["overall"]


def main(argv=None):
    args = parse_args(argv)
    from proxyless_tf import quiet
    quiet.start_tensorflow()
    from proxyless_tf.search_space import small_input_space
    space = small_input_space(width_multiplier=args.width_multiplier,
                              depths=tuple(int(d) for d in args.depths.split(",")))
    net = restore_supernet(space, args.search_dir)
    if args.batches:
        print(json.dumps({"search_dir": args.search_dir, "batches": args.batches,
                          **accuracy_term(net, args)}), flush=True)
    latency = latency_term(net, space, args.search_dir)
    if latency is not None:
        print(json.dumps({"search_dir": args.search_dir, **latency}), flush=True)


if __name__ == "__main__":
    main_of(main)()
