"""A block's candidate paths as data: how the binary step computes only the sampled path and
still compiles in seconds.

Each candidate path is an ordinary Keras model made by the block builder
(`proxyless_tf.blocks.build_path`), and a derived network is built from the same builder. But a
compiled step that holds every candidate as a branch of `tf.switch_case` has to trace every
layer of every path, and the gradient of a switch over N paths pads every branch with the other
branches' intermediates: the supernet's first call then cost many times a standalone network's
(docs/search_cost.md has the figures, before and after). So a search step does it the other
way round:

* the sampled candidate's *weights* are picked, as tensors, by a `Case` op over the block's
  variable handles (`PathLayout.read`): a few ops per block, no gradient through it;
* the block's layers are traced once, on weights whose shapes are left open (`run_layers`), so
  that the same ops compute k3e3 or k7e6: a step traces each block once, as a standalone
  network does, not once per candidate;
* the step differentiates with respect to the picked tensors and hands each block's gradients
  to another `Case` that updates only the sampled candidate's variables
  (`PathLayout.apply_update`), and one more writes the batch-norm moving statistics back
  (`PathLayout.assign_moving`);
* `zero` reads a sliver of a candidate whose output is exactly 0 (`sliver_sizes`), so it
  needs no branch of its own either.

`run_layers` evaluates the path model's own layers (their strides, padding, epsilon, momentum
and activation) on the given weights, with the calls the layers make (batch norm in training
uses TensorFlow's fused kernel, which keeps fewer tensors for the backward pass), so a
candidate computes what its Keras model computes (tests/test_mixed_op.py checks it: the full
mode against each path's own model, the derived network against the supernet). Only the stock
layers the block builder uses are supported.
"""

import keras
import tensorflow as tf
from keras import ops

_RESOURCE = tf.TensorSpec([], tf.resource)


# --- one candidate path, computed from its weights -------------------------------------------
def path_state(path):
    """The path model's variables in layer order: (trainable, moving). Trainable: conv kernels,
    then gamma and beta of each batch norm; moving: each batch norm's mean and variance."""
    trainable, moving = [], []
    for layer in _computing_layers(path):
        if isinstance(layer, keras.layers.BatchNormalization):
            trainable += [layer.gamma, layer.beta]
            moving += [layer.moving_mean, layer.moving_variance]
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            trainable.append(layer.kernel)
    return trainable, moving


def _computing_layers(path):
    return [layer for layer in path.layers if not isinstance(layer, keras.layers.InputLayer)]


def structure_key(path):
    """What computing a path depends on besides its weights: the layers' kinds and settings, not
    the shapes of their weights (kernel size, widths). Candidates with the same key are one
    computation on different weights."""
    key = []
    for layer in _computing_layers(path):
        if isinstance(layer, keras.layers.DepthwiseConv2D):  # before Conv2D: not a subclass, but clearer
            _require_plain(layer)
            key.append(("dw", tuple(layer.strides), layer.padding, tuple(layer.dilation_rate),
                        layer.depth_multiplier))
        elif isinstance(layer, keras.layers.Conv2D):
            _require_plain(layer)
            key.append(("conv", tuple(layer.strides), layer.padding, tuple(layer.dilation_rate)))
        elif isinstance(layer, keras.layers.BatchNormalization):
            if layer.renorm or not (layer.center and layer.scale):
                raise ValueError(f"{layer.name}: only plain batch norm (center, scale, no renorm)")
            key.append(("bn", layer.axis, layer.epsilon, layer.momentum))
        elif isinstance(layer, keras.layers.ReLU):
            key.append(("relu", layer.max_value, layer.negative_slope, layer.threshold))
        else:
            raise ValueError(f"{path.name}: layer {layer.name} ({type(layer).__name__}) is not one "
                             "the block builder makes")
    return tuple(key)


