"""Retraining (proxyless_tf.train): the schedule, resume from the checkpoint, the CLI outputs and
its one-line errors. Tiny networks on the embedded digits data, so the file runs in a minute or
two on 2 CPU cores."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import assert_usage_error, run_module as run, tiny_space
from proxyless_tf import architecture, data
from proxyless_tf.train import TrainConfig, learning_rate_schedule, train


def tiny_arch(input_size=16):
    """A derived-looking network: a skipped block and residual adds included."""
    space = tiny_space(input_size=input_size)
    return architecture.from_space(space, ["k3e3", "zero", "k5e6", "k3e3"], name="tiny")


def digits(input_size=16, batch_size=32):
    return data.load("digits", input_size, batch_size, max_train_examples=256)


def test_schedule_warms_up_linearly_then_decays_to_zero():
    schedule = learning_rate_schedule(TrainConfig(epochs=10, warmup_epochs=2, lr=0.1), 5)
    lr = lambda step: float(schedule(step))
    # Zero within float32 rounding of the 0.1-0.2 peak: cos(pi) in float32 may be an ulp above
    # -1 (leaving ~1e-8). One step short of the end is still 1.5e-4 (and 1.2e-3 for `plain`).
    zero = pytest.approx(0.0, abs=1e-6)
    assert lr(0) == zero
    assert lr(5) == pytest.approx(0.05, rel=1e-4)   # half-way through the warm-up
    assert lr(10) == pytest.approx(0.1, rel=1e-4)   # peak at the end of the warm-up
    assert lr(30) == pytest.approx(0.05, rel=1e-3)  # cosine half-way through the rest
    assert lr(50) == zero
    plain = learning_rate_schedule(TrainConfig(epochs=4, lr=0.2), 5)
    assert float(plain(0)) == pytest.approx(0.2) and float(plain(20)) == zero


def test_an_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    import keras
    arch, splits = tiny_arch(), digits()
    config = TrainConfig(epochs=2, batch_size=32, steps_per_epoch=3, lr=0.05, verbose=0)
    seen = {}

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # runs after the epoch's checkpoint
            seen["weights"] = [w.copy() for w in self.model.get_weights()]
            seen["step"] = int(self.model.optimizer.iterations.numpy())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(arch, splits, str(tmp_path), config, callbacks=[Interrupt()])
    assert seen["step"] == 3
    assert not (tmp_path / "model.keras").exists()

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["resumed_weights"] = self.model.get_weights()
            seen["resumed_step"] = int(self.model.optimizer.iterations.numpy())

        def on_epoch_begin(self, epoch, logs=None):
            seen.setdefault("epochs", []).append(epoch)

    model, results = train(arch, splits, str(tmp_path), config, callbacks=[Record()])
    assert results["resumed_from_epoch"] == 1
    assert seen["resumed_step"] == 3 and seen["epochs"] == [1]  # only the second epoch ran
    for before, after in zip(seen["weights"], seen["resumed_weights"]):
        np.testing.assert_array_equal(before, after)
    with open(tmp_path / "history.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert (tmp_path / "model.keras").exists()
    # A finished run resumes at its end: nothing is trained again.
    seen.clear()
    _, again = train(arch, splits, str(tmp_path), config, callbacks=[Record()])
    assert again["resumed_from_epoch"] == 2 and "epochs" not in seen
    assert again["test_accuracy"] == pytest.approx(results["test_accuracy"])


def test_resuming_with_another_architecture_is_refused(tmp_path):
    from proxyless_tf.errors import UsageError
    arch = tiny_arch()
    arch.save(str(tmp_path / "arch.json"))
    other = architecture.from_space(tiny_space(), ["k3e3", "k3e3", "k5e6", "k3e3"], name="other")
    with pytest.raises(UsageError, match="another architecture"):
        train(other, None, str(tmp_path), TrainConfig(verbose=0))


def test_train_command_takes_a_search_arch_json_and_writes_everything(tmp_path):
    """The search's OUTPUT_DIR/arch.json, default --arch; then --export_tflite."""
    import keras
    search_dir = tmp_path / "search"
    tiny_arch(input_size=32).save(str(search_dir / "arch.json"))
    result = run("proxyless_tf.train", f"--output_dir={search_dir}", "--train_epochs=1",
                 "--train_steps_per_epoch=2", "--batch_size=32", "--max_train_examples=128",
                 "--export_tflite", "--report_images=32", "--export_latency_runs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    out = search_dir / "train"
    results = json.loads((out / "results.json").read_text())
    assert results["arch"] == "tiny" and results["epochs"] == 1 and results["dataset"] == "digits"
    assert 0.0 <= results["test_accuracy"] <= 1.0
    model = keras.saving.load_model(str(out / "model.keras"), compile=False)
    assert model.count_params() > 0 and model.input_shape == (None, 32, 32, 3)
    assert os.listdir(out / "tensorboard") and (out / "history.csv").exists()
    assert any(name.startswith("ckpt-1") for name in os.listdir(out / "checkpoints"))
    report = json.loads((out / "model.float32.report.json").read_text())
    assert report["validation"]["max_abs_logits_diff"] <= 1e-4
    assert (out / "model.float32.tflite").exists() and (out / "model.float32.report.md").exists()


@pytest.mark.parametrize("args, words", [
    (["--train_epochs=0"], ["--train_epochs"]),
    (["--train_epochs=2", "--train_warmup_epochs=2"], ["--train_warmup_epochs"]),
    (["--quantize=int4", "--export_tflite"], ["--quantize", "int4"]),
    (["--arch=/nonexistent/arch.json"], ["/nonexistent/arch.json", "does not exist"]),
])
def test_train_rejects_bad_flags(args, words, tmp_path):
    args = [f"--train_output_dir={tmp_path}/out"] + args
    if not any(a.startswith("--arch") for a in args):
        args.append("--arch=mobilenet_v2")
    assert_usage_error(run("proxyless_tf.train", *args), *words)


def test_train_rejects_an_arch_that_does_not_match_the_input_size(tmp_path):
    arch16 = tmp_path / "arch16.json"
    tiny_arch(input_size=16).save(str(arch16))
    # the embedded digits data comes at 32x32
    assert_usage_error(run("proxyless_tf.train", f"--arch={arch16}",
                           f"--train_output_dir={tmp_path}/out"),
                       "16x16", "digits", "32x32", "--input_size")
    assert_usage_error(run("proxyless_tf.train", f"--arch={arch16}", "--input_size=24",
                           f"--train_output_dir={tmp_path}/out"), "16x16", "--input_size=24")
