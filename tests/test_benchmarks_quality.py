"""benchmarks/cifar10_quality.py: the pieces that decide what is compared, on tiny spaces and a
synthetic latency table (no training, no timing): the rejection sampler of the random networks
and the MAC count."""

import importlib.util
import os

import pytest

from conftest import REPO, synthetic_table, tiny_space
from proxyless_tf import architecture, blocks, latency
from proxyless_tf.errors import UsageError


def load_benchmark():
    path = os.path.join(REPO, "benchmarks", "cifar10_quality.py")
    spec = importlib.util.spec_from_file_location("cifar10_quality", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_benchmark()


def test_random_networks_are_distinct_and_within_the_window_of_the_target():
    space = tiny_space(depths=(3, 3))  # 5 searchable blocks: enough distinct networks
    table = synthetic_table(space, overhead_ms=0.001)
    target = table.predict(architecture.resolve("all:k3e3", space))
    archs = bench.sample_near_target(space, table, target, 6, tolerance=0.05, seed=3)
    assert len(archs) == 6
    assert len({tuple(bench.searchable_ops(a)) for a in archs}) == 6
    for i, arch in enumerate(archs):
        assert abs(table.predict(arch) / target - 1) <= 0.05
        assert arch.name == f"random{i + 1}"
    # seeded, and a larger count extends a smaller one (a resumed run keeps its networks)
    again = bench.sample_near_target(space, table, target, 8, tolerance=0.05, seed=3)
    assert [a.ops for a in again[:6]] == [a.ops for a in archs]
    other = bench.sample_near_target(space, table, target, 6, tolerance=0.05, seed=4)
    assert [a.ops for a in other] != [a.ops for a in archs]


def test_an_unreachable_target_is_a_usage_error():
    space = tiny_space()
    table = synthetic_table(space, overhead_ms=0.001)
    fastest, _ = latency.LatencyObjective(table, space, 1.0, "abs").range_ms()
    with pytest.raises(UsageError, match="choose another target"):
        bench.sample_near_target(space, table, fastest / 3, 1, max_tries=500)


def test_macs_of_a_small_network_by_hand():
    space = tiny_space()  # 16x16 input, stem stride 1, stages (16 ch stride 2, 24 ch stride 1)
    arch = architecture.from_space(space, ["k3e3", "zero", "k5e6", "k3e3"], name="tiny")
    model = blocks.build_network(arch)
    stem, first = arch.stem_channels, arch.blocks[0].out_channels
    c1, c2, head = arch.blocks[1].out_channels, arch.blocks[3].out_channels, arch.head_channels
    hw = 16 * 16
    expected = (hw * 9 * 3 * stem                                   # stem 3x3 conv
                + hw * 9 * stem + hw * stem * first                 # k3e1: dw 3x3, project
                + hw * first * 3 * first                            # k3e3 expand (stride 2 dw)
                + 8 * 8 * (9 * 3 * first + 3 * first * c1)          # its dw and project at 8x8
                + 8 * 8 * (c1 * 6 * c1 + 25 * 6 * c1 + 6 * c1 * c2)  # k5e6 ('zero' costs 0)
                + 8 * 8 * (c2 * 3 * c2 + 9 * 3 * c2 + 3 * c2 * c2)  # k3e3
                + 8 * 8 * c2 * head + head * 10)                    # head 1x1 conv, classifier
    assert bench.count_macs(model) == expected


def test_short_ops():
    assert bench.short_ops(["k3e6", "zero", "k7e3"]) == "36 -- 73"