def _require_plain(layer):
    if layer.use_bias or layer.activation is not keras.activations.linear or \
            layer.data_format != "channels_last":
        raise ValueError(f"{layer.name}: path convolutions must be bias-free, linear, "
                         "channels_last (as blocks.mbconv makes them)")


def run_layers(template, x, trainable, moving, training):
    """The template path's layers applied to `x` with the given weights. Returns the output and,
    when training, the updated moving statistics (batch norm: moving * momentum + batch *
    (1 - momentum), as Keras' BatchNormalization computes them)."""
    trainable, moving, updated = iter(trainable), iter(moving), []
    for layer in _computing_layers(template):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            x = ops.depthwise_conv(x, next(trainable), strides=layer.strides,
                                   padding=layer.padding, dilation_rate=layer.dilation_rate,
                                   data_format=layer.data_format)
        elif isinstance(layer, keras.layers.Conv2D):
            # What Keras' conv op computes for a plain channels_last convolution, called
            # directly: with the kernel's input width left open, Keras would take it for a
            # grouped convolution and compile it with XLA.
            x = tf.nn.convolution(x, next(trainable), strides=layer.strides,
                                  padding=layer.padding.upper(), dilations=layer.dilation_rate)
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta = next(trainable), next(trainable)
            moving_mean, moving_variance = next(moving), next(moving)
            if training:
                x, mean, variance = _fused_batch_norm(x, gamma, beta, layer.epsilon)
                momentum = layer.momentum
                updated += [moving_mean * momentum + mean * (1.0 - momentum),
                            moving_variance * momentum + variance * (1.0 - momentum)]
            else:
                x = ops.batch_normalization(x, moving_mean, moving_variance, axis=layer.axis,
                                            offset=beta, scale=gamma, epsilon=layer.epsilon)
        else:  # weightless (ReLU): the layer itself
            x = layer(x)
    return x, updated


def _fused_batch_norm(x, gamma, beta, epsilon):
    """Training-mode batch norm over the batch and spatial axes (channels last) in one kernel:
    (output, batch mean, batch variance). The kernel reports the variance with Bessel's
    correction for running averages; Keras' layer averages the plain (biased) variance, so
    it is scaled back: the same moving statistics as the layer's."""
    y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon,
                                                        is_training=True)[:3]
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype)
    return y, mean, unbiased * ((count - 1.0) / count)


def sliver_sizes(template):
    """How `zero` reads a sliver of a candidate: per variable of `template`'s structure (in
    `path_state` order), the slice sizes (-1: the whole axis) that keep the path's input and
    output channels and cut every hidden width and kernel to 1, and the positions of the last
    batch norm's gamma and beta, which `zero` sets to 0 so that the path outputs exactly 0.
    Computing such a sliver costs next to nothing, and `zero` then needs no branch of its own
    (a branch in the graph is what made the gradient of a switch expensive). None when the
    first layer is depthwise (the hidden width is the input's)."""
    layers = _computing_layers(template)
    convs = [l for l in layers if isinstance(l, (keras.layers.Conv2D,
                                                 keras.layers.DepthwiseConv2D))]
    if not convs or isinstance(convs[0], keras.layers.DepthwiseConv2D):
        return None
    trainable, moving, after_last, zeroed = [], [], False, []
    for layer in layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            trainable.append([1, 1, 1, -1])
        elif isinstance(layer, keras.layers.Conv2D):
            first, last = layer is convs[0], layer is convs[-1]
            trainable.append([1, 1, -1 if first else 1, -1 if last else 1])
            after_last = last
        elif isinstance(layer, keras.layers.BatchNormalization):
            size = [-1] if after_last else [1]
            zeroed = [len(trainable), len(trainable) + 1]  # the last one's gamma, beta
            trainable += [size, size]
            moving += [size, size]
    if not isinstance(layers[-1], keras.layers.BatchNormalization):
        return None  # no output scale to zero
    return trainable + moving, zeroed


