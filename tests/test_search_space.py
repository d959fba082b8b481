"""The search space: the paper's layout, configurable, zero only where a shortcut exists."""

import pytest

from proxyless_tf.errors import UsageError
from proxyless_tf.search_space import imagenet_space, make_divisible, parse_op, small_input_space


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
    assert parse_op("zero") is None
    for bad in ("k4e3", "conv3", "", "k3"):
        with pytest.raises(UsageError, match="unknown op"):
            parse_op(bad)
