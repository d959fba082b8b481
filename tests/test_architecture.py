"""Architectures are plain JSON data; the reference networks match the published figures."""

import json
import os

import pytest

from conftest import REFERENCE_DIR, require_shared
from proxyless_tf import architecture, blocks
from proxyless_tf.errors import UsageError

PUBLISHED_PARAMS = {"mobilenet_v2": 3.50e6, "proxyless_mobile": 4.08e6,
                    "proxyless_gpu": 7.12e6, "proxyless_cpu": 4.36e6}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_reference_parameter_counts_match_the_paper_within_one_percent(name):
    model = blocks.build_network(architecture.reference(name, 224, 1000))
    assert blocks.count_params(model) == pytest.approx(PUBLISHED_PARAMS[name], rel=0.01)


@pytest.mark.parametrize("name", ["proxyless_mobile", "proxyless_gpu", "proxyless_cpu"])
def test_reference_block_lists_match_the_official_release(name):
    path = require_shared(os.path.join(REFERENCE_DIR, f"{name}.config"))
    with open(path) as f:
        config = json.load(f)
    official = []
    for b in config["blocks"]:
        conv = b["mobile_inverted_conv"]
        if conv["name"] == "ZeroLayer":
            official.append("zero")
        else:
            official.append(f"k{conv['kernel_size']}e{conv['expand_ratio']}")
    arch = architecture.reference(name)
    assert arch.ops == official
    assert arch.stem_channels == config["first_conv"]["out_channels"]
    assert arch.head_channels == config["feature_mix_layer"]["out_channels"]


def test_arch_json_round_trips_and_builds_a_model(tmp_path, space):
    arch = architecture.from_space(space, ["k5e6", "zero", "k3e3", "zero"], name="t")
    path = tmp_path / "arch.json"
    arch.save(str(path))
    data = json.loads(path.read_text())
    assert [b["op"] for b in data["blocks"] if b["searchable"]] == ["k5e6", "zero", "k3e3", "zero"]
    loaded = architecture.Architecture.load(str(path))
    assert loaded.to_json() == arch.to_json()
    model = blocks.build_network(loaded)
    assert model.output_shape == (None, space.num_classes)


def test_zero_block_is_the_identity_shortcut(space):
    with_zero = architecture.from_space(space, ["k5e6", "zero", "k3e3", "zero"])
    model = blocks.build_network(with_zero)
    assert not [l for l in model.layers if l.name.startswith("block2_")]  # no layers at all
    assert [l for l in model.layers if l.name.startswith("block1_k5e6")]


def test_arch_file_errors_are_one_line_and_name_the_file(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(UsageError, match="bad.json.*not valid JSON"):
        architecture.Architecture.load(str(bad_json))
    arch = architecture.reference("mobilenet_v2").to_json()
    arch["blocks"][3]["op"] = "k4e9"
    unknown_op = tmp_path / "unknown.json"
    unknown_op.write_text(json.dumps(arch))
    with pytest.raises(UsageError, match="unknown.json.*block 3.*unknown op 'k4e9'"):
        architecture.Architecture.load(str(unknown_op))


def test_zero_where_shapes_change_is_rejected():
    arch = architecture.reference("mobilenet_v2").to_json()
    arch["blocks"][1]["op"] = "zero"  # 16 -> 24 channels, stride 2: no shortcut to keep
    with pytest.raises(UsageError, match="only where the block keeps its identity shortcut"):
        architecture.Architecture.from_json(arch)


def test_all_op_spec_sets_every_searchable_block(space):
    arch = architecture.resolve("all:k5e6", space)
    assert {b.op for b in arch.blocks if b.searchable} == {"k5e6"}
    assert blocks.build_network(arch).name == "all_k5e6"  # ':' is not a legal Keras name