# --- a block's candidates as one layout of variables ------------------------------------------
class PathLayout:
    """The variables of a mixed op's candidates, laid out for `Case` ops.

    Candidates with the same structure form a class (usually all the MBConv ops of a block form
    one; `zero` has none). Picking candidate k gives a *selection*: for every class a slot of
    weight tensors, filled from candidate k in k's class and with 1-element dummies elsewhere,
    so every branch of the `Case` returns the same structure."""

    def __init__(self, candidates, paths):
        self.candidates = tuple(candidates)
        self.paths = list(paths)
        self.states = [path_state(p) if p is not None else ([], []) for p in self.paths]
        self.templates, self.class_of = [], []
        keys = []
        for path in self.paths:
            if path is None:
                self.class_of.append(None)
                continue
            key = structure_key(path)
            if key not in keys:
                keys.append(key)
                self.templates.append(path)
            self.class_of.append(keys.index(key))
        self.ranks = [[len(v.shape) for v in path_state(t)[0]] for t in self.templates]
        self.moving_counts = [len(path_state(t)[1]) for t in self.templates]
        # the candidate that skips the block (`zero`, or `identity` where the block keeps its
        # shortcut): it has no path; at most one per block (search_space forbids both)
        self.zero = next((k for k, path in enumerate(self.paths) if path is None), None)

    # -- static layout, the cache key of the branch functions --------------------------------
    @property
    def layout(self):
        return (tuple(self.class_of), tuple(tuple(r) for r in self.ranks),
                tuple(self.moving_counts))

    def _slot_specs(self):
        specs = []
        for ranks, count in zip(self.ranks, self.moving_counts):
            specs += [tf.TensorSpec([None] * r, tf.float32) for r in ranks]
            specs += [tf.TensorSpec([None], tf.float32)] * count
        return specs

    def _split_slots(self, flat):
        """Flat tensors (class by class: trainable, then moving) -> [(trainable, moving)]."""
        slots, i = [], 0
        for ranks, count in zip(self.ranks, self.moving_counts):
            slots.append((list(flat[i:i + len(ranks)]),
                          list(flat[i + len(ranks):i + len(ranks) + count])))
            i += len(ranks) + count
        return slots

    def _trainable_handles(self):
        return [v.handle for trainable, _ in self.states for v in trainable]

    def _moving_handles(self):
        return [v.handle for _, moving in self.states for v in moving]

    def _offsets(self, part):
        offsets, at = [], 0
        for state in self.states:
            offsets.append(at)
            at += len(state[part])
        return offsets, at

    # -- the three Case ops ------------------------------------------------------------------
    def read(self, index):
        """The weights of candidate `index` (a tensor): per class, (trainable, moving)."""
        handles = self._trainable_handles() + self._moving_handles()
        tr_offsets, n_trainable = self._offsets(0)
        mv_offsets, n_moving = self._offsets(1)
        n_handles = n_trainable + n_moving
        sliver_of = self._sliver_source()
        sliver = sliver_sizes(self.templates[0])
        branches = []
        for k, cls in enumerate(self.class_of):
            def read_branch(*hs, k=k, cls=cls):
                def values(j, sliver=None):
                    ranks, count = self.ranks[self.class_of[j]], \
                        self.moving_counts[self.class_of[j]]
                    tr = hs[tr_offsets[j]:tr_offsets[j] + len(ranks)]
                    mv = hs[n_trainable + mv_offsets[j]:n_trainable + mv_offsets[j] + count]
                    out = [tf.raw_ops.ReadVariableOp(resource=h, dtype=tf.float32)
                           for h in list(tr) + list(mv)]
                    if sliver is not None:
                        sizes, zeroed = sliver
                        out = [tf.slice(t, [0] * len(size), size) for t, size in zip(out, sizes)]
                        for i in zeroed:
                            out[i] = tf.zeros_like(out[i])
                    return out
                out = []
                for c, (ranks, count) in enumerate(zip(self.ranks, self.moving_counts)):
                    if c == cls:
                        out += values(k)
                    elif cls is None and c == 0 and sliver is not None:
                        out += values(sliver_of, sliver)  # zero: a sliver that outputs 0
                    else:
                        out += [tf.zeros([1] * r) for r in ranks] + [tf.zeros([1])] * count
                return out
            branches.append(_branch(("read", self.layout, k), read_branch,
                                    [_RESOURCE] * n_handles))
        specs = self._slot_specs()
        flat = _case(index, handles, branches, [tf.float32] * len(specs),
                     [spec.shape for spec in specs])
        return self._split_slots(flat)

    def assign_moving(self, index, selection_updates):
        """Writes candidate `index`'s updated moving statistics (per class slot)."""
        handles = self._moving_handles()
        mv_offsets, n_moving = self._offsets(1)
        stats = [t for updated in selection_updates for t in updated]
        stat_specs = [tf.TensorSpec([None], tf.float32)] * sum(self.moving_counts)
        class_starts = [sum(self.moving_counts[:c]) for c in range(len(self.templates))]
        branches = []
        for k, cls in enumerate(self.class_of):
            def assign_branch(*args, k=k, cls=cls):
                hs, values = args[:n_moving], args[n_moving:]
                if cls is not None:
                    count = self.moving_counts[cls]
                    for h, value in zip(hs[mv_offsets[k]:mv_offsets[k] + count],
                                        values[class_starts[cls]:class_starts[cls] + count]):
                        tf.raw_ops.AssignVariableOp(resource=h, value=value)
                return []
            branches.append(_branch(("assign", self.layout, k), assign_branch,
                                    [_RESOURCE] * n_moving + stat_specs))
        return _case(index, handles + stats, branches, [])

    def apply_update(self, index, grads, optimizer, learning_rate):
        """One optimiser step on candidate `index`'s trainable variables, with `grads` per class
        slot (the gradients of the selection). The other candidates are not touched at all."""
        variables = [v for trainable, _ in self.states for v in trainable]
        handles = [v.handle for v in variables] + \
            [optimizer.momentum_slot(v).handle for v in variables]
        n = len(variables)
        offsets, _ = self._offsets(0)
        grad_specs = [tf.TensorSpec([None] * r, tf.float32) for ranks in self.ranks for r in ranks]
        class_starts = [sum(len(r) for r in self.ranks[:c]) for c in range(len(self.templates))]
        update = optimizer.fused_update
        branches = []
        for k, cls in enumerate(self.class_of):
            def apply_branch(*args, k=k, cls=cls):
                var_handles, slot_handles = args[:n], args[n:2 * n]
                gs, lr = args[2 * n:-1], args[-1]
                if cls is not None:
                    for i, rank in enumerate(self.ranks[cls]):
                        update(var_handles[offsets[k] + i], slot_handles[offsets[k] + i],
                               gs[class_starts[cls] + i], lr, decayed=rank > 1)
                return []
            key = ("apply", self.layout, k, optimizer.update_settings())
            branches.append(_branch(key, apply_branch, [_RESOURCE] * (2 * n) + grad_specs +
                                    [tf.TensorSpec([], tf.float32)]))
        flat_grads = [g for trainable_grads in grads for g in trainable_grads]
        return _case(index, handles + flat_grads + [tf.cast(learning_rate, tf.float32)],
                     branches, [])

    def trainable_variables(self):
        return [v for trainable, _ in self.states for v in trainable]

    def dense_gradients(self, index, grads):
        """The selection's gradients as one gradient per trainable variable of every candidate:
        candidate `index`'s own, zeros for the others (for replicas that sampled different
        candidates, whose gradients must be summed variable by variable)."""
        variables = self.trainable_variables()
        n = len(variables)
        offsets, _ = self._offsets(0)
        grad_specs = [tf.TensorSpec([None] * r, tf.float32) for ranks in self.ranks for r in ranks]
        class_starts = [sum(len(r) for r in self.ranks[:c]) for c in range(len(self.templates))]
        branches = []
        for k, cls in enumerate(self.class_of):
            def scatter_branch(*args, k=k, cls=cls):
                hs, gs = args[:n], args[n:]
                out = [tf.zeros_like(tf.raw_ops.ReadVariableOp(resource=h, dtype=tf.float32))
                       for h in hs]
                if cls is not None:
                    for i in range(len(self.ranks[cls])):
                        out[offsets[k] + i] = gs[class_starts[cls] + i]
                return out
            branches.append(_branch(("scatter", self.layout, k), scatter_branch,
                                    [_RESOURCE] * n + grad_specs))
        flat_grads = [g for trainable_grads in grads for g in trainable_grads]
        dense = _case(index, [v.handle for v in variables] + flat_grads, branches,
                      [tf.float32] * n, [v.shape for v in variables])
        return [tf.ensure_shape(g, v.shape) for g, v in zip(dense, variables)]

    # -- the forward computation -------------------------------------------------------------
    def _sliver_source(self):
        return self.class_of.index(0)

    def compute(self, index, x, selection, training):
        """The output of candidate `index` on `x` from its selection, and the updated moving
        statistics per class slot (empty lists when not training)."""
        if len(self.templates) == 1 and (self.zero is None or
                                         sliver_sizes(self.templates[0]) is not None):
            # Every MBConv op of the block, and zero as a sliver that outputs exactly 0 (see
            # `sliver_sizes`): one call, no branches.
            trainable, moving = selection[0]
            y, updated = run_layers(self.templates[0], x, trainable, moving, training)
            return y, [list(updated)]

        def run_class(c):
            trainable, moving = selection[c]
            y, updated = run_layers(self.templates[c], x, trainable, moving, training)
            return [y] + list(updated)

        def zero_branch():
            updated = [t for c in range(len(self.templates)) for t in selection[c][1]] \
                if training else []
            return [tf.zeros_like(x)] + updated

        branches = []
        for c in range(len(self.templates)):
            def branch(c=c):
                out = run_class(c)
                if not training:
                    return out
                # every branch returns every class's statistics (unchanged for the others)
                updated = []
                for d in range(len(self.templates)):
                    updated += out[1:] if d == c else list(selection[d][1])
                return [out[0]] + updated
            branches.append(branch)
        if self.zero is not None:
            branches.append(zero_branch)
        if len(branches) == 1:
            out = branches[0]()
        else:
            which = tf.gather(self._branch_of_candidate(), index)
            out = tf.switch_case(which, branches)
        y, flat = out[0], out[1:]
        updates, i = [], 0
        for count in self.moving_counts:
            updates.append(list(flat[i:i + count]) if training else [])
            i += count if training else 0
        return y, updates

    def _branch_of_candidate(self):
        zero_branch = len(self.templates)
        return tf.constant([zero_branch if c is None else c for c in self.class_of], tf.int32)


# --- Case ops over cached branch functions ---------------------------------------------------
_BRANCHES = {}


def _branch(key, fn, signature):
    """A concrete function for a Case branch, traced once per layout and reused by every block
    and step (blocks with the same candidates share them)."""
    if key not in _BRANCHES:
        _BRANCHES[key] = tf.function(fn, input_signature=signature,
                                     autograph=False).get_concrete_function()
    return _BRANCHES[key]


def _case(index, inputs, branches, tout, shapes=()):
    """`tf.raw_ops.Case` over pre-traced branches that take every input explicitly. (A
    `tf.switch_case` would capture each branch's variables and add placeholders for all the
    others' to every branch: quadratic in the number of candidates.) The branches run as
    functions; only the chosen one runs."""
    for fn in branches:
        fn.add_to_graph()
    return tf.raw_ops.Case(branch_index=tf.cast(index, tf.int32), input=inputs, Tout=tout,
                           branches=[fn.name for fn in branches], output_shapes=list(shapes))
