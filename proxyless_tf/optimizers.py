"""The weight optimiser of the search: SGD that leaves unsampled paths alone.

With binary gates an unsampled path gets no gradient; in the official PyTorch code its
parameters are then skipped by the optimiser (grad is None), so neither momentum nor weight
decay moves them. Keras' SGD would still apply stale momentum and decay to every variable, so
this subclass masks each variable's update (and its momentum update) with the step's `active`
flag. It is plain arithmetic, not `tf.cond`: a thousand conds would cost minutes of tracing.
Weight decay is coupled L2 (as in PyTorch SGD), applied to conv and dense kernels.
"""

import keras
import tensorflow as tf


class SampledPathSGD(keras.optimizers.SGD):

    def __init__(self, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.l2 = l2
        self._active = None
        self._decayed = None

    def build(self, variables):
        super().build(variables)
        self._decayed = [len(v.shape) > 1 for v in variables]  # kernels, not BN or biases

    def apply_to_active(self, grads, variables, active):
        """`active`: bool tensor, one entry per variable, made in the same trace."""
        self._active = active
        try:
            self.apply(grads, variables)
        finally:
            self._active = None

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr = tf.cast(learning_rate, variable.dtype)
        gradient = tf.cast(gradient, variable.dtype)
        if self.l2 and self._decayed[index]:
            gradient = gradient + tf.cast(self.l2, variable.dtype) * variable
        on = 1.0 if self._active is None else tf.cast(self._active[index], variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, on * lr * gradient)
            return
        m = self.momentums[index]
        momentum = tf.cast(self.momentum, variable.dtype)
        new_m = m * momentum - gradient * lr
        self.assign(m, on * new_m + (1.0 - on) * m)
        step = new_m * momentum - gradient * lr if self.nesterov else new_m
        self.assign_add(variable, on * step)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config
