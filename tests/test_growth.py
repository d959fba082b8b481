"""Setting the supernet's candidates from its trained seed network (proxyless_tf/growth.py): a
candidate at least as large as the seed grows from it as its exact function; one smaller in a
dimension is its crop there, after the seed's hidden channels are sorted by importance, which
changes nothing the seed computes."""

import numpy as np
import pytest

from conftest import tiny_space
from proxyless_tf import growth
from proxyless_tf.supernet import Supernet

CANDIDATES = ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6", "zero")


@pytest.fixture(scope="module")
def supernet():
    return Supernet(tiny_space(candidates=CANDIDATES))


def _randomise(path, rng):
    """Random weights everywhere, batch norm variances positive: so that a test compares
    functions, not initialisations that happen to agree."""
    path.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in v.name
                      else rng.normal(0, 0.5, w.shape)
                      for v, w in zip(path.weights, path.get_weights())])


def _outputs(path, rng_seed=1):
    shape = (2,) + tuple(path.input_shape[1:])
    x = np.random.default_rng(rng_seed).normal(size=shape).astype(np.float32)
    return path(x, training=False).numpy()


def _op_paths(mixed_op):
    return {op: path for op, path in zip(mixed_op.candidates, mixed_op.paths) if path is not None}


def _random_block(supernet, position, seed_op):
    """Searchable block `position` with random weights in every path: its mixed op, its paths
    by op, and the layers of path `seed_op` by role (dw_conv, project_conv, ...)."""
    rng = np.random.default_rng(0)
    m = supernet.mixed_ops[position]
    paths = _op_paths(m)
    for path in paths.values():
        _randomise(path, rng)
    layers = {layer.name.split(f"{seed_op}_")[1]: layer for layer in paths[seed_op].layers
              if layer.weights}
    return m, paths, layers


def test_the_seed_is_the_smallest_widest_or_largest_candidate_or_the_op_named():
    assert CANDIDATES[growth.seed_index(CANDIDATES)] == "k3e3"
    assert CANDIDATES[growth.seed_index(CANDIDATES, "largest")] == "k7e6"
    assert CANDIDATES[growth.seed_index(CANDIDATES, "k3e6")] == "k3e6"
    assert CANDIDATES[growth.seed_index(CANDIDATES, "widest")] == "k3e6"
    assert growth.seed_index(("k5e3", "k7e6", "k3e3", "zero"), "widest") == 1
    assert growth.seed_index(("zero",), "largest") is None
    with pytest.raises(ValueError, match="seed_candidate='k9e6'.*smallest, widest, largest.*k3e3"):
        growth.seed_index(CANDIDATES, "k9e6")


def test_every_candidate_grown_from_the_smallest_seed_computes_the_seed_exactly(supernet):
    rng = np.random.default_rng(0)
    for m in supernet.mixed_ops:
        paths = _op_paths(m)
        for path in paths.values():
            _randomise(path, rng)
        seed = paths["k3e3"]
        before = [w.copy() for w in seed.get_weights()]
        done = growth.grow(supernet)
        assert sorted(done["grown"][m.block_index]) == sorted(set(paths) - {"k3e3"})
        assert not done["cropped"] and not done["left"] and not done["sorted"]
        for old, new in zip(before, seed.get_weights()):  # the seed itself is not touched
            np.testing.assert_array_equal(old, new)
        for op, path in paths.items():
            np.testing.assert_allclose(_outputs(path), _outputs(seed), atol=1e-4,
                                       err_msg=f"block {m.block_index} {op}")


def test_sorting_the_hidden_channels_puts_the_largest_projection_first_and_changes_nothing(
        supernet):
    m, paths, layers = _random_block(supernet, 0, "k7e6")
    seed = paths["k7e6"]
    before = _outputs(seed)
    growth.sort_hidden_channels(seed, m.block_index, "k7e6")
    np.testing.assert_allclose(_outputs(seed), before, atol=1e-4)
    importance = np.abs(layers["project_conv"].get_weights()[0]).sum(axis=(0, 1, 3))
    assert np.all(np.diff(importance) <= 0)


