"""The weight optimiser of the search: SGD that leaves unsampled paths alone.

With binary gates an unsampled path gets no gradient; in the official PyTorch code its
parameters are then skipped by the optimiser (grad is None), so neither momentum nor weight
decay moves them. Keras' SGD would still apply stale momentum and decay to every variable, so
this subclass masks each variable's update with the step's `active` flag.

The update is PyTorch's SGD (buf = momentum * buf + grad; w -= lr * buf, or with Nesterov
w -= lr * (grad + momentum * buf)), run by TensorFlow's fused kernel `ResourceApplyMomentum`:
one pass over the variable, its slot and its gradient. The mask enters as scalars, not as
arithmetic on whole tensors: an inactive variable gets lr 0 and momentum 1, and its gradient is
exactly zero (the path did not run), so buf and w stay as they are. The supernet holds about
seven times the sampled network's weights; masking them with element-wise arithmetic cost a
search step about 12% on the full 32x32 space (benchmarks/search_cost.py). Not `tf.cond`
either: a thousand conds would cost minutes of tracing.
Weight decay is coupled L2 (as in PyTorch SGD), applied to conv and dense kernels, and only to
active variables.

The search's binary weight step does not go through `apply` for the candidate paths: it picks
the sampled candidate's weights as tensors and updates that candidate's variables alone, inside
a `Case` over the block's candidates (`proxyless_tf.paths.PathLayout.apply_update`), with
`fused_update` (the same update, taking variable handles). `apply` updates the weights every
path shares, and `apply_to_active` (below) serves the modes that have gradients for every
variable (per-replica sampling under several replicas).

Under tf.distribute (`apply_to_active` called inside `strategy.run`), Keras sums the replicas'
gradients and then updates every replica's copy of each variable; the mask must then be the same
on every replica, or the copies of a mirrored variable drift apart. When the replicas sampled
different paths (`replicas_agree=False`), the masks are all-reduced into their union: a variable
moves when any replica used it. Each copy's update reads the mask made on that copy's device.

`weight_schedule` is the weights' learning rate over the search's epochs: one cosine, or (with
a search rate) the warm-up's cosine and then the search phase's own, as the official code runs
its warm-up and its search.
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

    def apply_to_active(self, grads, variables, active, replicas_agree=False):
        """`active`: bool tensor, one entry per variable, made in the same trace (None: all).
        `replicas_agree`: every replica passes the same mask (a shared path sample), so the
        all-reduce into their union can be skipped."""
        if active is not None:
            ctx = tf.distribute.get_replica_context()
            if ctx is not None and ctx.num_replicas_in_sync > 1 and not replicas_agree:
                active = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                        tf.cast(active, tf.float32)) > 0.5
            # MirroredStrategy traces the replicas one after another in threads and then runs
            # the updates of all of them at once (a merge call): keep one mask per device.
            if self._active is None:
                self._active = {}
            self._active[_device_key(active.device)] = active
        try:
            self.apply(grads, variables)
        finally:
            self._active = None

    # --- the update of one sampled candidate's variable, on handles (for Case branches) -------
    def update_settings(self):
        """What `fused_update` depends on besides its inputs (a cache key for traced branches)."""
        return (float(self.l2), float(self.momentum), bool(self.nesterov))

    def momentum_slot(self, variable):
        """The momentum buffer of `variable` (the variable itself when momentum is 0: unused)."""
        if self.momentum == 0:
            return variable
        return self.momentums[self._get_variable_index(variable)]

    def fused_update(self, var_handle, slot_handle, gradient, learning_rate, decayed):
        """PyTorch's SGD step on one variable given by handle: coupled L2 when `decayed`
        (kernels), then momentum (Nesterov or not) through the fused kernel."""
        if self.l2 and decayed:
            value = tf.raw_ops.ReadVariableOp(resource=var_handle, dtype=tf.float32)
            gradient = gradient + self.l2 * value
        if self.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(var=var_handle, alpha=learning_rate,
                                                    delta=gradient)
            return
        tf.raw_ops.ResourceApplyMomentum(
            var=var_handle, accum=slot_handle, lr=learning_rate, grad=gradient,
            momentum=tf.constant(self.momentum, tf.float32), use_locking=False,
            use_nesterov=self.nesterov)

    def _mask(self, variable):
        if len(self._active) == 1:
            return next(iter(self._active.values()))
        key = _device_key(variable.device)
        return self._active.get(key, next(iter(self._active.values())))

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        on = tf.constant(1.0, dtype) if not self._active else \
            tf.cast(self._mask(variable)[index], dtype)
        gradient = tf.cast(gradient, dtype)
        if self.l2 and self._decayed[index]:
            gradient = gradient + (on * tf.cast(self.l2, dtype)) * variable
        if self.momentum == 0:
            self.assign_sub(variable, (on * lr) * gradient)
            return
        buf = self.momentums[index]
        buf = getattr(buf, "value", buf)  # the tf.Variable (in an update: this device's copy)
        momentum = tf.cast(self.momentum, dtype)
        tf.raw_ops.ResourceApplyMomentum(
            var=variable.handle, accum=buf.handle, lr=on * lr, grad=gradient,
            momentum=on * momentum + (1.0 - on), use_locking=False, use_nesterov=self.nesterov)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config


def _device_key(device):
    if not device:
        return ""
    return tf.DeviceSpec.from_string(device).to_string()


def weight_schedule(initial_lr, total_steps, warmup_steps=0, search_lr=0.0):
    """The weights' learning rate by step: cosine decay from `initial_lr` over `total_steps`;
    with `search_lr` > 0, cosine decay from `initial_lr` over the `warmup_steps` and then from
    `search_lr` over the rest."""
    if search_lr <= 0 or warmup_steps >= total_steps:
        return keras.optimizers.schedules.CosineDecay(initial_lr, total_steps)
    return RestartedCosine(initial_lr, warmup_steps, search_lr, total_steps)


class RestartedCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Keras's cosine decay from `first_lr` to 0 over the first `first_steps` steps, then a
    second one from `then_lr` to 0 over the steps up to `total_steps`."""

    def __init__(self, first_lr, first_steps, then_lr, total_steps):
        self.first_lr, self.first_steps = first_lr, first_steps
        self.then_lr, self.total_steps = then_lr, total_steps
        self.first = keras.optimizers.schedules.CosineDecay(float(first_lr), max(first_steps, 1))
        self.then = keras.optimizers.schedules.CosineDecay(
            float(then_lr), max(total_steps - first_steps, 1))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        first_steps = float(self.first_steps)
        return tf.where(step < first_steps, self.first(step), self.then(step - first_steps))

    def get_config(self):
        return {"first_lr": self.first_lr, "first_steps": self.first_steps,
                "then_lr": self.then_lr, "total_steps": self.total_steps}
