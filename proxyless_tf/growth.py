"""Growing the supernet from a trained seed network: the warm start of the search.

Why. A supernet whose candidates have separate weights does not learn when its paths are drawn
at random from the start: every block without an identity shortcut (the first block of each
stage) then hands the next block one of several unrelated sets of features, and the layers
after it cannot fit them all: such a supernet stays near chance where a network trained alone
learns; two candidates per block are already enough to stall it, and fixing just those
stage-opening blocks lets it learn (the measurements: docs/history/search_quality.md,
sections 1 and 2).

How (the default, `seed_candidate="smallest"`). Each searchable block has a seed candidate, the
one every other candidate can grow from: the smallest kernel and expansion (k3e3 among the
default candidates). The seed network (every
block at its seed) is trained first. Then every other candidate is set to compute exactly the
seed's function (Net2Net-style): its depthwise kernel is the seed's, zero-padded to its size;
its expansion keeps the seed's channels first, and the channels it adds keep their random
expansion weights (so that they can learn) but get zero projection weights (so that they
change nothing yet); its batch norms copy the seed's for the shared channels. Random-path
training then starts from a supernet as accurate as the seed, and the search asks of each
candidate whether its extra kernel taps and channels earn their latency.

A grown candidate stays near its seed for a long time: its added channels start with zero
projection weights, and a candidate drawn in only a share of the steps moves them slowly (how
slowly: docs/history/search_quality.md, section 9). The supernet then scores a grown candidate
as its seed.
So the seed can also be another candidate (`seed_candidate`: "widest", "largest" or an op
name): candidates smaller than it in a dimension start as its crop there, Once-for-All style
(the centre of its depthwise kernel; its hidden channels sorted by importance, the L1 norm of
their projection weights, and the first ones kept). A crop does not compute the seed's
function exactly, so it starts less accurate than the seed, and the supernet then scores what
a candidate keeps of the seed. With "widest" (k3e6) that order follows the expansion.
"""

import numpy as np

from proxyless_tf import blocks
from proxyless_tf.ops import parse_op

# Roles of a path's layers, by the names `ops/mbconv.py` gives them.
_EXPAND_CONV, _EXPAND_BN = "expand_conv", "expand_bn"
_DW_CONV, _DW_BN = "dw_conv", "dw_bn"
_PROJECT_CONV, _PROJECT_BN = "project_conv", "project_bn"
# the axis of each layer's weights that runs over the hidden (expanded) channels; project_bn
# has none: its channels are the block's output, the same for every candidate
_HIDDEN_AXIS = {_EXPAND_CONV: 3, _DW_CONV: 2, _PROJECT_CONV: 2, _EXPAND_BN: 0, _DW_BN: 0}


def can_grow(source, target):
    """Whether op `target` can start as op `source`'s exact function (the op kind's rule: for
    MBConv a kernel and an expansion at least as large, `ops/mbconv.py`)."""
    return parse_op(source).can_grow(parse_op(target))


SEED_CANDIDATES = ("smallest", "widest", "largest")  # or one op of the candidates, e.g. "k3e6"


def seed_index(candidates, seed_candidate="smallest"):
    """The block's seed: "smallest": the MBConv candidate that can grow into the most others
    (ties: the smallest kernel, then expansion); "widest": the largest expansion at the
    smallest kernel (k3e6 among the defaults); "largest": the one the most others can grow
    into (ties: the largest kernel, then expansion); an op name: that candidate. None if the
    block has no candidate that can seed (`Op.seeds`: the MBConv ops)."""
    ops = [(k, op) for k, op in enumerate(candidates) if parse_op(op).seeds]
    if not ops:
        return None
    if seed_candidate not in SEED_CANDIDATES:
        if seed_candidate not in candidates or not parse_op(seed_candidate).seeds:
            raise ValueError(f"seed_candidate={seed_candidate!r}: use one of "
                             f"{', '.join(SEED_CANDIDATES)} or an MBConv op of the candidates "
                             f"({', '.join(op for _, op in ops)})")
        return list(candidates).index(seed_candidate)
    if seed_candidate == "widest":
        return min(ops, key=lambda item: (-parse_op(item[1]).expand, parse_op(item[1]).kernel))[0]
    largest = seed_candidate == "largest"

    def rank(item):
        k, op = item
        reach = sum(can_grow(other, op) if largest else can_grow(op, other) for _, other in ops)
        parsed = parse_op(op)
        size = (-parsed.kernel, -parsed.expand) if largest else (parsed.kernel, parsed.expand)
        return (-reach,) + size
    return min(ops, key=rank)[0]


def seed_paths(supernet, seed_candidate="smallest"):
    """int32-ready [num_searchable, 2] indices fixing every searchable block at its seed."""
    return np.array([[seed_index(m.candidates, seed_candidate)] * 2 for m in supernet.mixed_ops],
                    np.int32)


def can_fit(source, target):
    """Whether op `target` can start from op `source`'s weights, grown or cropped (for MBConv:
    both with or both without an expansion layer)."""
    return parse_op(source).can_fit(parse_op(target))


