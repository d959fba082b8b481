"""Growing the supernet from a trained seed network: the warm start of the search.

Why. A supernet whose candidates have separate weights does not learn when its paths are drawn
at random from the start: every block without an identity shortcut (the first block of each
stage) then hands the next block one of several unrelated sets of features, and the layers
after it cannot fit them all. Measured on the embedded digits (docs/search_quality.md): a
random-path supernet stays near chance (10-17% after 160 steps; 2 candidates per block are
already enough to stall it, and fixing just those stage-opening blocks lets it learn), while a
network trained alone reaches 88%.

How. Each searchable block has a seed candidate, the one every other candidate can grow from:
the smallest kernel and expansion (k3e3 among the default candidates). The seed network (every
block at its seed) is trained first. Then every other candidate is set to compute exactly the
seed's function (Net2Net-style): its depthwise kernel is the seed's, zero-padded to its size;
its expansion keeps the seed's channels first, and the channels it adds keep their random
expansion weights (so that they can learn) but get zero projection weights (so that they
change nothing yet); its batch norms copy the seed's for the shared channels. Random-path
training then starts from a supernet as accurate as the seed, and the search asks of each
candidate whether its extra kernel taps and channels earn their latency.
"""

import numpy as np

from proxyless_tf import blocks
from proxyless_tf.search_space import parse_op

# Roles of a path's layers, by the names `blocks.mbconv` gives them.
_EXPAND_CONV, _EXPAND_BN = "expand_conv", "expand_bn"
_DW_CONV, _DW_BN = "dw_conv", "dw_bn"
_PROJECT_CONV, _PROJECT_BN = "project_conv", "project_bn"


def can_grow(source, target):
    """Whether MBConv op `target` can start as op `source`'s exact function: a kernel at
    least as large (both odd: zero-padded around the centre) and an expansion at least as
    large, and both with or both without an expansion layer."""
    s, t = parse_op(source), parse_op(target)
    if s is None or t is None:
        return False
    return t.kernel >= s.kernel and t.expand >= s.expand and (s.expand == 1) == (t.expand == 1)


def seed_index(candidates):
    """The block's seed: the MBConv candidate that can grow into the most others (ties: the
    smallest kernel, then expansion). None if the block has no MBConv candidate."""
    ops = [(k, op) for k, op in enumerate(candidates) if parse_op(op) is not None]
    if not ops:
        return None

    def rank(item):
        k, op = item
        reach = sum(can_grow(op, other) for _, other in ops)
        parsed = parse_op(op)
        return (-reach, parsed.kernel, parsed.expand)
    return min(ops, key=rank)[0]


def seed_paths(supernet):
    """int32-ready [num_searchable, 2] indices fixing every searchable block at its seed."""
    return np.array([[seed_index(m.candidates)] * 2 for m in supernet.mixed_ops], np.int32)


def grow(supernet):
    """Sets every candidate that can grow from its block's seed to the seed's function.
    Returns {block index: [ops grown]} and {block index: [ops left as they were]}."""
    grown, left = {}, {}
    for m in supernet.mixed_ops:
        seed = seed_index(m.candidates)
        seed_op = m.candidates[seed]
        for k, op in enumerate(m.candidates):
            if k == seed or m.paths[k] is None:
                continue
            if can_grow(seed_op, op):
                grow_path(m.paths[seed], m.paths[k], m.block_index, seed_op, op)
                grown.setdefault(m.block_index, []).append(op)
            else:
                left.setdefault(m.block_index, []).append(op)
    return grown, left


def grow_path(source, target, block_index, source_op, target_op):
    """Copies path model `source` (op `source_op`) into `target` so that `target` computes
    the same function (see the module docstring)."""
    source_layers = _layers_by_role(source, blocks.op_layer_prefix(block_index, source_op))
    target_layers = _layers_by_role(target, blocks.op_layer_prefix(block_index, target_op))
    if source_layers.keys() != target_layers.keys():
        raise ValueError(f"block {block_index}: {source_op} and {target_op} have different "
                         "layers; cannot grow one from the other")
    for role, layer in target_layers.items():
        weights = [w.copy() for w in layer.get_weights()]
        seed = source_layers[role].get_weights()
        if role == _DW_CONV:
            weights = [_centre(seed[0], weights[0])]
        elif role == _EXPAND_CONV:
            weights[0][..., :seed[0].shape[-1]] = seed[0]
        elif role in (_EXPAND_BN, _DW_BN):
            for new, old in zip(weights, seed):
                new[:old.shape[0]] = old
        elif role == _PROJECT_CONV:
            hidden = seed[0].shape[2]
            weights[0][:, :, :hidden, :] = seed[0]
            weights[0][:, :, hidden:, :] = 0.0  # added channels contribute nothing yet
        else:  # project_bn: the output channels are the same
            weights = [w.copy() for w in seed]
        layer.set_weights(weights)


def _centre(seed_kernel, target_kernel):
    """The target depthwise kernel with the seed's kernel in its centre (zero taps around) on
    the seed's channels; the added channels keep their own weights."""
    kernel = target_kernel.copy()
    hidden, size, pad = seed_kernel.shape[2], seed_kernel.shape[0], \
        (target_kernel.shape[0] - seed_kernel.shape[0]) // 2
    kernel[:, :, :hidden, :] = 0.0
    kernel[pad:pad + size, pad:pad + size, :hidden, :] = seed_kernel
    return kernel


def _layers_by_role(path, prefix):
    return {layer.name[len(prefix) + 1:]: layer for layer in path.layers
            if layer.weights and layer.name.startswith(prefix + "_")}
