"""The mixed op: one searchable block's candidate paths and its architecture parameters alpha.

Path probabilities are p = softmax(alpha). Modes of `MixedOp.call`:

* ``binary``  (weight step) one sampled path is computed, forward and backward. The sampled index
  is a tensor: the path's weights are picked as data and one traced function per path structure
  computes them (`proxyless_tf.paths`), so a compiled step neither retraces when the sample
  changes nor runs, differentiates or updates any other path.
* ``two``     (architecture step) two sampled paths are computed and mixed by binary gates g
  (one-hot over the pair); the tape gives dL/dg, which `binary_gate_alpha_grad` turns into
  dL/dalpha (the paper's Eq. 4), and `rescale_pair` keeps the unsampled probabilities fixed.
* ``full``    (DARTS-style memory baseline) sum_j p_j * path_j(x) over every path.

A derived network is the ``fixed`` case: the same paths with the choice made once
(`proxyless_tf.blocks.build_network`). `path_output` runs a candidate's own Keras model, the
reference the modes above are tested against.
"""

import keras
import tensorflow as tf

from proxyless_tf import blocks, paths as paths_lib
from proxyless_tf.ops import parse_op

MODES = ("binary", "two", "full")


class MixedOp(keras.layers.Layer):
    """Candidate paths of one block plus its alpha (a non-trainable weight: only the
    architecture step changes it, never the weight optimizer)."""

    def __init__(self, candidates, block_index, input_size, in_channels, out_channels, stride,
                 alpha_init_std=1e-3, activation="relu6", **kwargs):
        kwargs.setdefault("name", f"block{block_index}_mixed")
        super().__init__(**kwargs)
        self.candidates = tuple(candidates)
        self.block_index = block_index
        self.input_size = input_size
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.alpha_init_std = alpha_init_std
        self.activation = activation
        for name in self.candidates:
            op = parse_op(name)
            if not op.allowed_at(stride, in_channels, out_channels):
                raise ValueError(f"block {block_index}: {name!r} stands {op.where}")
        # Paths are built eagerly so every variable exists before any step is traced.
        self.paths = [blocks.build_path(keras, op, block_index, input_size, in_channels,
                                        out_channels, stride, activation)
                      for op in self.candidates]
        for k, path in enumerate(self.paths):  # checkpoint dependencies (see Supernet)
            if path is not None:
                self._track_trackable(path, name=f"path_{k}")
        self.alpha = self.add_weight(
            shape=(len(self.candidates),), name="alpha", trainable=False,
            initializer=keras.initializers.RandomNormal(stddev=alpha_init_std))
        self.layout = paths_lib.PathLayout(self.candidates, self.paths)
        self.built = True  # every weight exists: no symbolic build pass on the first call

    @property
    def probs(self):
        return tf.nn.softmax(self.alpha)

    def path_output(self, index, x, training):
        """Candidate `index` (a Python int) run by its own Keras model."""
        path = self.paths[index]
        if path is None:  # a skip: the block contributes nothing, its shortcut carries x
            return tf.zeros_like(x)
        return path(x, training=training)

    def select(self, index):
        """The weights of the candidate `index` (a tensor) as tensors: the binary weight step
        differentiates with respect to them (see `sampled`)."""
        return self.layout.read(index)

    def sampled(self, index, x, training, selection=None):
        """Candidate `index` (a tensor) on `x`, from `selection` (default: read now). In
        training, its batch-norm moving statistics are updated as its Keras layers would."""
        if selection is None:
            selection = self.layout.read(index)
        y, updates = self.layout.compute(index, x, selection, training)
        if training:
            self.layout.assign_moving(index, updates)
        return y

    def call(self, x, mode="binary", pair=None, gates=None, training=None, selection=None):
        training = bool(training)
        if mode == "binary":  # the weight step passes its selection; evaluations do not
            return self.sampled(pair[0], x, training, selection)
        if mode == "two":
            return self._gated_pair(x, pair, gates, training)
        if mode == "full":
            probs = self.probs
            return tf.add_n([probs[k] * self._direct(k, x, training)
                             for k in range(len(self.paths))])
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")

    def _gated_pair(self, x, pair, gates, training):
        """g_0 path_0(x) + g_1 path_1(x) with one-hot binary gates. The path whose gate is off
        takes its input through stop_gradient: its gradient with respect to x would be
        multiplied by 0, so the tape need not backpropagate through it at all, while dL/dg
        of both gates (the inner products with each path's output) is what it would be."""
        first_on = gates[0] > 0.5
        on, off = tf.where(first_on, pair[0], pair[1]), tf.where(first_on, pair[1], pair[0])
        g_on, g_off = tf.where(first_on, gates[0], gates[1]), tf.where(first_on, gates[1], gates[0])
        return g_on * self.sampled(on, x, training) + \
            g_off * self.sampled(off, tf.stop_gradient(x), training)

    def _direct(self, k, x, training):
        """Candidate k (a Python int) from its variables read directly, so that a tape sees
        every variable (the full mode's gradient reaches every path)."""
        if self.paths[k] is None:
            return tf.zeros_like(x)
        trainable, moving = self.layout.states[k]
        template = self.layout.templates[self.layout.class_of[k]]
        y, updated = paths_lib.run_layers(template, x, [tf.convert_to_tensor(v) for v in trainable],
                                          [tf.convert_to_tensor(v) for v in moving], training)
        for variable, value in zip(moving, updated):
            variable.assign(value)
        return y

    def get_config(self):
        config = super().get_config()
        config.update(candidates=list(self.candidates), block_index=self.block_index,
                      input_size=self.input_size, in_channels=self.in_channels,
                      out_channels=self.out_channels, stride=self.stride,
                      alpha_init_std=self.alpha_init_std, activation=self.activation)
        return config


