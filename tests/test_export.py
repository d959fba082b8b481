"""TFLite export (python -m export): float round trip, int8, QAT with tfmot, the report, and the
command's one-line errors. Tiny networks on the embedded digits data (runs in a minute or two)."""

import json
import os

import numpy as np
import pytest

from conftest import assert_usage_error, run_module as run, tiny_space
import export
from export import qat, report as report_lib
from proxyless_tf import architecture, data
from proxyless_tf.train import build_model

FAST = dict(report_images=64, latency_runs=3, latency_warmup=1, calibration_images=32,
            batch_size=32, verbose=0)


def tiny_arch(input_size=16):
    """A derived-looking network with a skipped block (block 2) and residual adds."""
    space = tiny_space(input_size=input_size)
    arch = architecture.from_space(space, ["k3e3", "zero", "k5e6", "k3e3"], name="tiny")
    assert "zero" in arch.ops
    return arch


@pytest.fixture(scope="module")
def tiny():
    import keras
    keras.utils.set_random_seed(0)
    arch = tiny_arch()
    return arch, build_model(arch), data.load("digits", 16, 32, max_train_examples=256)


def add_layers(model):
    return [layer.name for layer in model.layers if type(layer).__name__ == "Add"]


def test_float_export_round_trips_the_logits(tiny, tmp_path):
    arch, model, splits = tiny
    output = str(tmp_path / "net.tflite")
    report = export.export_model(model, output, export.ExportSettings(**FAST), splits, arch=arch)
    v = report["validation"]
    assert v["images"] == 64 and v["max_abs_logits_diff"] <= 1e-5 and v["top1_agreement"] == 1.0
    images = next(iter(splits.test))[0].numpy()[:8]
    with open(output, "rb") as f:
        np.testing.assert_allclose(report_lib.Runner(f.read())(images),
                                   model(images, training=False), atol=1e-5)
    info = report["tflite_info"]
    assert info["operators"]["ADD"] == len(add_layers(model)) == 3
    assert "int8" not in info["tensor_types"] and info["input"]["dtype"] == "float32"
    assert report["latency"]["median_ms"] > 0 and report["latency"]["threads"] == 1
    saved = json.loads((tmp_path / "net.report.json").read_text())
    assert saved["validation"] == v and saved["mode"] == "float32"
    assert "max abs logits diff" in (tmp_path / "net.report.md").read_text()


def test_int8_export_has_int8_tensors_and_runs(tiny, tmp_path):
    arch, model, splits = tiny
    settings = export.ExportSettings(quantize="int8", int8_io=True, **FAST)
    report = export.export_model(model, str(tmp_path / "net.tflite"), settings, splits, arch=arch)
    info = report["tflite_info"]
    assert info["input"]["dtype"] == "int8" and info["output"]["dtype"] == "int8"
    assert info["tensor_types"]["int8"] > 20 and "float32" not in info["tensor_types"]
    assert info["operators"]["ADD"] == 3 and "DEQUANTIZE" not in info["operators"]
    with open(tmp_path / "net.tflite", "rb") as f:
        logits = report_lib.Runner(f.read())(next(iter(splits.test))[0].numpy()[:4])
    assert logits.shape == (4, arch.num_classes) and np.isfinite(logits).all()
    v = report["validation"]
    assert v["images"] == 64 and 0 <= v["top1_agreement"] <= 1 and "tflite_accuracy" in v


@pytest.mark.parametrize("mode, weight_type", [("float16", "float16"), ("dynamic", "int8")])
def test_float16_and_dynamic_range_exports(tiny, tmp_path, mode, weight_type):
    arch, model, splits = tiny
    report = export.export_model(model, str(tmp_path / f"{mode}.tflite"),
                                 export.ExportSettings(quantize=mode, **FAST), splits, arch=arch)
    info = report["tflite_info"]
    assert info["tensor_types"][weight_type] > 0 and info["input"]["dtype"] == "float32"
    assert report["validation"]["max_abs_logits_diff"] < 0.1  # weights rounded, same network


