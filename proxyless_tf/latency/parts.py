"""The parts of a network that a latency table has one entry each for, and their keys.

Keys follow the official ProxylessNAS release, so its Pixel-1 table (`mobile_trim.yaml`) loads
as is:

    Conv-input:224x224x3-output:112x112x32                                     stem
    expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0   a block
    Conv_1-input:7x7x320-output:7x7x1280                                       head 1x1 conv
    Logits-input:7x7x1280-output:1000                                          pool + classifier

`idskip` is 1 when the block keeps its identity shortcut; the measured block then includes the
residual Add. Tables built here also hold `Overhead-invoke`, the cost of running a trivial model.
"""

import dataclasses

from proxyless_tf import architecture
from proxyless_tf.errors import UsageError
from proxyless_tf.search_space import ZERO, parse_op

# The cost of running a model at all (one interpreter invoke / one graph call), measured on a
# trivial model. A network is run once, its parts were each run on their own: the prediction
# adds one overhead and takes it off every part. Tables without it (the official one) are summed.
OVERHEAD_KEY = "Overhead-invoke"
FIXED_GROUP = "fixed"  # Part.group of everything but the blocks with an expansion


def _hwc(size, channels):
    return f"{size}x{size}x{channels}"


def stem_key(input_size, output_size, channels):
    return f"Conv-input:{_hwc(input_size, 3)}-output:{_hwc(output_size, channels)}"


def block_key(input_size, in_channels, output_size, out_channels, expand, kernel, stride, idskip):
    return (f"expanded_conv-input:{_hwc(input_size, in_channels)}-output:"
            f"{_hwc(output_size, out_channels)}-expand:{expand}-kernel:{kernel}-stride:{stride}"
            f"-idskip:{int(idskip)}")


def head_key(size, in_channels, out_channels):
    return f"Conv_1-input:{_hwc(size, in_channels)}-output:{_hwc(size, out_channels)}"


def logits_key(size, in_channels, num_classes):
    return f"Logits-input:{_hwc(size, in_channels)}-output:{num_classes}"


