"""benchmarks/inherited_accuracy.py: which networks it evaluates (no supernet, no data)."""

import argparse
import json
import os

from conftest import load_benchmark, tiny_space


bench = load_benchmark("inherited_accuracy")


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