def test_qat_wraps_a_derived_network_with_skips_and_adds_and_converts(tiny, tmp_path):
    arch, model, splits = tiny
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    images = next(iter(splits.test))[0].numpy()[:8]
    qat_model = qat.quantize_aware(model, arch, check_images=images)
    assert os.environ.get("TF_USE_LEGACY_KERAS") == before  # tfmot's import leaves no trace
    wrapped = {layer.name for layer in qat_model.layers}
    for name in add_layers(model):  # every residual add is quantized ...
        assert f"quant_{name}" in wrapped
    weighted = [layer.name for layer in model.layers if layer.weights]
    assert all(f"quant_{name}" in wrapped for name in weighted)  # ... and every weighted layer
    assert not any(name.startswith("quant_block2_") for name in wrapped)  # the skipped block
    assert "quantize_layer" in wrapped

    settings = export.ExportSettings(quantize="int8", qat_epochs=1, qat_steps_per_epoch=2, **FAST)
    report = export.export_model(model, str(tmp_path / "qat.tflite"), settings, splits, arch=arch)
    info = report["tflite_info"]
    assert info["operators"]["ADD"] == 3 and info["tensor_types"]["int8"] > 20
    assert report["mode"] == "int8_qat" and len(report["qat"]["history"]) == 1
    assert report["qat"]["quantized_layers"] >= len(weighted) + 3
    assert "qat_keras_accuracy" in report["validation"]


def test_export_command_with_random_weights_and_a_trained_model(tmp_path):
    arch_path = tmp_path / "arch.json"
    tiny_arch(input_size=32).save(str(arch_path))
    output = tmp_path / "random.tflite"
    result = run("export", f"--arch={arch_path}", f"--output={output}", "--report_images=32",
                 "--export_latency_runs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "random.report.json").read_text())
    assert report["weights"] == "random" and report["arch"] == "tiny"
    assert report["validation"]["max_abs_logits_diff"] <= 1e-4
    assert report["latency"]["median_ms"] > 0

    # A trained model: its arch.json and results.json sit next to it (as train leaves them).
    import keras
    model_dir = tmp_path / "train"
    model_dir.mkdir()
    tiny_arch(input_size=32).save(str(model_dir / "arch.json"))
    build_model(tiny_arch(input_size=32)).save(str(model_dir / "model.keras"))
    (model_dir / "results.json").write_text(json.dumps({"dataset": "digits"}))
    result = run("export", f"--model={model_dir / 'model.keras'}", "--quantize=dynamic",
                 "--report_images=32", "--export_latency_runs=2")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((model_dir / "model.dynamic.report.json").read_text())
    assert report["weights"] == "trained" and report["dataset"] == "digits"
    assert (model_dir / "model.dynamic.tflite").exists()
    assert keras.saving.load_model(str(model_dir / "model.keras"), compile=False)


@pytest.mark.parametrize("args, words", [
    (["--arch=mobilenet_v2", "--quantize=int4"], ["--quantize", "int4", "none"]),
    (["--model=/nonexistent/model.keras"], ["--model", "/nonexistent/model.keras"]),
    (["--arch=mobilenet_v2", "--qat_epochs=2", "--quantize=float16"], ["--qat_epochs"]),
    (["--arch=mobilenet_v2", "--int8_io"], ["--int8_io"]),
    (["--arch=mobilenet_v2", "--output=net.bin"], ["--output"]),
    ([], ["--model", "--arch"]),
])
def test_export_rejects_bad_flags(args, words):
    assert_usage_error(run("export", *args), *words)


def test_export_rejects_a_model_that_does_not_match_the_input_size(tmp_path):
    model_dir = tmp_path / "train"
    model_dir.mkdir()
    tiny_arch(input_size=16).save(str(model_dir / "arch.json"))
    (model_dir / "model.keras").write_bytes(b"not loaded: the size check comes first")
    assert_usage_error(run("export", f"--model={model_dir / 'model.keras'}", "--dataset=digits"),
                       "16x16", "digits", "32x32")
    assert_usage_error(run("export", f"--model={model_dir / 'model.keras'}", "--input_size=32"),
                       "16x16", "--input_size=32")


def test_report_gives_the_latency_tables_prediction(tmp_path):
    latency = pytest.importorskip("proxyless_tf.latency")
    arch = tiny_arch()
    parts = latency.arch_parts(arch)
    entries = {part.key: {"count": 1, "mean": 0.5, "var": 0.0} for part in parts}
    table = str(tmp_path / "table.json")
    latency.LatencyTable(entries).save(table)
    predicted, note = export.predicted_latency(table, arch)
    assert predicted == pytest.approx(0.5 * len(parts)) and note is None
    assert export.predicted_latency(None, arch) == (None, None)
    assert export.predicted_latency(table, None)[0] is None