def _out(size, stride):
    return -(-size // stride)  # 'same' padding


@dataclasses.dataclass(frozen=True)
class Part:
    """One measurable piece of a network: stem, block, head (Conv_1) or classifier (Logits)."""

    kind: str
    key: str
    input_size: int
    in_channels: int
    out_channels: int
    stride: int = 1
    op: str = None

    def model(self):
        """A small Keras model of just this part, built with the project's block builder."""
        import keras
        from proxyless_tf import blocks
        inputs = keras.Input((self.input_size, self.input_size, self.in_channels))
        if self.kind == "overhead":
            x = keras.layers.ReLU(name="relu")(inputs)
        elif self.kind == "stem":
            x = blocks.stem(keras, inputs, self.out_channels, self.stride)
        elif self.kind == "block":
            x = blocks.block(keras, inputs, 1, self.op, self.out_channels, self.stride)
        elif self.kind == "head":
            x = blocks.conv_bn(keras, inputs, self.out_channels, 1, 1, "head")
        else:  # logits: what blocks.head does after its 1x1 conv
            x = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
            x = keras.layers.Dense(self.out_channels, name="classifier")(x)
        return keras.Model(inputs, x, name=self.kind)

    @property
    def group(self):
        """The part's group in a refit to another machine (`check.py`): a block with an
        expansion by its depthwise kernel ('k3', 'k5', ...), every other part (stem, the first
        block without expansion, head, classifier) 'fixed'. Machines differ most by kernel:
        LiteRT's XNNPACK has a depthwise microkernel per kernel size and instruction set, and
        on a second 2-vCPU VM the shipped table's k3 and k5 blocks ran 1.45-1.5x slower while
        its k7 blocks ran as fast (docs/latency.md)."""
        if self.kind == "block":
            op = parse_op(self.op)
            if op.expand > 1:
                return f"k{op.kernel}"
        return FIXED_GROUP

    @property
    def weights(self):
        """Numbers this part reads from its weights per inference once the converter has folded
        batch norm into the convolutions: every kernel plus one bias per output channel."""
        cin, cout = self.in_channels, self.out_channels
        if self.kind == "overhead":
            return 0
        if self.kind == "stem":
            return 9 * cin * cout + cout
        if self.kind in ("head", "logits"):
            return cin * cout + cout
        from proxyless_tf import blocks
        return blocks.mbconv_folded_weights(cin, self.op, cout)


OVERHEAD_PART = Part("overhead", OVERHEAD_KEY, 1, 8, 8)


def block_part(input_size, in_channels, out_channels, stride, op_name):
    """The part of a block running `op_name`, or None for `zero` (it costs nothing)."""
    if op_name == ZERO:
        return None
    op = parse_op(op_name)
    idskip = stride == 1 and in_channels == out_channels
    key = block_key(input_size, in_channels, _out(input_size, stride), out_channels, op.expand,
                    op.kernel, stride, idskip)
    return Part("block", key, input_size, in_channels, out_channels, stride, op_name)


def _stem_part(input_size, channels, stride):
    out = _out(input_size, stride)
    return Part("stem", stem_key(input_size, out, channels), input_size, 3, channels, stride)


def _tail_parts(size, channels, head_channels, num_classes):
    return [Part("head", head_key(size, channels, head_channels), size, channels, head_channels),
            Part("logits", logits_key(size, head_channels, num_classes), size, head_channels,
                 num_classes)]


def arch_parts(arch):
    """Every part of a network that costs time, in order (zero blocks have none)."""
    parts = [_stem_part(arch.input_size, arch.stem_channels, arch.stem_stride)]
    size, channels = _out(arch.input_size, arch.stem_stride), arch.stem_channels
    for b in arch.blocks:
        part = block_part(size, b.in_channels, b.out_channels, b.stride, b.op)
        if part is not None:
            parts.append(part)
        size, channels = _out(size, b.stride), b.out_channels
    return parts + _tail_parts(size, channels, arch.head_channels, arch.num_classes)


def space_parts(space):
    """(fixed parts, [[part or None per candidate] per searchable position]) of a space."""
    fixed = [_stem_part(space.input_size, space.stem_channels, space.stem_stride)]
    searchable = []
    for p in space.positions():
        options = [block_part(p.input_size, p.in_channels, p.out_channels, p.stride, op)
                   for op in p.candidates]
        if p.searchable:
            searchable.append(options)
        elif options[0] is not None:
            fixed.append(options[0])
    last = space.positions()[-1]
    fixed += _tail_parts(last.output_size, last.out_channels, space.head_channels,
                         space.num_classes)
    return fixed, searchable


def resolve_arch(spec, space, flag="--arch"):
    """architecture.resolve, with any failure turned into a one-line UsageError."""
    try:
        return architecture.resolve(spec, space)
    except UsageError as e:
        if str(e).startswith(flag):
            raise
        raise UsageError(f"{flag}={spec}: {e}") from None
    except (IndexError, KeyError, ValueError) as e:
        raise UsageError(f"{flag}={spec}: cannot be built for this space "
                         f"({type(e).__name__}: {e})") from None


def table_parts(space, references=()):
    """Every distinct part a table for `space` needs (the invoke overhead first), plus the
    reference networks' parts (references that cannot be laid out on the space, e.g. with
    other stage counts, are left out)."""
    fixed, searchable = space_parts(space)
    parts = [OVERHEAD_PART] + list(fixed) + [p for options in searchable for p in options
                                             if p is not None]
    for name in references:
        try:
            arch = resolve_arch(name, space)
        except UsageError:
            continue
        parts += arch_parts(arch)
    unique = {}
    for part in parts:
        unique.setdefault(part.key, part)
    return list(unique.values())
