"""The search space: a MobileNetV2-style backbone whose blocks each choose one candidate op.

Op names are the paper's MBConv choices written `k{kernel}e{expand}` (`k5e3` is a 5x5 depthwise
conv with expand ratio 3), `zero`, which skips the block and leaves its identity shortcut, and
`identity` (the skip, or a 1x1 projection where a block changes shape). What each op is, and
where it may stand, is said in `proxyless_tf.ops`; a space offers a block the candidates that
may stand there.
"""

import dataclasses

from proxyless_tf import layers
from proxyless_tf.errors import UsageError
from proxyless_tf.ops import IDENTITY, ZERO, keeps_shortcut, parse_op

DEFAULT_CANDIDATES = ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6", ZERO)


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
        return keeps_shortcut(self.stride, self.in_channels, self.out_channels)

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
    first_op: str = "k3e1"  # the fixed MBConv1 3x3 block after the stem; "" for none
    first_width: int = 16
    widths: tuple = (24, 40, 80, 96, 192, 320)
    depths: tuple = (4, 4, 4, 4, 4, 1)
    strides: tuple = (2, 2, 2, 1, 2, 1)
    head_width: int = 1280
    candidates: tuple = DEFAULT_CANDIDATES
    width_multiplier: float = 1.0
    dropout: float = 0.0
    activation: str = "relu6"  # or "relu" (layers.ACTIVATIONS)

    def __post_init__(self):
        ops = [parse_op(name) for name in self.candidates]
        if self.first_op:
            parse_op(self.first_op)
        layers.check_activation(self.activation, "--activation")
        if ZERO in self.candidates and IDENTITY in self.candidates:
            raise UsageError(f"--candidates: '{ZERO}' and '{IDENTITY}' are the same op where a "
                             "block keeps its shortcut; offer one of them")
        if not (len(self.widths) == len(self.depths) == len(self.strides)):
            raise UsageError("--widths, --depths and --strides must have the same number of stages")
        if any(d < 1 for d in self.depths):
            raise UsageError("--depths must all be at least 1")
        if self.input_size < 8:
            raise UsageError(f"--input_size must be at least 8, got {self.input_size}")
        if self.width_multiplier <= 0:
            raise UsageError(f"--width_multiplier must be positive, got {self.width_multiplier}")
        # a block that changes shape (stride 2, channels doubled) must have a candidate
        if not any(op.allowed_at(stride=2, in_channels=1, out_channels=2) for op in ops):
            raise UsageError(f"--candidates needs an op that can stand in every block (one "
                             f"besides '{ZERO}', which stands only where a block keeps its "
                             "shortcut)")

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
        """Every block in order: the fixed first block (if any), then the searchable stages."""
        size = self.stem_output_size
        in_ch = self.stem_channels
        blocks = []
        if self.first_op:
            blocks.append(BlockPosition(0, in_ch, self.channels(self.first_width), 1, size,
                                        (self.first_op,)))
            in_ch = blocks[0].out_channels
        for width, depth, first_stride in zip(self.widths, self.depths, self.strides):
            out_ch = self.channels(width)
            for i in range(depth):
                stride = first_stride if i == 0 else 1
                ops = tuple(c for c in self.candidates
                            if parse_op(c).allowed_at(stride, in_ch, out_ch))
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


def nas_bench_macro_space(**overrides):
    """NAS-Bench-Macro's CIFAR-10 space (Su et al., CVPR 2021), exactly: a 32-channel stem at
    stride 1, no fixed block, three stages of 2, 3 and 3 blocks (64, 128, 256 channels, each
    opening at stride 2), each block identity, k3e3 or k5e6, ReLU. `nas_bench_macro.py` maps
    its networks to the benchmark's keys."""
    settings = dict(input_size=32, num_classes=10, stem_stride=1, first_op="",
                    widths=(64, 128, 256), depths=(2, 3, 3), strides=(2, 2, 2),
                    candidates=(IDENTITY, "k3e3", "k5e6"), activation="relu")
    settings.update(overrides)
    return SearchSpace(**settings)


SPACES = {"imagenet": imagenet_space, "small_input": small_input_space,
          "nas_bench_macro": nas_bench_macro_space}


def make_space(preset, **overrides):
    if preset not in SPACES:
        raise UsageError(f"--space={preset!r} is unknown; choose one of {', '.join(SPACES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return SPACES[preset](**overrides)
