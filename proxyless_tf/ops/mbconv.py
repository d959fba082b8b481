"""`k{kernel}e{expand}`: the mobile inverted bottleneck (MobileNetV2's MBConv), the paper's
candidates: a 1x1 expansion to in_channels x expand (none when expand is 1), a kxk depthwise
convolution with the block's stride, a linear 1x1 projection. `k5e3` is a 5x5 depthwise conv
with expand ratio 3."""

import dataclasses
import re

from proxyless_tf import layers
from proxyless_tf.ops.base import FIXED_GROUP, Op, keeps_shortcut

PATTERN = re.compile(r"^k([1-9][0-9]*)e([1-9][0-9]*)$")
GRAMMAR = "k<odd kernel>e<expand>, e.g. k3e6"


@dataclasses.dataclass(frozen=True)
class MBConv(Op):
    kernel: int
    expand: int

    @property
    def name(self):
        return f"k{self.kernel}e{self.expand}"

    def hidden_channels(self, in_channels):
        """The width of the depthwise stage: the input widened by the expand ratio."""
        return in_channels * self.expand

    def build(self, K, x, out_channels, stride, prefix, act):
        if self.expand != 1:
            x = layers.conv_bn(K, x, self.hidden_channels(x.shape[-1]), 1, 1,
                               f"{prefix}_expand", act)
        x = K.layers.DepthwiseConv2D(self.kernel, stride, padding="same", use_bias=False,
                                     depthwise_initializer=layers.conv_init(K),
                                     name=f"{prefix}_dw_conv")(x)
        x = layers.batch_norm(K, x, f"{prefix}_dw_bn")
        x = layers.activation(K, x, act, f"{prefix}_dw_relu")
        return layers.conv_bn(K, x, out_channels, 1, 1, f"{prefix}_project", act=None)

    def latency_key(self, input_size, in_channels, output_size, out_channels, stride):
        # the official release's key, so that its Pixel-1 table loads as it is
        idskip = keeps_shortcut(stride, in_channels, out_channels)
        return (f"expanded_conv-input:{input_size}x{input_size}x{in_channels}-output:"
                f"{output_size}x{output_size}x{out_channels}-expand:{self.expand}"
                f"-kernel:{self.kernel}-stride:{stride}-idskip:{int(idskip)}")

    @property
    def group(self):
        # Machines differ most by depthwise kernel: LiteRT's XNNPACK has a depthwise
        # microkernel per kernel size and instruction set (docs/latency.md).
        return f"k{self.kernel}" if self.expand > 1 else FIXED_GROUP

    def folded_weights(self, in_channels, out_channels):
        hidden = self.hidden_channels(in_channels)
        expand = in_channels * hidden + hidden if self.expand != 1 else 0
        return expand + self.kernel ** 2 * hidden + hidden + hidden * out_channels + out_channels

    seeds = True

    def can_grow(self, target):
        """A kernel at least as large (both odd: zero-padded around the centre), an expansion at
        least as large, and both with or both without an expansion layer."""
        return self.can_fit(target) and target.kernel >= self.kernel and \
            target.expand >= self.expand

    def can_fit(self, target):
        return isinstance(target, MBConv) and (self.expand == 1) == (target.expand == 1)


def parse(name):
    match = PATTERN.match(str(name))
    if not match or int(match.group(1)) % 2 == 0:
        return None
    return MBConv(int(match.group(1)), int(match.group(2)))
