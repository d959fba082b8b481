"""An architecture is plain data: a JSON document you can read, diff and hand to any command.

    {"format": "proxyless_tf.arch/1", "name": "...", "input_size": 224, "num_classes": 1000,
     "stem": {"channels": 32, "stride": 2},
     "blocks": [{"op": "k3e1", "in": 32, "out": 16, "stride": 1},
                {"op": "k5e3", "in": 16, "out": 32, "stride": 2, "probs": {"k3e3": 0.1, ...}},
                {"op": "zero", "in": 32, "out": 32, "stride": 1}, ...],
     "head": {"channels": 1280}, "dropout": 0.0, "activation": "relu6"}

A block with stride 1 and equal in/out channels keeps an identity shortcut; `zero` there means
the block is skipped (`proxyless_tf.ops` says what each op is and where it may stand). Every model in the project (supernet candidates, derived networks, the
reference networks) is built from this description by `proxyless_tf.blocks`.
"""

import dataclasses
import re

from proxyless_tf import io_utils, layers
from proxyless_tf.errors import UsageError
from proxyless_tf.ops import keeps_shortcut, parse_op

FORMAT = "proxyless_tf.arch/1"


def keras_name(name):
    """`name` as Keras accepts it for a model (`all:k3e3` is not: ':' is not allowed)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "net"
    return safe if re.match(r"[A-Za-z0-9.]", safe) else "net" + safe


@dataclasses.dataclass
class Block:
    op: str
    in_channels: int
    out_channels: int
    stride: int
    searchable: bool = True
    probs: dict = None  # op -> probability, when the block came out of a search

    @property
    def has_shortcut(self):
        return keeps_shortcut(self.stride, self.in_channels, self.out_channels)

    @property
    def skipped(self):
        """Whether the block is left out (its op has no layers here)."""
        return not parse_op(self.op).has_layers(self.stride, self.in_channels, self.out_channels)

    def to_json(self):
        data = {"op": self.op, "in": self.in_channels, "out": self.out_channels,
                "stride": self.stride, "searchable": self.searchable}
        if self.probs is not None:
            data["probs"] = {k: round(float(v), 6) for k, v in self.probs.items()}
        return data


@dataclasses.dataclass
class Architecture:
    name: str
    input_size: int
    num_classes: int
    stem_channels: int
    stem_stride: int
    blocks: list
    head_channels: int
    dropout: float = 0.0
    activation: str = "relu6"  # layers.ACTIVATIONS

    def __post_init__(self):
        self.validate()

    @property
    def ops(self):
        return [b.op for b in self.blocks]

    def block_input_sizes(self):
        size = -(-self.input_size // self.stem_stride)
        sizes = []
        for block in self.blocks:
            sizes.append(size)
            size = -(-size // block.stride)
        return sizes

    def validate(self, source="architecture"):
        if self.input_size < 8 or self.num_classes < 2:
            raise UsageError(f"{source}: input_size must be >= 8 and num_classes >= 2")
        layers.check_activation(self.activation, f"{source}: activation")
        channels = self.stem_channels
        for i, block in enumerate(self.blocks):
            try:
                op = parse_op(block.op)
            except UsageError as e:
                raise UsageError(f"{source}: block {i}: {e}") from None
            if block.in_channels != channels:
                raise UsageError(f"{source}: block {i} takes {block.in_channels} channels "
                                 f"but the previous layer gives {channels}")
            if block.stride not in (1, 2):
                raise UsageError(f"{source}: block {i} has stride {block.stride}; use 1 or 2")
            if not op.allowed_at(block.stride, block.in_channels, block.out_channels):
                raise UsageError(f"{source}: block {i} is {block.op!r}, which stands {op.where}")
            channels = block.out_channels

    def to_json(self):
        return {
            "format": FORMAT, "name": self.name, "input_size": self.input_size,
            "num_classes": self.num_classes,
            "stem": {"channels": self.stem_channels, "stride": self.stem_stride},
            "blocks": [b.to_json() for b in self.blocks],
            "head": {"channels": self.head_channels}, "dropout": self.dropout,
            "activation": self.activation,
        }

    @classmethod
    def from_json(cls, data, source="architecture"):
        try:
            blocks = [Block(op=b["op"], in_channels=int(b["in"]), out_channels=int(b["out"]),
                            stride=int(b["stride"]), searchable=bool(b.get("searchable", True)),
                            probs=b.get("probs")) for b in data["blocks"]]
            arch = cls.__new__(cls)
            arch.__dict__.update(
                name=str(data.get("name", "arch")), input_size=int(data["input_size"]),
                num_classes=int(data["num_classes"]),
                stem_channels=int(data["stem"]["channels"]),
                stem_stride=int(data["stem"].get("stride", 2)), blocks=blocks,
                head_channels=int(data["head"]["channels"]),
                dropout=float(data.get("dropout", 0.0)),
                activation=str(data.get("activation", "relu6")))
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"{source}: not an architecture description "
                             f"(missing or bad field {e})") from None
        arch.validate(source)
        return arch

    def save(self, path):
        io_utils.write_json(path, self.to_json())

    @classmethod
    def load(cls, path):
        return cls.from_json(io_utils.read_json(path, what="arch file"), source=f"arch file {path!r}")

    def with_input(self, input_size=None, num_classes=None):
        """The same blocks for another resolution or number of classes."""
        data = self.to_json()
        data["input_size"] = input_size or self.input_size
        data["num_classes"] = num_classes or self.num_classes
        return Architecture.from_json(data)


def from_space(space, ops, name="arch", probs=None):
    """Fixes every block of `space` to `ops` (one name per searchable block)."""
    positions = space.positions()
    searchable = [p for p in positions if p.searchable]
    if len(ops) != len(searchable):
        raise UsageError(f"{name}: expected {len(searchable)} ops for the searchable blocks, "
                         f"got {len(ops)}")
    chosen = iter(zip(ops, probs or [None] * len(ops)))
    blocks = []
    for p in positions:
        if p.searchable:
            op, block_probs = next(chosen)
            if op not in p.candidates:
                raise UsageError(f"{name}: op {op!r} is not a candidate of block {p.index} "
                                 f"(candidates: {', '.join(p.candidates)})")
        else:
            op, block_probs = p.candidates[0], None
        blocks.append(Block(op, p.in_channels, p.out_channels, p.stride, p.searchable, block_probs))
    return Architecture(name=name, input_size=space.input_size, num_classes=space.num_classes,
                        stem_channels=space.stem_channels, stem_stride=space.stem_stride,
                        blocks=blocks, head_channels=space.head_channels, dropout=space.dropout,
                        activation=space.activation)


# The published networks, written as stages: (output channels, first stride, ops of the stage).
# Block lists follow the official release's net configs; MobileNetV2 follows its paper.
_REFERENCE_STAGES = {
    "mobilenet_v2": (32, 1280, [
        (16, 1, ["k3e1"]), (24, 2, ["k3e6"] * 2), (32, 2, ["k3e6"] * 3), (64, 2, ["k3e6"] * 4),
        (96, 1, ["k3e6"] * 3), (160, 2, ["k3e6"] * 3), (320, 1, ["k3e6"])]),
    "proxyless_mobile": (32, 1280, [
        (16, 1, ["k3e1"]), (32, 2, ["k5e3", "k3e3", "zero", "zero"]),
        (40, 2, ["k7e3", "k3e3", "k5e3", "k5e3"]), (80, 2, ["k7e6", "k5e3", "k5e3", "k5e3"]),
        (96, 1, ["k5e6", "k5e3", "k5e3", "k5e3"]), (192, 2, ["k7e6", "k7e6", "k7e3", "k7e3"]),
        (320, 1, ["k7e6"])]),
    "proxyless_gpu": (40, 1728, [
        (24, 1, ["k3e1"]), (32, 2, ["k5e3", "zero", "zero", "zero"]),
        (56, 2, ["k7e3", "zero", "zero", "k3e3"]), (112, 2, ["k7e6", "zero", "zero", "k5e3"]),
        (128, 1, ["k5e6", "zero", "k3e3", "k5e3"]), (256, 2, ["k7e6", "k7e6", "k7e6", "k5e6"]),
        (432, 1, ["k7e6"])]),
    "proxyless_cpu": (40, 1432, [
        (24, 1, ["k3e1"]), (32, 2, ["k3e6", "k3e3", "k3e3", "k3e3"]),
        (48, 2, ["k3e6", "k3e3", "k3e3", "k5e3"]), (88, 2, ["k3e6", "zero", "zero", "k3e3"]),
        (104, 1, ["k5e6", "k3e3", "k3e3", "k3e3"]), (216, 2, ["k5e6", "k5e3", "k5e3", "k3e3"]),
        (360, 1, ["k5e6"])]),
}
REFERENCE_NAMES = tuple(_REFERENCE_STAGES)


def reference(name, input_size=224, num_classes=1000, stem_stride=2, first_strides=None):
    """A published network by name. `first_strides` replaces each stage's first stride
    (the small-input variant uses this to keep resolution on 32x32 images)."""
    if name not in _REFERENCE_STAGES:
        raise UsageError(f"unknown architecture {name!r}: use an arch JSON file or one of "
                         f"{', '.join(REFERENCE_NAMES)}")
    stem, head, stages = _REFERENCE_STAGES[name]
    if first_strides is not None and len(first_strides) != len(stages) - 1:
        raise UsageError(f"{name} has {len(stages) - 1} stages after its first block; a space "
                         f"with {len(first_strides)} stages cannot hold it")
    blocks, channels = [], stem
    for s, (width, stride, ops) in enumerate(stages):
        if first_strides is not None and s > 0:
            stride = first_strides[s - 1]
        for i, op in enumerate(ops):
            blocks.append(Block(op, channels, width, stride if i == 0 else 1, searchable=s > 0))
            channels = width
    return Architecture(name=name, input_size=input_size, num_classes=num_classes,
                        stem_channels=stem, stem_stride=stem_stride, blocks=blocks,
                        head_channels=head)


def resolve(spec, space=None):
    """An arch from a JSON path, a reference name, or `all:OP` (every searchable block of `space`
    set to OP). Reference names follow the space's input size, classes and strides."""
    if spec.startswith("all:"):
        if space is None:
            raise UsageError(f"--arch={spec}: 'all:OP' needs a search space")
        op = spec[4:]
        parse_op(op)
        ops = [op if op in p.candidates else _fallback(space, p, op)
               for p in space.searchable_positions()]
        return from_space(space, ops, name=spec)
    if spec in _REFERENCE_STAGES:
        if space is None:
            return reference(spec)
        return reference(spec, space.input_size, space.num_classes, space.stem_stride,
                         first_strides=space.strides)
    if spec.endswith(".json") or "/" in spec:
        return Architecture.load(spec)
    raise UsageError(f"--arch={spec!r} is neither a JSON file, 'all:OP', nor one of "
                     f"{', '.join(REFERENCE_NAMES)}")


def as_architecture(spec, space=None):
    """`spec` as it is when it is an Architecture, else `resolve(spec, space)`."""
    return spec if isinstance(spec, Architecture) else resolve(str(spec), space)


def _fallback(space, position, op):
    # all:zero cannot skip a block that changes shape: an op of the space that cannot stand in
    # a block leaves it at the block's first candidate.
    if op in space.candidates:
        return position.candidates[0]
    raise UsageError(f"--arch=all:{op}: {op} is not a candidate of block {position.index}")
