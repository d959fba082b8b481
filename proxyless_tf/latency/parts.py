"""The parts of a network that a latency table has one entry each for, and their keys.

Keys follow the official ProxylessNAS release, so its Pixel-1 table (`mobile_trim.yaml`) loads
as is:

    Conv-input:224x224x3-output:112x112x32                                     stem
    expanded_conv-input:56x56x24-output:28x28x40-expand:6-kernel:5-stride:2-idskip:0   a block
    Conv_1-input:7x7x320-output:7x7x1280                                       head 1x1 conv
    Logits-input:7x7x1280-output:1000                                          pool + classifier

`idskip` is 1 when the block keeps its identity shortcut; the measured block then includes the
residual Add. Each op kind names its own block key (`proxyless_tf.ops`; `identity`'s projection
is `identity_conv-input:...-output:...-stride:2`). Tables built here also hold `Overhead-invoke`,
the cost of running a trivial model.
"""

import dataclasses

from proxyless_tf import architecture
from proxyless_tf.errors import UsageError
from proxyless_tf.ops import FIXED_GROUP, parse_op

# The cost of running a model at all (one interpreter invoke / one graph call), measured on a
# trivial model. A network is run once, its parts were each run on their own: the prediction
# adds one overhead and takes it off every part. Tables without it (the official one) are summed.
OVERHEAD_KEY = "Overhead-invoke"


def _hwc(size, channels):
    return f"{size}x{size}x{channels}"


def stem_key(input_size, output_size, channels):
    return f"Conv-input:{_hwc(input_size, 3)}-output:{_hwc(output_size, channels)}"


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
    activation: str = "relu6"  # the space's; not in the key (ReLU and ReLU6 cost alike)

    def model(self):
        """A small Keras model of just this part, built with the project's block builder."""
        import keras
        from proxyless_tf import blocks
        inputs = keras.Input((self.input_size, self.input_size, self.in_channels))
        if self.kind == "overhead":
            x = keras.layers.ReLU(name="relu")(inputs)
        elif self.kind == "stem":
            x = blocks.stem(keras, inputs, self.out_channels, self.stride, self.activation)
        elif self.kind == "block":
            x = blocks.block(keras, inputs, 1, self.op, self.out_channels, self.stride,
                             self.activation)
        elif self.kind == "head":
            x = blocks.head_conv(keras, inputs, self.out_channels, self.activation)
        else:  # logits: what blocks.head does after its 1x1 conv
            x = blocks.classifier(keras, inputs, self.out_channels)
        return keras.Model(inputs, x, name=self.kind)

    @property
    def group(self):
        """The part's group in a refit to another machine (`check.py`): a block's is its op's
        (`Op.group`: an MBConv with an expansion by its depthwise kernel, 'k3', 'k5', ...);
        every other part (stem, head, classifier) is 'fixed'."""
        return parse_op(self.op).group if self.kind == "block" else FIXED_GROUP

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
        return parse_op(self.op).folded_weights(cin, cout)


OVERHEAD_PART = Part("overhead", OVERHEAD_KEY, 1, 8, 8)


def block_part(input_size, in_channels, out_channels, stride, op_name, activation="relu6"):
    """The part of a block running `op_name`, or None where the op skips the block (it costs
    nothing)."""
    op = parse_op(op_name)
    if not op.has_layers(stride, in_channels, out_channels):
        return None
    key = op.latency_key(input_size, in_channels, _out(input_size, stride), out_channels, stride)
    return Part("block", key, input_size, in_channels, out_channels, stride, op_name, activation)


def _stem_part(input_size, channels, stride, activation):
    out = _out(input_size, stride)
    return Part("stem", stem_key(input_size, out, channels), input_size, 3, channels, stride,
                activation=activation)


def _tail_parts(size, channels, head_channels, num_classes, activation):
    return [Part("head", head_key(size, channels, head_channels), size, channels, head_channels,
                 activation=activation),
            Part("logits", logits_key(size, head_channels, num_classes), size, head_channels,
                 num_classes)]


def arch_parts(arch):
    """Every part of a network that costs time, in order (skipped blocks have none)."""
    act = arch.activation
    parts = [_stem_part(arch.input_size, arch.stem_channels, arch.stem_stride, act)]
    size, channels = _out(arch.input_size, arch.stem_stride), arch.stem_channels
    for b in arch.blocks:
        part = block_part(size, b.in_channels, b.out_channels, b.stride, b.op, act)
        if part is not None:
            parts.append(part)
        size, channels = _out(size, b.stride), b.out_channels
    return parts + _tail_parts(size, channels, arch.head_channels, arch.num_classes, act)


def space_parts(space):
    """(fixed parts, [[part or None per candidate] per searchable position]) of a space."""
    act = space.activation
    fixed = [_stem_part(space.input_size, space.stem_channels, space.stem_stride, act)]
    searchable = []
    for p in space.positions():
        options = [block_part(p.input_size, p.in_channels, p.out_channels, p.stride, op, act)
                   for op in p.candidates]
        if p.searchable:
            searchable.append(options)
        elif options[0] is not None:
            fixed.append(options[0])
    last = space.positions()[-1]
    fixed += _tail_parts(last.output_size, last.out_channels, space.head_channels,
                         space.num_classes, act)
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
