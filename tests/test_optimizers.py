"""The search's weight optimiser: PyTorch's SGD, and unsampled paths left exactly alone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from proxyless_tf.optimizers import SampledPathSGD, weight_schedule

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


# --- the weights' learning rate over the search ----------------------------------------------
def test_without_a_search_rate_the_weights_follow_one_cosine_over_every_epoch():
    schedule = weight_schedule(0.05, total_steps=100, warmup_steps=60)
    expected = keras.optimizers.schedules.CosineDecay(0.05, 100)
    for step in (0, 30, 60, 61, 99):
        assert float(schedule(step)) == pytest.approx(float(expected(step)), rel=1e-5)


def test_a_search_rate_restarts_the_cosine_where_the_search_begins():
    """The warm-up's steps follow the cosine of a warm-up run alone (so a search resumed from
    a finished warm-up goes on from where it stopped); the search's restart at the search rate
    and decay to 0 by the last step."""
    schedule = weight_schedule(0.05, total_steps=100, warmup_steps=60, search_lr=0.02)
    warm_up_alone = keras.optimizers.schedules.CosineDecay(0.05, 60)
    for step in (0, 15, 59):
        assert float(schedule(step)) == pytest.approx(float(warm_up_alone(step)), rel=1e-5)
    assert float(schedule(60)) == pytest.approx(0.02)
    assert float(schedule(80)) == pytest.approx(0.01, rel=1e-5)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
    assert 0 < float(schedule(99)) < float(schedule(90)) < float(schedule(61)) < 0.02
    assert float(schedule(150)) == pytest.approx(0.0, abs=1e-9)  # a run extended past the plan


def test_rates_given_as_integers_or_numpy_numbers_give_the_same_schedule():
    for first, then in ((np.float64(0.05), 0.02), (1, 1)):
        schedule = weight_schedule(first, total_steps=100, warmup_steps=60, search_lr=then)
        assert float(schedule(30)) == pytest.approx(float(first) / 2, rel=1e-5)
        assert float(schedule(80)) == pytest.approx(float(then) / 2, rel=1e-5)


def test_a_run_of_warm_up_epochs_alone_follows_the_warm_up_cosine_whatever_the_search_rate():
    """What a finished warm-up saved is what a search resumed from it continues."""
    schedule = weight_schedule(0.05, total_steps=60, warmup_steps=60, search_lr=0.02)
    warm_up_alone = keras.optimizers.schedules.CosineDecay(0.05, 60)
    for step in (0, 30, 59, 60):
        assert float(schedule(step)) == pytest.approx(float(warm_up_alone(step)), rel=1e-5)
