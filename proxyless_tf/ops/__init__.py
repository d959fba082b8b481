"""Candidate ops, one module per kind (in the spirit of timm's block-type dispatch):

    zero       the paper's skip (only where the block keeps its shortcut)      ops/zero.py
    identity   the skip, or a 1x1 conv + BN projection where the block        ops/identity.py
               changes stride or width (NAS-Bench-Macro's identity)
    k3e6 ...   MBConv with a 3x3 depthwise conv and expand ratio 6            ops/mbconv.py

Each kind says what every other module asks of an op (`ops/base.py`): where it may stand, its
layers, its latency-table key, group and weight count, and whether it grows into another. To
add a kind, write its module and add its `parse` to KINDS."""

import functools

from proxyless_tf.errors import UsageError
from proxyless_tf.ops import identity, mbconv, zero
from proxyless_tf.ops.base import FIXED_GROUP, Op, keeps_shortcut

KINDS = (zero.parse, identity.parse, mbconv.parse)  # each: name -> Op, or None if not its name
ZERO = zero.NAME
IDENTITY = identity.NAME
GRAMMAR = f"'{ZERO}', '{IDENTITY}' or {mbconv.GRAMMAR}"

__all__ = ["FIXED_GROUP", "GRAMMAR", "IDENTITY", "KINDS", "Op", "ZERO", "keeps_shortcut",
           "parse_op", "skips"]


@functools.lru_cache(maxsize=None)
def parse_op(name):
    """The Op an op name stands for: `k5e6` -> MBConv(5, 6). Anything else is a UsageError."""
    for parse in KINDS:
        op = parse(str(name))
        if op is not None:
            return op
    raise UsageError(f"unknown op {name!r}: expected {GRAMMAR}")


def skips(name, stride, in_channels, out_channels):
    """Whether op `name` in such a block leaves the block out (no layers: the shortcut carries
    the input)."""
    return not parse_op(name).has_layers(stride, in_channels, out_channels)