def sample_pair(alpha, generator):
    """Two distinct paths drawn without replacement from softmax(alpha) (Gumbel top-2).
    The first is a plain sample from softmax(alpha): the weight step uses it alone."""
    gumbel = -tf.math.log(-tf.math.log(generator.uniform(tf.shape(alpha), 1e-20, 1.0)))
    if alpha.shape[0] == 1:
        return tf.zeros([2], tf.int32)
    return tf.math.top_k(alpha + gumbel, k=2).indices


def pair_gates(alpha, pair, generator):
    """Binary gates over a sampled pair: one-hot, the first on with probability
    p_first / (p_first + p_second) (the renormalised probabilities)."""
    pair_probs = tf.nn.softmax(tf.gather(alpha, pair))
    first_on = generator.uniform([]) < pair_probs[0]
    return tf.where(first_on, tf.constant([1.0, 0.0]), tf.constant([0.0, 1.0]))


def binary_gate_alpha_grad(gate_grads, alpha, pair):
    """dL/dalpha_i = sum_j dL/dg_j * p_j * (delta_ij - p_i), over the sampled pair with their
    renormalised probabilities, scattered into a gradient for the whole alpha vector."""
    p = tf.nn.softmax(tf.gather(alpha, pair))
    pair_grad = p * gate_grads - p * tf.reduce_sum(gate_grads * p)
    return tf.scatter_nd(tf.reshape(pair, [-1, 1]), pair_grad, tf.shape(alpha))


def rescale_pair(alpha, pair, alpha_before):
    """After the optimiser step, shift the pair's alphas by one offset so that
    sum(exp(alpha[pair])) is what it was: the unsampled paths keep their probabilities."""
    old = tf.gather(alpha_before, pair)
    new = tf.gather(alpha, pair)
    offset = tf.reduce_logsumexp(new) - tf.reduce_logsumexp(old)
    alpha.assign(tf.tensor_scatter_nd_sub(alpha, tf.reshape(pair, [-1, 1]),
                                          tf.fill([2], offset)))


def rescale_touched(alpha, touched, alpha_before):
    """`rescale_pair` for any set of paths: `touched` is a 0/1 float vector over alpha (the union
    of the pairs that several replicas sampled). The touched alphas shift by one offset so that
    the sum of their exp is what it was; the untouched paths keep their probabilities."""
    on = touched > 0.5
    neg_inf = tf.fill(tf.shape(alpha), -float("inf"))
    offset = tf.reduce_logsumexp(tf.where(on, tf.convert_to_tensor(alpha), neg_inf)) - \
        tf.reduce_logsumexp(tf.where(on, alpha_before, neg_inf))
    offset = tf.where(tf.reduce_any(on), offset, 0.0)
    alpha.assign(alpha - offset * tf.cast(on, alpha.dtype))
