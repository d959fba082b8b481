"""Robust and reproducible searches: the NaN guard, --deterministic, a process killed at any
point, a space without a choice."""

import filecmp
import json
import math
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO, assert_usage_error, run_module

# A tiny search: 3 epochs (seed, warm-up, search) of 6 steps on 320 digits, no latency timing.
TINY = ["--dataset=digits", "--space=small_input", "--input_size=16", "--width_multiplier=0.25",
        "--widths=16,24", "--depths=2,2", "--strides=2,1", "--candidates=k3e3,k5e6,zero",
        "--batch_size=16", "--epochs=3", "--warmup_epochs=2", "--seed_fraction=0.5",
        "--steps_per_epoch=6", "--arch_update_every=1", "--max_train_examples=320",
        "--weight_lr=0.05", "--arch_lr=0.1", "--noexport_tflite"]
STEPS_PER_EPOCH = 6


def driver(kill_at, output_dir, *extra):
    """tests/search_driver.py: the search, SIGKILLed at `kill_at` (or `none`)."""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, os.path.join(REPO, "tests", "search_driver.py"),
                           kill_at, *TINY, "--deterministic", f"--output_dir={output_dir}",
                           *extra], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def history(output_dir):
    """history.jsonl without the timings (the only thing two equal runs may differ in)."""
    with open(os.path.join(output_dir, "history.jsonl")) as f:
        records = [json.loads(line) for line in f]
    for record in records:
        record.pop("seconds")
    return records


def assert_whole(output_dir):
    """Every artifact parses: nothing half-written."""
    for name in ("arch.json", "results.json"):
        with open(os.path.join(output_dir, name)) as f:
            json.load(f)
    history(output_dir)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = driver("none", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# --- determinism ------------------------------------------------------------------------------
def test_the_same_deterministic_command_twice_gives_the_same_architecture(uninterrupted,
                                                                         tmp_path):
    again = driver("none", tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert filecmp.cmp(uninterrupted / "arch.json", tmp_path / "arch.json", shallow=False)
    assert history(uninterrupted) == history(tmp_path)
    assert len(history(tmp_path)) == 3 and history(tmp_path)[-1]["phase"] == "search"


def test_the_search_says_where_its_time_went_phase_by_phase(tmp_path):
    """The closing line and phases.json split the wall time by phase, the step from the results
    to the search's return (where a pause once hid) among them, within the process's wall time."""
    started = time.time()
    result = driver("none", tmp_path)
    wall_s = time.time() - started
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "phases.json") as f:
        phases = json.load(f)
    assert {"setup", "latency check", "seed", "search", "results", "release"} <= phases.keys()
    assert phases["total"] <= wall_s  # the process around the clock: start-up, exit
    assert result.stdout.strip().splitlines()[-1].startswith("time: setup ")


# --- kill -9 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kill_at", [
    f"step:{STEPS_PER_EPOCH + 3}",  # in the middle of epoch 2, after epoch 1's checkpoint
    "save:2",                       # while saving epoch 2's checkpoint
])
def test_a_search_killed_and_rerun_ends_as_the_uninterrupted_one(uninterrupted, tmp_path,
                                                                 kill_at):
    killed = driver(kill_at, tmp_path)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / "results.json").exists()  # it died before the end
    resumed = driver("none", tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    assert_whole(tmp_path)
    assert filecmp.cmp(uninterrupted / "arch.json", tmp_path / "arch.json", shallow=False)
    assert history(uninterrupted) == history(tmp_path)


def test_a_reinforce_search_killed_in_its_search_phase_ends_as_the_uninterrupted_one(tmp_path):
    """REINFORCE draws its architectures from its own generator: its state is checkpointed,
    so a search resumed from a checkpoint taken after some REINFORCE steps draws what the
    uninterrupted one drew."""
    flags = ("--arch_algo=reinforce", "--epochs=4", "--reinforce_samples=2")
    whole = driver("none", tmp_path / "whole", *flags)
    assert whole.returncode == 0, whole.stderr[-3000:]
    # Killed in epoch 4, the second search epoch: the rerun resumes from epoch 3's checkpoint.
    killed = driver(f"step:{3 * STEPS_PER_EPOCH + 3}", tmp_path / "resumed", *flags)
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = driver("none", tmp_path / "resumed", *flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    assert history(tmp_path / "whole") == history(tmp_path / "resumed")


# --- the NaN guard ----------------------------------------------------------------------------
def test_a_diverging_search_stops_with_one_line_and_keeps_its_last_good_checkpoint(tmp_path):
    first = driver("none", tmp_path, "--epochs=1", "--warmup_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoints = tmp_path / "checkpoints"
    saved = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    arch, lines = (tmp_path / "arch.json").read_bytes(), (tmp_path / "history.jsonl").read_bytes()

    diverged = driver("none", tmp_path, "--weight_lr=1e30")  # epochs 2-3: weights blow up
    assert_usage_error(diverged, "diverged", "epoch 2", "--weight_lr")
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == saved
    assert (tmp_path / "arch.json").read_bytes() == arch
    assert (tmp_path / "history.jsonl").read_bytes() == lines

    lowered = driver("none", tmp_path)  # the flag lowered again: resumes from epoch 1
    assert lowered.returncode == 0, lowered.stderr[-3000:]
    assert "at epoch 1" in lowered.stdout
    assert [h["epoch"] for h in history(tmp_path)] == [1, 2, 3]
    assert all(math.isfinite(h["train_loss"]) for h in history(tmp_path))


def test_a_non_finite_architecture_loss_names_the_architecture_learning_rate(tmp_path):
    import numpy as np
    from proxyless_tf import data, search_loop
    from proxyless_tf.supernet import Supernet
    from conftest import tiny_space
    splits = data.load("digits", 16, 16, max_train_examples=256)
    search = search_loop.BilevelSearch(
        Supernet(tiny_space(num_classes=splits.num_classes)), splits,
        search_loop.SearchConfig(epochs=2, warmup_epochs=1, steps_per_epoch=2,
                                 arch_update_every=1), str(tmp_path), verbose=0)
    search.steps.arch_step = lambda images, labels: (np.float32("nan"), 0.0, 0.0)
    with pytest.raises(search_loop.Diverged, match=r"epoch 2, step 3; lower --arch_lr"):
        search.run()
    assert [p for p in os.listdir(tmp_path / "checkpoints") if p.startswith("ckpt-2")] == []


# --- a space without a choice -----------------------------------------------------------------
def test_a_space_with_one_candidate_everywhere_is_no_search(tmp_path):
    result = run_module("proxyless_tf.search", *TINY, "--candidates=k3e6",
                        f"--output_dir={tmp_path}")
    assert_usage_error(result, "--candidates=k3e6", "nothing to search",
                       "proxyless_tf.train --arch=all:OP")
    assert not os.listdir(tmp_path)