def grow(supernet, seed_candidate="smallest", slot_of=None):
    """Sets every other candidate of every block from the block's seed: exactly its function
    where the candidate can grow from it, its crop where the candidate is smaller in a
    dimension (not with the smallest seed, which grows only: a candidate it cannot grow into is
    left as initialised). Returns {"grown" | "cropped" | "left" | "sorted": {block index:
    [ops]}}; "sorted": the seeds whose hidden channels were reordered for their crops, with
    their optimizer state (`slot_of`: see `sort_hidden_channels`)."""
    done = {"grown": {}, "cropped": {}, "left": {}, "sorted": {}}
    crops = seed_candidate != "smallest"
    for m in supernet.mixed_ops:
        seed = seed_index(m.candidates, seed_candidate)
        if seed is None:
            continue
        seed_op = m.candidates[seed]
        others = [(k, op) for k, op in enumerate(m.candidates)
                  if k != seed and m.paths[k] is not None]
        for k, op in others:
            kind = "grown" if can_grow(seed_op, op) else \
                "cropped" if crops and can_fit(seed_op, op) else "left"
            done[kind].setdefault(m.block_index, []).append(op)
        if any(parse_op(op).expand < parse_op(seed_op).expand
               for op in done["cropped"].get(m.block_index, [])):
            # a crop keeps the seed's first channels: make them its most important ones
            sort_hidden_channels(m.paths[seed], m.block_index, seed_op, slot_of)
            done["sorted"][m.block_index] = [seed_op]
        for k, op in others:
            if op not in done["left"].get(m.block_index, []):
                fit_path(m.paths[seed], m.paths[k], m.block_index, seed_op, op)
    return done


def fit_path(source, target, block_index, source_op, target_op):
    """Sets path model `target` (op `target_op`) from path model `source` (op `source_op`).
    Per dimension: a larger depthwise kernel is the source's zero-padded, a smaller one its
    centre; more hidden channels keep the source's first (the added ones keep their random
    expansion weights but get zero projection weights), fewer keep its first ones only. Where
    `target` is at least as large in both, it computes the source's function exactly."""
    source_layers = _layers_by_role(source, blocks.op_layer_prefix(block_index, source_op))
    target_layers = _layers_by_role(target, blocks.op_layer_prefix(block_index, target_op))
    if source_layers.keys() != target_layers.keys():
        raise ValueError(f"block {block_index}: {source_op} and {target_op} have different "
                         "layers; cannot set one from the other")
    for role, layer in target_layers.items():
        seed = source_layers[role].get_weights()
        if role not in _HIDDEN_AXIS:  # project_bn: the output channels are the same
            layer.set_weights([w.copy() for w in seed])
            continue
        weights = [w.copy() for w in layer.get_weights()]
        shared = min(seed[0].shape[_HIDDEN_AXIS[role]], weights[0].shape[_HIDDEN_AXIS[role]])
        if role == _DW_CONV:
            weights = [_fit_kernel(seed[0][:, :, :shared, :], weights[0])]
        elif role == _EXPAND_CONV:
            weights[0][..., :shared] = seed[0][..., :shared]
        elif role in (_EXPAND_BN, _DW_BN):
            for new, old in zip(weights, seed):
                new[:shared] = old[:shared]
        elif role == _PROJECT_CONV:
            weights[0][:, :, :shared, :] = seed[0][:, :, :shared, :]
            weights[0][:, :, shared:, :] = 0.0  # added channels contribute nothing yet
        layer.set_weights(weights)


def sort_hidden_channels(path, block_index, op, slot_of=None):
    """Reorders path model `path`'s hidden (expanded) channels, most important first, without
    changing its function: importance is the L1 norm of a channel's projection weights
    (Once-for-All's channel sorting), so that a crop keeps the channels that matter most.
    `slot_of(variable)`: an optimizer state variable shaped like `variable` (the momentum),
    reordered with it, or None."""
    if parse_op(op).expand == 1:
        raise ValueError(f"{op} has no expansion layer: its hidden channels are its input's")
    layers = _layers_by_role(path, blocks.op_layer_prefix(block_index, op))
    project = layers[_PROJECT_CONV].get_weights()
    order = np.argsort(-np.abs(project[0]).sum(axis=(0, 1, 3)), kind="stable")
    for role, layer in layers.items():
        if role not in _HIDDEN_AXIS:  # project_bn: the output channels stay
            continue
        for variable in layer.weights:
            slot = slot_of(variable) if slot_of and variable.trainable else None
            for v in [variable] + ([slot] if slot is not None and slot is not variable else []):
                v.assign(np.take(v.numpy(), order, axis=_HIDDEN_AXIS[role]))


def _fit_kernel(seed_kernel, target_kernel):
    """The target depthwise kernel with the seed's kernel (on its first channels) in its centre,
    zero taps around it, or cropped to its centre; the target's other channels keep their own
    weights."""
    kernel = target_kernel.copy()
    shared, size, target_size = seed_kernel.shape[2], seed_kernel.shape[0], kernel.shape[0]
    if target_size >= size:
        pad = (target_size - size) // 2
        kernel[:, :, :shared, :] = 0.0
        kernel[pad:pad + size, pad:pad + size, :shared, :] = seed_kernel
    else:
        cut = (size - target_size) // 2
        kernel[:, :, :shared, :] = seed_kernel[cut:cut + target_size, cut:cut + target_size]
    return kernel


def _layers_by_role(path, prefix):
    return {layer.name[len(prefix) + 1:]: layer for layer in path.layers
            if layer.weights and layer.name.startswith(prefix + "_")}
