"""The search space as keras-tuner hyperparameters: one `Choice` per searchable block, named
`block{index}`, whose values are the block's candidate op names; a trial's values to and from
arch.json; and `ProxylessHyperModel`, the standalone network of a trial's values."""

import keras_tuner
import numpy as np

from proxyless_tf import architecture
from proxyless_tf.errors import UsageError


def hp_name(position):
    return f"block{position.index}"


def hyperparameters(space, hp=None):
    """The searchable blocks of `space` as `Choice`s (registered on `hp` when given)."""
    hp = hp if hp is not None else keras_tuner.HyperParameters()
    for p in space.searchable_positions():
        hp.Choice(hp_name(p), list(p.candidates), default=p.candidates[0])
    return hp


def op_indices(space, values):
    """Candidate index per searchable block of the ops `values` names."""
    indices = []
    for p in space.searchable_positions():
        name = hp_name(p)
        if name not in values:
            raise UsageError(f"hyperparameter values have no {name!r} (block {p.index})")
        op = values[name]
        if op not in p.candidates:
            raise UsageError(f"hyperparameter {name}={op!r} is not a candidate of block {p.index} "
                             f"(candidates: {', '.join(p.candidates)})")
        indices.append(p.candidates.index(op))
    return indices


def searchable_ops(space, values):
    """The ops `values` chooses, one per searchable block, in block order."""
    positions = space.searchable_positions()
    return [p.candidates[k] for p, k in zip(positions, op_indices(space, values))]


def architecture_from_values(space, values, name="tuned", probs=None):
    """The arch of a trial: `values` maps `block{i}` to an op (a dict or HyperParameters; keys
    keras-tuner adds itself, such as Hyperband's `tuner/epochs`, are ignored)."""
    if isinstance(values, keras_tuner.HyperParameters):
        values = values.values
    return architecture.from_space(space, searchable_ops(space, values), name=name, probs=probs)


def values_from_architecture(space, arch, source="architecture"):
    """The hyperparameter values of `arch`, which must be a network of `space`."""
    positions = space.positions()
    if len(arch.blocks) != len(positions):
        raise UsageError(f"{source} has {len(arch.blocks)} blocks but the search space has "
                         f"{len(positions)}: give the flags of the space it came from")
    values = {}
    for p, block in zip(positions, arch.blocks):
        if (block.in_channels, block.out_channels, block.stride) != \
                (p.in_channels, p.out_channels, p.stride):
            raise UsageError(f"{source}: block {p.index} is {block.in_channels}->"
                             f"{block.out_channels} stride {block.stride} but the search space "
                             f"has {p.in_channels}->{p.out_channels} stride {p.stride}")
        if p.searchable:
            if block.op not in p.candidates:
                raise UsageError(f"{source}: block {p.index} op {block.op!r} is not a candidate "
                                 f"({', '.join(p.candidates)})")
            values[hp_name(p)] = block.op
    return values


def probabilities_from_architecture(space, arch, source="architecture"):
    """Per searchable block, the probabilities a finished search left in arch.json's `probs`
    (in the block's candidate order)."""
    values_from_architecture(space, arch, source)  # same space
    probs = []
    for p, block in zip(space.positions(), arch.blocks):
        if not p.searchable:
            continue
        if not block.probs or set(block.probs) != set(p.candidates):
            raise UsageError(f"{source}: block {p.index} has no probabilities over its candidates "
                             f"{', '.join(p.candidates)} (is it a search's arch.json?)")
        row = np.array([float(block.probs[c]) for c in p.candidates])
        if not np.all(np.isfinite(row)) or row.min() < 0 or row.sum() <= 0:
            raise UsageError(f"{source}: block {p.index} has invalid probabilities {block.probs}")
        probs.append(row / row.sum())
    return probs


class ProxylessHyperModel(keras_tuner.HyperModel):
    """Builds the standalone network of a trial. Compiled with SGD and a sparse cross-entropy on
    logits, metric `accuracy`, so keras-tuner's own tuners can `search(x, y, validation_data=...)`
    with integer labels and objective `val_accuracy`."""

    def __init__(self, space, learning_rate=0.05, name="proxyless"):
        super().__init__(name=name)
        self.space = space
        self.learning_rate = learning_rate

    def declare_hyperparameters(self, hp):
        hyperparameters(self.space, hp)

    def architecture(self, hp, name="tuned"):
        values = {hp_name(p): hp.Choice(hp_name(p), list(p.candidates), default=p.candidates[0])
                  for p in self.space.searchable_positions()}
        return architecture_from_values(self.space, values, name=name)

    def build(self, hp):
        import keras
        from proxyless_tf import blocks
        model = blocks.build_network(self.architecture(hp, name="candidate"))
        model.compile(optimizer=keras.optimizers.SGD(self.learning_rate, momentum=0.9,
                                                     nesterov=True),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        return model
