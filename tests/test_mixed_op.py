"""The mixed op and binary gates, as the paper defines them."""

import numpy as np
import tensorflow as tf

from conftest import tiny_space
from proxyless_tf import mixed_op
from proxyless_tf.mixed_op import MixedOp
from proxyless_tf.supernet import Supernet


def test_alpha_gradient_is_the_binary_gate_formula_on_a_case_worked_by_hand():
    # alpha = [0, 0, log 3]; pair (0, 2): renormalised p = [1/4, 3/4]; dL/dg = [1, 2].
    # dL/dalpha_0 = 1*(1/4)*(1-1/4) + 2*(3/4)*(0-1/4) = 3/16 - 6/16 = -3/16
    # dL/dalpha_2 = 1*(1/4)*(0-3/4) + 2*(3/4)*(1-3/4) = -3/16 + 6/16 = +3/16;  alpha_1: 0
    alpha = tf.constant([0.0, 0.0, np.log(3.0)])
    grad = mixed_op.binary_gate_alpha_grad(tf.constant([1.0, 2.0]), alpha, tf.constant([0, 2]))
    # float32: +3/16 comes out as 1.5 - 1.3125, where an ulp is 1.2e-7, and the softmax may be a
    # few ulps off on another CPU: up to ~4e-7. A wrong formula is off by 1e-2 or more.
    np.testing.assert_allclose(grad.numpy(), [-3 / 16, 0.0, 3 / 16], rtol=0, atol=1e-6)


def test_gate_gradient_from_the_tape_is_the_inner_product_with_each_path():
    op = MixedOp(("k3e3", "k5e6", "zero"), 1, 8, 8, 8, 1)
    x = tf.random.stateless_normal([2, 8, 8, 8], seed=[1, 2])
    pair, gates = tf.constant([0, 1]), tf.constant([1.0, 0.0])
    upstream = tf.random.stateless_normal([2, 8, 8, 8], seed=[3, 4])
    with tf.GradientTape() as tape:
        tape.watch(gates)
        loss = tf.reduce_sum(upstream * op(x, mode="two", pair=pair, gates=gates))
    dgates = tape.gradient(loss, gates).numpy()
    expected = [float(tf.reduce_sum(upstream * op.path_output(k, x, False))) for k in (0, 1)]
    np.testing.assert_allclose(dgates, expected, rtol=1e-4)


def test_sampled_path_frequencies_follow_softmax_alpha():
    alpha = tf.Variable([1.0, 0.0, -1.0, 0.5])
    rng = tf.random.Generator.from_seed(1234)
    draws = 4000
    sample = tf.function(lambda: mixed_op.sample_pair(alpha, rng))
    first = np.array([sample().numpy() for _ in range(draws)])
    observed = np.bincount(first[:, 0], minlength=4)
    expected = tf.nn.softmax(alpha).numpy() * draws
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 16.27  # chi-square, 3 degrees of freedom, p = 0.001
    assert (first[:, 0] != first[:, 1]).all()  # the pair is drawn without replacement


def test_rescale_leaves_unsampled_probabilities_unchanged():
    alpha = tf.Variable([0.3, -0.2, 0.1, 0.7, -1.0])
    before_alpha = tf.identity(alpha)
    before = tf.nn.softmax(alpha).numpy()
    pair = tf.constant([1, 3])
    alpha.assign(alpha + tf.constant([0.0, 0.25, 0.0, -0.4, 0.0]))  # an optimiser step
    mixed_op.rescale_pair(alpha, pair, before_alpha)
    after = tf.nn.softmax(alpha).numpy()
    np.testing.assert_allclose(after[[0, 2, 4]], before[[0, 2, 4]], atol=1e-6)
    assert after[1] > before[1] and after[3] < before[3]  # the step itself is kept


def test_full_mode_is_the_probability_weighted_sum_of_all_paths():
    op = MixedOp(("k3e3", "k5e6", "zero"), 1, 8, 8, 8, 1)
    op.alpha.assign([0.5, -0.5, 0.0])
    x = tf.random.stateless_normal([1, 8, 8, 8], seed=[5, 6])
    p = tf.nn.softmax(op.alpha).numpy()
    expected = sum(p[k] * op.path_output(k, x, False) for k in range(3))
    np.testing.assert_allclose(op(x, mode="full").numpy(), expected.numpy(), atol=1e-5)


def test_derive_is_the_argmax_of_alpha():
    net = Supernet(tiny_space())
    choices = []
    for i, m in enumerate(net.mixed_ops):
        values = np.zeros(len(m.candidates), np.float32)
        values[(i + 1) % len(m.candidates)] = 2.0
        m.alpha.assign(values)
        choices.append(m.candidates[(i + 1) % len(m.candidates)])
    arch = net.derive()
    assert [b.op for b in arch.blocks if b.searchable] == choices
    probs = [b.probs for b in arch.blocks if b.searchable]
    assert all(max(p, key=p.get) == c for p, c in zip(probs, choices))


def test_the_derived_model_is_the_supernet_with_its_choices_fixed():
    net = Supernet(tiny_space())
    for i, m in enumerate(net.mixed_ops):  # a mix of MBConv choices and a skipped block
        values = np.zeros(len(m.candidates), np.float32)
        values[(i + 2) % len(m.candidates)] = 2.0
        m.alpha.assign(values)
    images = tf.random.stateless_uniform([4, 16, 16, 3], seed=[3, 4])
    net(images, mode="binary", paths=net.argmax_paths(), training=True)  # move the BN statistics
    arch = net.derive()
    assert "zero" in arch.ops
    model = net.derived_model(arch)
    expected = net(images, mode="binary", paths=net.argmax_paths(), training=False)
    np.testing.assert_allclose(model(images, training=False).numpy(), expected.numpy(),
                               atol=1e-5)
