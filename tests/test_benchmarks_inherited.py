"""benchmarks.inherited_accuracy: which networks it evaluates (no supernet, no data)."""

import argparse
import json
import os

from benchmarks import inherited_accuracy as bench
from conftest import tiny_space


def write_results(folder, rows):
    os.makedirs(folder)
    path = os.path.join(folder, "results.json")
    with open(path, "w") as f:
        json.dump({"networks": [{"name": n, "ops": ops, "acc_mean": acc} for n, ops, acc in rows]},
                  f)
    return path


def test_networks_of_several_runs_once_each_then_the_uniform_ones(tmp_path):
    shared = ["k3e3", "zero", "k5e6", "k3e3"]  # a random network both runs reuse
    first = write_results(str(tmp_path / "run_a"), [("searched_s0", ["k5e6"] * 4, 0.5),
                                                    ("random1", shared, 0.48)])
    second = write_results(str(tmp_path / "run_b"), [("searched_s0", ["k3e3"] * 4, 0.46),
                                                     ("random1", shared, 0.48)])
    args = argparse.Namespace(results=f"{first},{second}", uniform="k3e3,k5e6")
    nets = bench.networks(args, tiny_space())
    assert [arch.name for arch, _ in nets] == [
        "run_a/searched_s0", "run_a/random1", "run_b/searched_s0", "all:k3e3", "all:k5e6"]
    assert [acc for _, acc in nets] == [0.5, 0.48, 0.46, None, None]
    assert [b.op for b in nets[1][0].blocks if b.searchable] == shared
    assert [b.op for b in nets[-1][0].blocks if b.searchable] == ["k5e6"] * 4


def test_added_channel_weight_is_zero_after_growth_and_about_one_for_random_weights():
    from proxyless_tf import growth
    from proxyless_tf.supernet import Supernet
    net = Supernet(tiny_space(candidates=("k3e3", "k3e6", "k5e6", "zero")))
    fresh = bench.added_channel_weight(net)
    assert sorted(fresh) == sorted(f"{m.block_index}/{op}" for m in net.mixed_ops
                                   for op in ("k3e6", "k5e6"))
    assert all(0.7 < ratio < 1.4 for ratio in fresh.values())  # one initialiser for all
    growth.grow(net)  # the added channels get zero projection weights
    assert all(ratio == 0.0 for ratio in bench.added_channel_weight(net).values())


def test_the_scatter_is_written_whole(tmp_path):
    summary = {"search_dir": "runs/x", "networks": [
        {"name": f"run/n{i}", "inherited": 0.3 + i / 100, "retrained": 0.45 + i / 200,
         "expand6_blocks": i} for i in range(4)] + [
        {"name": "all:k3e6", "inherited": 0.33, "retrained": None, "expand6_blocks": 11}],
        "kendall_inherited_vs_retrained": {"tau": 1.0, "p": 0.04},
        "spearman_inherited_vs_retrained": {"rho": 1.0, "p": 0.0, "networks": 4}}
    path = str(tmp_path / "inherited_accuracy.png")
    bench.scatter_png(summary, path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["inherited_accuracy.png"]  # no temporary left behind
    bench.scatter_png({"search_dir": "runs/x", "networks": []}, str(tmp_path / "none.png"))
    assert os.listdir(tmp_path) == ["inherited_accuracy.png"]  # nothing to draw, no file
