"""The search's weight optimiser: PyTorch's SGD, and unsampled paths left exactly alone."""

import numpy as np
import pytest
import tensorflow as tf

from proxyless_tf.optimizers import SampledPathSGD

LR, MOMENTUM, L2 = 0.1, 0.9, 0.01


def torch_sgd(w, buf, grad, nesterov, decay):
    """torch.optim.SGD(lr, momentum, weight_decay=decay, nesterov) on one parameter, in numpy."""
    grad = grad + decay * w
    buf = MOMENTUM * buf + grad
    step = grad + MOMENTUM * buf if nesterov else buf
    return w - LR * step, buf


def make(nesterov):
    kernel = tf.Variable(np.random.RandomState(0).normal(size=(3, 4)).astype("float32"))
    bias = tf.Variable(np.ones(4, "float32"))
    opt = SampledPathSGD(l2=L2, learning_rate=LR, momentum=MOMENTUM, nesterov=nesterov)
    opt.build([kernel, bias])
    return kernel, bias, opt


@pytest.mark.parametrize("nesterov", [False, True])
def test_an_active_variable_follows_pytorch_sgd_with_coupled_l2_on_kernels_only(nesterov):
    kernel, bias, opt = make(nesterov)
    w, b = kernel.numpy(), bias.numpy()
    w_buf, b_buf = np.zeros_like(w), np.zeros_like(b)
    grads = np.random.RandomState(1)
    for _ in range(3):
        gk, gb = grads.normal(size=(3, 4)).astype("float32"), grads.normal(size=4).astype("float32")
        opt.apply_to_active([tf.constant(gk), tf.constant(gb)], [kernel, bias],
                            tf.constant([True, True]))
        w, w_buf = torch_sgd(w, w_buf, gk, nesterov, decay=L2)
        b, b_buf = torch_sgd(b, b_buf, gb, nesterov, decay=0.0)  # no decay on biases
    np.testing.assert_allclose(kernel.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_an_unsampled_variable_keeps_its_weights_and_momentum_exactly(nesterov):
    kernel, bias, opt = make(nesterov)
    ones = [tf.ones((3, 4)), tf.ones(4)]
    opt.apply_to_active(ones, [kernel, bias], tf.constant([True, True]))  # momentum builds up
    kernel_before, slots_before = kernel.numpy(), [v.numpy() for v in opt.variables]
    # The kernel's path is not sampled: its gradient is exactly zero, as from the supernet.
    opt.apply_to_active([tf.zeros((3, 4)), tf.ones(4)], [kernel, bias],
                        tf.constant([False, True]))
    np.testing.assert_array_equal(kernel.numpy(), kernel_before)
    kernel_slot = [i for i, v in enumerate(opt.variables) if tuple(v.shape) == (3, 4)]
    assert kernel_slot and all(np.array_equal(opt.variables[i].numpy(), slots_before[i])
                               for i in kernel_slot)
    assert not np.array_equal(bias.numpy(), 1.0)  # the sampled one moved
