"""benchmarks/supernet_ranking.py: a finished supernet is reused only for the same recipe."""

import os

import pytest

from conftest import load_benchmark

bench = load_benchmark("supernet_ranking")


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
                    "--nodownload\n")
    flags = ["--data_dir=/here/tfds", "--seed_candidate=smallest", "--seed_fraction=0.40",
             "--skip_rate=0.5"]  # skip_rate: not in the file (an older library), taken as equal
    assert bench.flags_differing(str(path), flags) == ["--seed_candidate=widest (now smallest)"]
    assert bench.flags_differing(str(tmp_path / "missing.txt"), flags) == []


def test_a_supernet_of_another_seed_candidate_is_refused_not_reused(tmp_path):
    args = bench.argparse.Namespace(**bench.FULL, data_dir="/data")
    args.seed_candidate = "widest"
    folder = finished_supernet(str(tmp_path), "--seed_candidate=smallest\n")
    with pytest.raises(SystemExit) as info:
        bench.train_supernet(args, str(tmp_path))
    assert "--seed_candidate=smallest (now widest)" in str(info.value)
    assert folder in str(info.value)
    args.seed_candidate = "smallest"
    assert bench.train_supernet(args, str(tmp_path)) == folder  # the same recipe: reused



def test_every_network_and_every_rerun_recalibrates_on_the_same_images():
    """Unseeded, two evaluations of one supernet gave rank correlations of -0.22 and +0.22."""
    import numpy as np
    from conftest import TFDS_DIR, require_shared
    require_shared(os.path.join(TFDS_DIR, "cifar10"))
    args = bench.argparse.Namespace(batch_size=16, data_dir=TFDS_DIR, max_train_examples=256,
                                    recalibration_batches=3)
    images = lambda batches: np.concatenate([x.numpy() for x, _ in batches])  # noqa: E731
    calibration, splits = bench.evaluation_data(args)
    first = images(calibration)
    assert first.shape[0] == 3 * 16
    assert np.array_equal(images(calibration), first)  # the next network
    again, _ = bench.evaluation_data(args)
    assert np.array_equal(images(again), first)  # a rerun
    assert not np.array_equal(images(splits.valid.take(3)), first)  # it reshuffles: cached
