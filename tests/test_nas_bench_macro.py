"""NAS-Bench-Macro's space, as the project builds it, is the benchmark's: the same networks to
the weight and to the multiply-accumulate, and keys that map to architectures and back."""

import itertools
import json

import numpy as np
import pytest

from proxyless_tf import architecture, blocks, nas_bench_macro as nbm
from proxyless_tf.errors import UsageError


@pytest.fixture(scope="module")
def raw():
    with open(nbm.DEFAULT_PATH) as f:
        return json.load(f)


def counted_keys(raw):
    best = max(raw, key=lambda k: raw[k]["mean_acc"])
    rng = np.random.default_rng(0)
    drawn = [str(k) for k in rng.choice(sorted(raw), 30, replace=False)]
    return ["00000000", "11111111", "22222222", best, "01000000"] + drawn


def test_built_networks_have_the_files_params_and_macs_exactly(raw):
    keys = counted_keys(raw)
    assert "22212220" in keys and len(set(keys)) >= 30
    for key in keys:
        model = blocks.build_network(nbm.arch_of(key))
        assert blocks.count_params(model) == raw[key]["params"], key
        assert blocks.count_macs(model) == raw[key]["flops"], key


def test_the_space_is_the_benchmarks():
    space = nbm.space()
    positions = space.positions()
    assert len(positions) == 8 and all(p.searchable for p in positions)
    assert [p.out_channels for p in positions] == [64] * 2 + [128] * 3 + [256] * 3
    assert [p.stride for p in positions] == [2, 1, 2, 1, 1, 2, 1, 1]
    assert all(p.candidates == ("identity", "k3e3", "k5e6") for p in positions)
    assert space.activation == "relu" and space.stem_stride == 1 and not space.first_op


def test_identity_is_a_projection_where_a_block_changes_shape_and_a_skip_elsewhere():
    model = blocks.build_network(nbm.arch_of("00000000"))
    convs = [layer.name for layer in model.layers if "conv" in layer.name]
    # stem, three stage-opening 1x1 projections, the head: the skipped blocks have no layers
    assert convs == ["stem_conv", "block0_identity_project_conv",
                     "block2_identity_project_conv", "block5_identity_project_conv", "head_conv"]
    relus = [layer for layer in model.layers if layer.name.endswith("relu")]
    assert relus and all(layer.max_value is None for layer in relus)  # ReLU, not ReLU6


def test_every_key_maps_to_an_architecture_and_back():
    for digits in itertools.product("012", repeat=8):
        key = "".join(digits)
        arch = nbm.arch_of(key)
        assert nbm.key_of(arch, canonical_form=False) == key
        assert nbm.key_of(arch) == nbm.canonical(key)


def test_canonical_keys_move_skips_to_the_stage_end_and_count_3969_networks(raw):
    assert nbm.canonical("10" + "020" + "001") == "10" + "020" + "010"
    assert nbm.canonical("01" + "102" + "210") == "01" + "120" + "210"  # first digits stay
    assert len({nbm.canonical(k) for k in raw}) == 3969
    # the file gives both keys of one network the same record
    for key in list(raw)[:200]:
        assert raw[key]["mean_acc"] == raw[nbm.canonical(key)]["mean_acc"]


def test_an_arch_json_of_the_space_round_trips_to_its_key(tmp_path):
    path = tmp_path / "arch.json"
    nbm.arch_of("21021010").save(str(path))
    assert nbm.key_of(architecture.Architecture.load(str(path))) == nbm.canonical("21021010")
    with pytest.raises(UsageError, match="not a network of NAS-Bench-Macro"):
        nbm.key_of(architecture.reference("mobilenet_v2"))
    with pytest.raises(UsageError, match="8 digits"):
        nbm.arch_of("0123")


def test_benchmark_records_by_canonical_key():
    bench = nbm.Benchmark()
    assert len(bench) == 3969 and bench.raw_keys == 6561
    best = max(bench.records.values(), key=lambda r: r.mean_acc)
    assert best.key == "22212220" and best.mean_acc == pytest.approx(93.13, abs=0.01)
    assert bench.record(nbm.arch_of("00000000")).params == 387882


def test_expected_best_of_n_is_exact():
    values = [1.0, 2.0, 4.0]
    by_enumeration = np.mean([max(draw) for draw in itertools.product(values, repeat=2)])
    assert nbm.expected_best_of(values, 2) == pytest.approx(by_enumeration)
    assert nbm.expected_best_of(values, 1) == pytest.approx(np.mean(values))


def test_standing_among_the_networks_no_slower():
    acc = np.array([90.0, 91.0, 92.0, 93.0])
    lat = np.array([1.0, 1.02, 2.0, 3.0])
    result = nbm.standing(91.0, 2.0, acc, lat)
    assert result["no_slower"] == 3 and result["best_no_slower"] == 92.0
    assert result["regret"] == pytest.approx(1.0)
    assert result["percentile_no_slower"] == pytest.approx(200 / 3)
    assert result["within_band"] == 1 and result["expected_best_of_5_random"] == 92.0
    assert nbm.pareto_front(lat, acc) == [0, 1, 2, 3]
    assert nbm.pareto_front(np.array([1.0, 2.0]), np.array([92.0, 91.0])) == [0]


def test_the_commands_and_the_api_take_the_space(raw):
    from conftest import assert_usage_error, run_module as run
    from proxyless_tf import api
    shown = run("proxyless_tf.show", "--flagfile=flags/nas_bench_macro.cfg", "--arch=all:k5e6")
    assert shown.returncode == 0, shown.stderr
    assert f"multiply-accumulates: {raw['22222222']['flops']:,}" in shown.stdout
    assert_usage_error(run("proxyless_tf.show", "--flagfile=flags/nas_bench_macro.cfg",
                           "--candidates=zero,identity,k3e3", "--arch=all:k3e3"),
                       "--candidates", "same op")
    space = api.space("nas_bench_macro")
    arch = api.architecture_of("all:identity", space)
    assert nbm.key_of(arch) == "00000000" and arch.activation == "relu"
