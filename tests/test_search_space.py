"""The search space: the paper's layout, configurable, zero only where a shortcut exists."""

import pytest

from proxyless_tf.errors import UsageError
from proxyless_tf.ops import parse_op
from proxyless_tf.search_space import imagenet_space, make_divisible, small_input_space


def test_imagenet_space_is_the_papers_layout():
    space = imagenet_space()
    positions = space.positions()
    assert len(positions) == 1 + 21
    assert positions[0].candidates == ("k3e1",) and positions[0].out_channels == 16
    assert [p.out_channels for p in positions[1:]] == [24] * 4 + [40] * 4 + [80] * 4 + \
        [96] * 4 + [192] * 4 + [320]
    assert positions[-1].output_size == 7
    # zero appears exactly where stride is 1 and channels are kept
    for p in positions[1:]:
        assert ("zero" in p.candidates) == (p.stride == 1 and p.in_channels == p.out_channels)
    assert sum("zero" in p.candidates for p in positions) == 15


def test_small_input_space_keeps_resolution_early():
    space = small_input_space()
    assert space.stem_output_size == 32
    assert space.positions()[-1].output_size == 4


def test_width_multiplier_rounds_channels_to_multiples_of_eight():
    space = imagenet_space(width_multiplier=0.35)
    assert all(p.out_channels % 8 == 0 for p in space.positions())
    assert make_divisible(24 * 0.35) == 8 and make_divisible(320 * 1.4) == 448


def test_op_names():
    assert parse_op("k7e6").kernel == 7 and parse_op("k7e6").expand == 6
    assert parse_op("zero").name == "zero" and parse_op("identity").name == "identity"
    for bad in ("k4e3", "conv3", "", "k3"):
        with pytest.raises(UsageError, match="unknown op"):
            parse_op(bad)


def test_zero_stands_only_where_a_block_keeps_its_shortcut_identity_anywhere():
    zero, identity, mbconv = parse_op("zero"), parse_op("identity"), parse_op("k3e6")
    assert zero.allowed_at(1, 16, 16) and not zero.allowed_at(2, 16, 32)
    assert not zero.allowed_at(1, 16, 24)
    assert identity.allowed_at(2, 16, 32) and mbconv.allowed_at(2, 16, 32)
    # where the shortcut carries the input, both skip the block; elsewhere identity projects
    assert not zero.has_layers(1, 16, 16) and not identity.has_layers(1, 16, 16)
    assert identity.has_layers(2, 16, 32) and identity.has_layers(1, 16, 24)


def test_a_space_offers_each_block_the_candidates_that_may_stand_there():
    space = small_input_space(candidates=("identity", "k3e3"), depths=(2, 1, 1, 1, 1, 1))
    for p in space.searchable_positions():
        assert p.candidates == ("identity", "k3e3")
    space = small_input_space(depths=(2, 1, 1, 1, 1, 1))
    assert [("zero" in p.candidates) == p.has_shortcut for p in space.searchable_positions()] \
        == [True] * len(space.searchable_positions())


def test_zero_and_identity_together_and_a_space_of_skips_only_are_refused():
    with pytest.raises(UsageError, match="same op"):
        small_input_space(candidates=("zero", "identity", "k3e3"))
    with pytest.raises(UsageError, match="every block"):
        small_input_space(candidates=("zero",))
    with pytest.raises(UsageError, match="activation"):
        small_input_space(activation="gelu")
