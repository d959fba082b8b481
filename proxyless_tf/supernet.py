"""The supernet (over-parameterised network): the search space with a MixedOp in every
searchable block. Fixed blocks, the stem and the head are the same builders a derived network
uses (`proxyless_tf.blocks`), so weights line up by layer name."""

import keras
import numpy as np
import tensorflow as tf

from proxyless_tf import architecture, blocks
from proxyless_tf.mixed_op import MixedOp


class Supernet(keras.Model):

    def __init__(self, space, alpha_init_std=1e-3, **kwargs):
        kwargs.setdefault("name", "supernet")
        super().__init__(**kwargs)
        self.space = space
        self.positions = space.positions()
        act = space.activation
        self.stem = self._submodel(space.input_size, 3, lambda K, x: blocks.stem(
            K, x, space.stem_channels, space.stem_stride, act), "stem")
        self.backbone = []
        for p in self.positions:
            if p.searchable:
                layer = MixedOp(p.candidates, p.index, p.input_size, p.in_channels,
                                p.out_channels, p.stride, alpha_init_std, act)
            else:
                layer = blocks.build_path(keras, p.candidates[0], p.index, p.input_size,
                                          p.in_channels, p.out_channels, p.stride, act)
            self.backbone.append(layer)
        last = self.positions[-1]
        self.head = self._submodel(last.output_size, last.out_channels, lambda K, x: blocks.head(
            K, x, space.head_channels, space.num_classes, space.dropout, act), "head")
        self.mixed_ops = [b for b in self.backbone if isinstance(b, MixedOp)]
        self._slots_before = tuple(np.cumsum([0] + [isinstance(b, MixedOp) for b in self.backbone])
                                   .tolist())
        self._slot_of_variable = None
        # Keras' tracked lists are no TensorFlow checkpoint dependencies: without these, a
        # tf.train.Checkpoint holds the blocks' weights only through the optimiser and their
        # BatchNorm moving statistics not at all.
        for i, layer in enumerate(self.backbone):
            self._track_trackable(layer, name=f"backbone_{i}")
        self.built = True  # every weight exists: no symbolic build pass on the first call

    @staticmethod
    def _submodel(size, channels, build, name):
        inputs = keras.Input((size, size, channels))
        return keras.Model(inputs, build(keras, inputs), name=name)

    def call(self, images, mode="binary", paths=None, gates=None, training=False,
             selections=None):
        """`paths` is int32 [num_searchable, 2] (binary mode reads column 0), `gates` is float
        [num_searchable, 2] (two-path mode). `selections` (binary mode): the sampled paths'
        weights as `select` read them, for a step that differentiates with respect to them."""
        return self.forward(images, mode, paths, gates, training, selections)

    def forward(self, images, mode="binary", paths=None, gates=None, training=False,
                selections=None, block_inputs=None):
        """`call`'s pass. `block_inputs`, a list, receives every backbone block's input and,
        last, the head's: what `rerun_from` reads instead of running those blocks again.
        (Keras' `__call__` copies its arguments, so a caller that collects calls this method
        directly.)"""
        x = self.stem(images, training=training)
        for position in range(len(self.backbone)):
            if block_inputs is not None:
                block_inputs.append(x)
            x = self._block(position, x, mode, paths, gates, training, selections)
        if block_inputs is not None:
            block_inputs.append(x)
        return self.head(x, training=training)

    def rerun_from(self, start, block_inputs, paths, training=False):
        """The logits with binary `paths`, the blocks before backbone position `start` (a
        scalar tensor) not run again: their outputs are read from `block_inputs`, recorded by
        `forward` with the same paths in those blocks. One graph serves every `start`: each
        block is a choice between its recorded output and running it."""
        x = block_inputs[0]
        for position in range(len(self.backbone)):
            x = tf.cond(tf.less(position, start),
                        lambda p=position: block_inputs[p + 1],
                        lambda p=position, x=x: self._block(p, x, "binary", paths, None,
                                                            training, None))
        return self.head(x, training=training)

    def _block(self, position, x, mode, paths, gates, training, selections):
        """Backbone block `position` on its input `x`, its shortcut included."""
        layer = self.backbone[position]
        if isinstance(layer, MixedOp):
            slot = self._slots_before[position]
            y = layer(x, mode=mode, pair=None if paths is None else paths[slot],
                      gates=None if gates is None else gates[slot], training=training,
                      selection=None if selections is None else selections[slot])
        else:
            y = layer(x, training=training)
        return x + y if self.positions[position].has_shortcut else y

    @property
    def slot_positions(self):
        """The backbone position of each searchable block."""
        return [i for i, layer in enumerate(self.backbone) if isinstance(layer, MixedOp)]

    # --- architecture parameters -------------------------------------------------------------
    @property
    def alphas(self):
        return [m.alpha for m in self.mixed_ops]

    @property
    def weight_variables(self):
        return self.trainable_variables  # alphas are non-trainable weights

    @property
    def shared_variables(self):
        """The weights every path uses: stem, fixed blocks, head."""
        slots = self.variable_slots()
        return [v for v, (slot, _) in zip(self.weight_variables, slots) if slot < 0]

    def select(self, paths):
        """Per searchable block, the weights of the sampled path (column 0 of `paths`) as
        tensors (`MixedOp.select`)."""
        return [m.select(paths[s, 0]) for s, m in enumerate(self.mixed_ops)]

    def probabilities(self):
        return [m.probs.numpy() for m in self.mixed_ops]

    def derive(self, name="derived", indices=None):
        """The final architecture: argmax of alpha in every searchable block (or the candidate
        `indices`, e.g. the most probable network at a latency target), with the per-block
        probabilities kept in the JSON."""
        ops, probs = [], []
        for i, (m, p) in enumerate(zip(self.mixed_ops, self.probabilities())):
            ops.append(m.candidates[int(np.argmax(p)) if indices is None else int(indices[i])])
            probs.append(dict(zip(m.candidates, (float(v) for v in p))))
        return architecture.from_space(self.space, ops, name=name, probs=probs)

    def derived_model(self, arch=None):
        """`arch` (default: `derive()`) as a standalone Keras model holding this supernet's
        weights: the stem, the fixed blocks, the chosen path of every searchable block and the
        head, copied by layer name (the block builder names them alike). This is the paper's
        derived network before retraining; its latency can be measured right away."""
        arch = arch or self.derive()
        self.paths_for(arch)  # the same searchable blocks, and ops among the candidates
        source = {}
        fixed = [b for b in self.backbone if b is not None and not isinstance(b, MixedOp)]
        for model in [self.stem, self.head] + fixed:
            source.update((layer.name, layer) for layer in model.layers)
        for m, b in zip(self.mixed_ops, [b for b in arch.blocks if b.searchable]):
            path = m.paths[m.candidates.index(b.op)]
            if path is not None:
                source.update((layer.name, layer) for layer in path.layers)
        model = blocks.build_network(arch)
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(source[layer.name].get_weights())
        return model

    def argmax_paths(self):
        idx = [int(np.argmax(m.alpha.numpy())) for m in self.mixed_ops]
        return tf.constant([[i, i] for i in idx], tf.int32)

    def paths_for(self, arch):
        """The path indices that fix this supernet to `arch`'s ops."""
        ops = [b.op for b in arch.blocks if b.searchable]
        if len(ops) != len(self.mixed_ops):
            raise ValueError("architecture does not match the supernet's searchable blocks")
        idx = [m.candidates.index(op) for m, op in zip(self.mixed_ops, ops)]
        return tf.constant([[i, i] for i in idx], tf.int32)

    # --- which weights a sampled path touches ------------------------------------------------
    def variable_slots(self):
        """For each weight variable: (searchable slot, candidate index), or (-1, -1) for weights
        every path shares (stem, fixed blocks, head)."""
        if self._slot_of_variable is None:
            owner = {}
            for slot, m in enumerate(self.mixed_ops):
                for k, path in enumerate(m.paths):
                    for v in (path.trainable_variables if path is not None else []):
                        owner[id(v)] = (slot, k)
            self._slot_of_variable = np.array(
                [owner.get(id(v), (-1, -1)) for v in self.weight_variables], np.int32)
        return self._slot_of_variable

    def active_variables(self, paths):
        """Bool [num_weight_variables]: True for shared weights and the sampled paths' weights."""
        slots = self.variable_slots()
        slot = tf.constant(np.maximum(slots[:, 0], 0))
        chosen = tf.gather(paths[:, 0], slot)
        return tf.logical_or(tf.constant(slots[:, 0] < 0), tf.equal(chosen, slots[:, 1]))
