"""`zero`: the paper's skip. The block is left out and its identity shortcut carries the input,
so it stands only where the block keeps its shortcut (stride 1, equal channels)."""

import dataclasses

from proxyless_tf.ops.base import Op, keeps_shortcut

NAME = "zero"


@dataclasses.dataclass(frozen=True)
class Zero(Op):
    name = NAME
    where = "only where the block keeps its identity shortcut (stride 1, equal channels)"

    def allowed_at(self, stride, in_channels, out_channels):
        return keeps_shortcut(stride, in_channels, out_channels)

    def has_layers(self, stride, in_channels, out_channels):
        return False


def parse(name):
    return Zero() if name == NAME else None
