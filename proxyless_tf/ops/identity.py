"""`identity`: the block passes its input on. Where the block keeps its identity shortcut this
is the skip (`zero`): no layers, the shortcut carries the input. Where the block changes stride
or width it is the shortcut such macro spaces use instead (NAS-Bench-Macro, ResNet's option B):
a 1x1 convolution with the block's stride and batch norm, no activation."""

import dataclasses

from proxyless_tf import layers
from proxyless_tf.ops.base import Op, keeps_shortcut

NAME = "identity"


@dataclasses.dataclass(frozen=True)
class Identity(Op):
    name = NAME

    def has_layers(self, stride, in_channels, out_channels):
        return not keeps_shortcut(stride, in_channels, out_channels)

    def build(self, K, x, out_channels, stride, prefix, act):
        return layers.conv_bn(K, x, out_channels, 1, stride, f"{prefix}_project", act=None)

    def latency_key(self, input_size, in_channels, output_size, out_channels, stride):
        return (f"identity_conv-input:{input_size}x{input_size}x{in_channels}-output:"
                f"{output_size}x{output_size}x{out_channels}-stride:{stride}")

    def folded_weights(self, in_channels, out_channels):
        return in_channels * out_channels + out_channels


def parse(name):
    return Identity() if name == NAME else None