def test_a_crop_of_the_largest_seed_keeps_exactly_what_lies_inside_it(supernet):
    """With the seed's outer kernel taps zero and only half of its hidden channels projected
    (the last half: the sort must bring them first), every crop computes the seed's
    function."""
    m, paths, layers = _random_block(supernet, 0, "k7e6")
    seed = paths["k7e6"]
    kernel = layers["dw_conv"].get_weights()[0]
    hidden = kernel.shape[2]
    project = layers["project_conv"].get_weights()[0]
    # the important half lies last before the sort; the sort must bring it first
    project[:, :, :hidden // 2, :] = 0.0
    layers["project_conv"].set_weights([project])
    small_taps = kernel.copy()
    small_taps[:2], small_taps[-2:], small_taps[:, :2], small_taps[:, -2:] = 0, 0, 0, 0
    layers["dw_conv"].set_weights([small_taps])
    done = growth.grow(supernet, "largest")
    assert sorted(done["cropped"][m.block_index]) == ["k3e3", "k3e6", "k5e3", "k5e6", "k7e3"]
    assert m.block_index not in done["grown"]
    target = _outputs(seed)
    for op in ("k3e3", "k3e6", "k5e3", "k5e6", "k7e3"):
        np.testing.assert_allclose(_outputs(paths[op]), target, atol=1e-4, err_msg=op)
    assert done["sorted"][m.block_index] == ["k7e6"]


def test_a_middle_seed_grows_into_the_larger_candidates_and_is_cropped_into_the_smaller(supernet):
    """Seed k3e6: k5e6 and k7e6 grow from it exactly; k3e3 is its channel crop; k5e3 and k7e3
    are larger in kernel and smaller in channels, so their kernel is padded and their channels
    cropped. With the seed projecting only from its important half, they all compute it."""
    m, paths, layers = _random_block(supernet, 1, "k3e6")
    seed = paths["k3e6"]
    weights = layers["project_conv"].get_weights()[0]
    weights[:, :, ::2, :] = 0.0  # every other channel unused: the sort must gather the rest
    layers["project_conv"].set_weights([weights])
    done = growth.grow(supernet, "k3e6")
    assert sorted(done["grown"][m.block_index]) == ["k5e6", "k7e6"]
    assert sorted(done["cropped"][m.block_index]) == ["k3e3", "k5e3", "k7e3"]
    for op, path in paths.items():
        np.testing.assert_allclose(_outputs(path), _outputs(seed), atol=1e-4, err_msg=op)


def test_the_smallest_seed_leaves_what_it_cannot_grow_into_and_crops_nothing():
    """Candidates k3e6, k5e3: the smallest seed (k3e6 by the tie-break: neither grows into the
    other) leaves k5e3 as initialised; any other seed choice crops it."""
    net = Supernet(tiny_space(candidates=("k3e6", "k5e3", "zero")))
    m = net.mixed_ops[0]
    k5e3 = _op_paths(m)["k5e3"]
    before = [w.copy() for w in k5e3.get_weights()]
    done = growth.grow(net)
    assert done["left"][m.block_index] == ["k5e3"] and not done["cropped"]
    for old, new in zip(before, k5e3.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert growth.grow(net, "k3e6")["cropped"][m.block_index] == ["k5e3"]


def test_sorting_the_channels_takes_the_optimizer_state_along(supernet):
    """The momentum of a sorted channel must stay with it: each slot starts as a copy of its
    variable, and after the sort it still is."""
    import tensorflow as tf
    m, paths, _ = _random_block(supernet, 2, "k5e6")
    seed = paths["k5e6"]
    slots = {id(v): tf.Variable(v.numpy()) for v in seed.trainable_weights}
    before = [v.numpy() for v in seed.trainable_weights]
    growth.sort_hidden_channels(seed, m.block_index, "k5e6", lambda v: slots[id(v)])
    assert any(not np.array_equal(old, v.numpy())  # random weights: the order did change
               for old, v in zip(before, seed.trainable_weights))
    for v in seed.trainable_weights:
        np.testing.assert_array_equal(slots[id(v)].numpy(), v.numpy())
