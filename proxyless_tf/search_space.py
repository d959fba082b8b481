"""The search space: a MobileNetV2-style backbone whose blocks each choose one candidate op.

Op names are the paper's MBConv choices written `k{kernel}e{expand}` (`k5e3` is a 5x5 depthwise
conv with expand ratio 3) plus `zero`, which skips the block and leaves its identity shortcut.
`zero` is offered only where a block has stride 1 and equal input/output channels.
"""

import dataclasses
import re

from proxyless_tf.errors import UsageError

ZERO = "zero"
DEFAULT_CANDIDATES = ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6", ZERO)
_OP_PATTERN = re.compile(r"^k([1-9][0-9]*)e([1-9][0-9]*)$")


@dataclasses.dataclass(frozen=True)
class MBConvOp:
    kernel: int
    expand: int

    @property
    def name(self):
        return f"k{self.kernel}e{self.expand}"


def parse_op(name):
    """`k5e6` -> MBConvOp(5, 6); `zero` -> None. Anything else is a UsageError."""
    if name == ZERO:
        return None
    match = _OP_PATTERN.match(str(name))
    if not match or int(match.group(1)) % 2 == 0:
        raise UsageError(f"unknown op {name!r}: expected 'zero' or k<odd kernel>e<expand>, e.g. k3e6")
    return MBConvOp(int(match.group(1)), int(match.group(2)))


def make_divisible(value, divisor=8):
    """Rounds channels to a multiple of `divisor`, never below 90% of `value` (MobileNetV2 rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclasses.dataclass(frozen=True)
class BlockPosition:
    """One block of the backbone, before its op is chosen."""

    index: int
    in_channels: int
    out_channels: int
    stride: int
    input_size: int  # spatial size of the block's input (square)
    candidates: tuple  # op names allowed here; a single name for a fixed block

    @property
    def searchable(self):
        return len(self.candidates) > 1

    @property
    def has_shortcut(self):
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def output_size(self):
        return -(-self.input_size // self.stride)  # 'same' padding: ceil(size / stride)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The ProxylessNAS backbone. Defaults are the paper's 224x224 ImageNet space."""

    input_size: int = 224
    num_classes: int = 1000
    stem_width: int = 32
    stem_stride: int = 2
    first_op: str = "k3e1"  # the fixed MBConv1 3x3 block after the stem
    first_width: int = 16
    widths: tuple = (24, 40, 80, 96, 192, 320)
    depths: tuple = (4, 4, 4, 4, 4, 1)
    strides: tuple = (2, 2, 2, 1, 2, 1)
    head_width: int = 1280
    candidates: tuple = DEFAULT_CANDIDATES
    width_multiplier: float = 1.0
    dropout: float = 0.0

    def __post_init__(self):
        for name in self.candidates:
            parse_op(name)
        parse_op(self.first_op)
        if not (len(self.widths) == len(self.depths) == len(self.strides)):
            raise UsageError("--widths, --depths and --strides must have the same number of stages")
        if any(d < 1 for d in self.depths):
            raise UsageError("--depths must all be at least 1")
        if self.input_size < 8:
            raise UsageError(f"--input_size must be at least 8, got {self.input_size}")
        if self.width_multiplier <= 0:
            raise UsageError(f"--width_multiplier must be positive, got {self.width_multiplier}")
        if not [c for c in self.candidates if c != ZERO]:
            raise UsageError("--candidates needs at least one MBConv op besides 'zero'")

    def channels(self, width):
        return make_divisible(width * self.width_multiplier)

    @property
    def stem_channels(self):
        return self.channels(self.stem_width)

    @property
    def head_channels(self):
        # MobileNetV2 keeps the head at full width for multipliers below 1.
        return make_divisible(self.head_width * max(1.0, self.width_multiplier))

    @property
    def stem_output_size(self):
        return -(-self.input_size // self.stem_stride)

    def positions(self):
        """Every block in order: the fixed first block, then the searchable stages."""
        size = self.stem_output_size
        in_ch = self.stem_channels
        first = BlockPosition(0, in_ch, self.channels(self.first_width), 1, size, (self.first_op,))
        blocks = [first]
        in_ch = first.out_channels
        for width, depth, first_stride in zip(self.widths, self.depths, self.strides):
            out_ch = self.channels(width)
            for i in range(depth):
                stride = first_stride if i == 0 else 1
                allow_zero = stride == 1 and in_ch == out_ch
                ops = tuple(c for c in self.candidates if c != ZERO or allow_zero)
                blocks.append(BlockPosition(len(blocks), in_ch, out_ch, stride, size, ops))
                size = -(-size // stride)
                in_ch = out_ch
        return blocks

    def searchable_positions(self):
        return [p for p in self.positions() if p.searchable]


def imagenet_space(**overrides):
    return SearchSpace(**overrides)


def small_input_space(**overrides):
    """For 32x32 images (CIFAR-style): the stem and first stage keep full resolution, so the
    network still ends at 4x4 like the 224 space ends at 7x7."""
    settings = dict(input_size=32, num_classes=10, stem_stride=1, strides=(1, 2, 2, 1, 2, 1))
    settings.update(overrides)
    return SearchSpace(**settings)


SPACES = {"imagenet": imagenet_space, "small_input": small_input_space}


def make_space(preset, **overrides):
    if preset not in SPACES:
        raise UsageError(f"--space={preset!r} is unknown; choose one of {', '.join(SPACES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return SPACES[preset](**overrides)
