"""benchmarks.supernet_ranking: a finished supernet is reused only for the same recipe, and
benchmarks.supernet_eval re-estimates batch norm on the same images for every network."""

import argparse
import os

import pytest

from benchmarks import supernet_eval
from benchmarks import supernet_ranking as bench


def finished_supernet(out, flags_txt):
    folder = os.path.join(out, "supernet")
    os.makedirs(folder)
    with open(os.path.join(folder, "results.json"), "w") as f:
        f.write("{}")
    with open(os.path.join(folder, "flags.txt"), "w") as f:
        f.write(flags_txt)
    return folder


def test_flags_differing_names_each_changed_value_and_ignores_the_data_folder(tmp_path):
    path = tmp_path / "flags.txt"
    path.write_text("--data_dir=/elsewhere/tfds\n--seed_candidate=widest\n--seed_fraction=0.4\n"
                    "--depths=2,2,2,2,2,1\n--nodownload\n")
    flags = ["--data_dir=/here/tfds", "--seed_candidate=smallest", "--seed_fraction=0.40",
             "--depths=2,2,2,2,2,1"]
    assert bench.flags_differing(str(path), flags) == ["--seed_candidate=widest (now smallest)"]
    assert bench.flags_differing(str(tmp_path / "missing.txt"), flags) == []


def test_a_flag_an_older_run_lacks_counts_as_what_the_library_did_before_it(tmp_path):
    path = tmp_path / "flags.txt"  # a supernet of the library before --skip_rate existed
    path.write_text("--depths=2,2,2,2,2,1\n")
    path = str(path)
    assert bench.flags_differing(path, ["--skip_rate=0.5"]) == ["--skip_rate=0 (now 0.5)"]
    assert bench.flags_differing(path, ["--skip_rate=0", "--seed_candidate=smallest"]) == []
    assert bench.flags_differing(path, ["--weight_lr=0.05"]) == ["--weight_lr=(absent) (now 0.05)"]


def test_a_supernet_of_another_seed_candidate_is_refused_not_reused(tmp_path):
    args = argparse.Namespace(**bench.FULL, data_dir="/data")
    folder = finished_supernet(str(tmp_path), "\n".join(bench.supernet_flags(args)) + "\n")
    assert bench.train_supernet(args, str(tmp_path)) == folder  # the same recipe: reused
    args.seed_candidate = "widest"
    with pytest.raises(SystemExit) as info:
        bench.train_supernet(args, str(tmp_path))
    assert "--seed_candidate=smallest (now widest)" in str(info.value)
    assert folder in str(info.value)


def test_every_network_and_every_rerun_recalibrates_on_the_same_images():
    """Unseeded, two evaluations of one supernet gave rank correlations of -0.22 and +0.22."""
    import numpy as np
    from conftest import TFDS_DIR, require_shared
    require_shared(os.path.join(TFDS_DIR, "cifar10"))
    args = argparse.Namespace(batch_size=16, data_dir=TFDS_DIR, max_train_examples=256,
                                    recalibration_batches=3)
    # read as derived.recalibrate_batchnorm reads them: dataset.take(batches)
    images = lambda data: np.concatenate([x.numpy() for x, _ in data.take(3)])  # noqa: E731
    calibration, splits = supernet_eval.evaluation_data(args)
    first = images(calibration)
    assert first.shape[0] == 3 * 16
    assert np.array_equal(images(calibration), first)  # the next network
    again, _ = supernet_eval.evaluation_data(args)
    assert np.array_equal(images(again), first)  # a rerun
    assert not np.array_equal(images(splits.valid), first)  # it reshuffles: cached
    args.calibration_seed = 1
    assert not np.array_equal(images(supernet_eval.evaluation_data(args)[0]), first)


def test_evaluate_inherited_recalibrates_on_the_evaluation_batches(monkeypatch):
    from proxyless_tf import derived
    seen = []
    monkeypatch.setattr(supernet_eval, "evaluation_data", lambda args: ("BATCHES", SPLITS))
    monkeypatch.setattr(derived, "derived_network",
                        lambda net, data, arch, batches: seen.append(data) or arch)
    monkeypatch.setattr(derived, "accuracy", lambda model, data: 0.5)
    args = argparse.Namespace(recalibration_batches=2)
    archs = [(argparse.Namespace(name=n), None) for n in ("a", "b")]
    assert supernet_eval.evaluate_inherited(args, None, None, archs, net="NET") == (
        {"a": 0.5, "b": 0.5}, 64)
    assert seen == ["BATCHES", "BATCHES"]


SPLITS = argparse.Namespace(test="TEST", test_size=64)


def test_inherited_scores_of_other_evaluation_settings_are_not_reused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(supernet_eval, "evaluate_inherited",
                        lambda args, space, folder, archs: calls.append(1) or ({"a": 0.4}, 64))
    args = argparse.Namespace(**bench.FULL)
    archs = [(argparse.Namespace(name="a"), None)]
    bench.inherited_accuracies(args, None, str(tmp_path), archs)
    bench.inherited_accuracies(args, None, str(tmp_path), archs)
    assert len(calls) == 1  # the same settings: kept
    args.calibration_seed = 1
    bench.inherited_accuracies(args, None, str(tmp_path), archs)
    assert len(calls) == 2
