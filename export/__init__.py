"""TFLite export with a validation report: `python -m export --model=DIR/model.keras
--output=net.tflite --quantize=none|float16|dynamic|int8 [--qat_epochs=N]`, or `--arch=...`
for a network with random weights (to measure a candidate before training it).

Python API (used by `proxyless_tf.train --export_tflite`, and open to the search):

    import export
    settings = export.ExportSettings(quantize="int8")
    report = export.export_model(keras_model, "net.tflite", settings, splits=splits, arch=arch)

writes net.tflite, net.report.json and net.report.md and returns the report dict. This module
imports nothing heavy, so command-line mistakes are reported before TensorFlow loads.
"""

import dataclasses
import functools
import os

from proxyless_tf.errors import UsageError
from proxyless_tf.quantize import check_mode, kind


@dataclasses.dataclass
class ExportSettings:
    quantize: str = "none"        # one of MODES
    qat_epochs: int = 0           # > 0: QAT with tfmot, then an int8 conversion
    qat_steps_per_epoch: int = 0  # 0: one pass over the training split
    qat_lr: float = 1e-3
    int8_io: bool = False         # int8 input/output tensors (int8 modes only)
    calibration_images: int = 256
    report_images: int = 10000    # 0: the whole test split
    threads: int = 1
    latency_runs: int = 50
    latency_warmup: int = 10
    latency_table: str = None     # its format is the target's (`latency_quantization`)
    target_ms: float = None       # the search's latency target: the report says how far off
    target_ratio: float = None    # ... as a ratio of target_reference (an Architecture), which
    target_reference: object = None  # the report times in turn with the network
    batch_size: int = 64
    label_smoothing: float = 0.1
    momentum: float = 0.9
    verbose: int = 1

    def __post_init__(self):
        check_mode(self.quantize, "--quantize")
        if self.qat_epochs < 0 or self.qat_steps_per_epoch < 0:
            raise UsageError("--qat_epochs and --qat_steps_per_epoch must not be negative")
        if self.qat_epochs and self.quantize != "int8":
            raise UsageError(f"--qat_epochs needs --quantize=int8 (QAT ends in an int8 "
                             f"conversion), got --quantize={self.quantize}")
        if self.int8_io and self.quantize != "int8":
            raise UsageError("--int8_io needs --quantize=int8")
        for name in ("calibration_images", "threads", "latency_runs", "batch_size", "qat_lr"):
            if getattr(self, name) <= 0:
                flag = {"threads": "export_threads", "latency_runs": "export_latency_runs"}.get(
                    name, name)
                raise UsageError(f"--{flag} must be positive, got {getattr(self, name)}")
        if self.report_images < 0 or self.latency_warmup < 0:
            raise UsageError("--report_images and --export_latency_warmup must not be negative")

    @property
    def kind(self):
        """What the file holds: float32, float16, dynamic, int8 or int8_qat."""
        if self.qat_epochs:
            return "int8_qat"
        return kind(self.quantize)

    @functools.cached_property
    def latency_quantization(self):
        """The TFLite format the latency table, and so the search's target, is of: the one the
        table records (`LatencyTable.quantization`), never a setting that could disagree with
        it; float32 ("none") without a table. Read once per settings (`dataclasses.replace`
        makes new ones)."""
        if not self.latency_table:
            return "none"
        from proxyless_tf.latency.table import LatencyTable
        return LatencyTable.load(self.latency_table).quantization


def _flag(flags, name):
    """A flag another section defines (the latency measurement's), None where it is absent."""
    return flags[name].value if name in flags else None


def _first(explicit, shared, default, minimum=1):
    if explicit is not None:
        return explicit
    return shared if shared is not None and shared >= minimum else default


def settings_from_flags(require_table=False):
    """The ExportSettings of the flags; --latency_table=auto resolved to this machine's table
    for the flags' space and --latency_quantization. `require_table`: the table must be there
    now (train --export_tflite and the export read it after their work: a missing one fails
    here, before it; the search builds its table first, and reports against that one)."""
    from proxyless_tf import options
    flags = options.FLAGS
    quantize = flags.quantize
    if flags.qat_epochs > 0 and not flags["quantize"].present:
        quantize = "int8"  # --qat_epochs=N alone means QAT then int8
    target_ratio, target_reference = _ratio_target()
    return ExportSettings(
        target_ratio=target_ratio, target_reference=target_reference,
        quantize=quantize, qat_epochs=flags.qat_epochs,
        qat_steps_per_epoch=flags.qat_steps_per_epoch, qat_lr=flags.qat_lr,
        int8_io=flags.int8_io, calibration_images=flags.calibration_images,
        report_images=flags.report_images,
        threads=_first(flags.export_threads, _flag(flags, "latency_threads"), 1),
        latency_runs=_first(flags.export_latency_runs, _flag(flags, "latency_runs"), 50),
        latency_warmup=_first(flags.export_latency_warmup, _flag(flags, "latency_warmup"), 10, 0),
        latency_table=_latency_table(require_table),
        batch_size=flags.batch_size,
        label_smoothing=flags.label_smoothing, momentum=flags.momentum)


def _latency_table(require):
    """--latency_table as a file (None without one): `auto` is the table built on this machine
    (`latency.table_path`); with `require`, a table that is missing or unreadable is a one-line
    UsageError now."""
    from proxyless_tf import options
    spec = _flag(options.FLAGS, "latency_table")
    if not spec:
        return None
    from proxyless_tf import latency
    path = spec
    if spec == latency.AUTO:
        from proxyless_tf.flag_configs import latency_config_from_flags
        config = latency_config_from_flags()
        path = latency.table_path(options.space_from_flags(), config.meter(), config)
        if require and not os.path.exists(path):
            raise UsageError(f"--latency_table=auto: this machine has no "
                             f"{kind(config.quantization)} table for the space yet ({path}); "
                             f"build it first with `python -m proxyless_tf.latency build` and "
                             f"the same flags, --output={path}")
    if require:
        latency.LatencyTable.load(path)  # missing or not a table: an error before the work
    return path


def _ratio_target():
    """(--target_ratio, the Architecture of --target_reference) as the search resolves them,
    or (None, None) without a ratio target (a later --target_ms replaces a flagfile's ratio)."""
    from proxyless_tf import options
    if "target_ratio" not in options.FLAGS:
        return None, None
    from proxyless_tf.latency.parts import resolve_arch
    from proxyless_tf.flag_configs import target_flags
    ratio = target_flags()[1]
    if ratio is None:
        return None, None
    return ratio, resolve_arch(options.FLAGS.target_reference, options.space_from_flags(),
                               "--target_reference")


def default_output(model_path, settings):
    """DIR/model.keras -> DIR/model.KIND.tflite"""
    root = os.path.splitext(model_path)[0]
    return f"{root}.{settings.kind}.tflite"


def report_paths(output):
    root = output[:-len(".tflite")] if output.endswith(".tflite") else output
    return f"{root}.report.json", f"{root}.report.md"


def predicted_latency(table, arch, quantize="none"):
    """(ms or None, note) from a latency table (proxyless_tf.latency, when it is installed);
    none, with a note, from a table timed in another format than the file's (`quantize`)."""
    if not table:
        return None, None
    if arch is None:
        return None, "no architecture to look up (the model has no arch.json next to it)"
    try:
        from proxyless_tf import latency
    except ImportError:
        return None, "proxyless_tf.latency is not available"
    loaded = latency.LatencyTable.load(table)
    if loaded.quantization != quantize:
        return None, (f"table {table} holds {loaded.quantization} latencies, the file is "
                      f"--quantize={quantize} (a table for it: --latency_quantization={quantize})")
    return float(loaded.predict(arch)), None


def export_model(model, output, settings, splits, arch=None, source=None, weights="trained",
                 dataset=None, labelled=None, search=None):
    """Converts the Keras 3 `model` to `output` (.tflite) as `settings` say and writes its
    validation report next to it. `splits` (a data.Splits at the model's input size) gives the
    calibration images (its held-out split), the QAT training data and the test images; `arch`
    is needed for QAT and for the latency prediction. `labelled`: whether the test labels are the
    model's classes (default: when the numbers of classes agree). `search`: what the search
    that derived the network measured (its `results.json`), kept in the report. Returns the
    report."""
    import numpy as np

    from export import convert, qat, report as report_lib
    from proxyless_tf import blocks, io_utils, measure

    log = print if settings.verbose else (lambda *a, **k: None)
    predicted, note = predicted_latency(settings.latency_table, arch,  # fail before the work
                                        settings.quantize)
    io_utils.ensure_writable_dir(os.path.dirname(os.path.abspath(output)), "--output")
    num_classes = int(model.outputs[0].shape[-1])
    if labelled is None:
        labelled = splits.num_classes == num_classes
    others, qat_info = {}, None
    if settings.qat_epochs:
        if arch is None:
            raise UsageError("QAT rebuilds the network with tf_keras and needs its architecture: "
                             "pass --arch (or keep arch.json next to --model)")
        if splits.num_classes != num_classes:
            raise UsageError(f"QAT trains on the dataset, which has {splits.num_classes} classes "
                             f"while the model has {num_classes}")
        check = next(iter(splits.test))[0].numpy()[:8]
        log(f"QAT: {settings.qat_epochs} epochs of quantization-aware training")
        qat_model = qat.quantize_aware(model, arch, check_images=check)
        history = qat.fine_tune(qat_model, splits, settings.qat_epochs,
                                settings.qat_steps_per_epoch, settings.qat_lr, settings.batch_size,
                                settings.label_smoothing, settings.momentum, settings.verbose)
        qat_info = {"epochs": settings.qat_epochs, "steps_per_epoch": settings.qat_steps_per_epoch,
                    "lr": settings.qat_lr, "history": history,
                    "quantized_layers": sum(1 for layer in qat_model.layers
                                            if type(layer).__name__ == "QuantizeWrapperV2")}
        others["qat_keras"] = qat_model
        representative = convert.representative_images(splits.valid, settings.calibration_images)
        tflite = convert.convert(qat_model, "qat", representative, settings.int8_io)
    else:
        representative = None
        if settings.quantize == "int8":
            representative = convert.representative_images(splits.valid,
                                                            settings.calibration_images)
        tflite = convert.convert(model, settings.quantize, representative, settings.int8_io)
    with io_utils.atomic_path(output) as tmp:
        with open(tmp, "wb") as f:
            f.write(tflite)
    log(f"wrote {output} ({len(tflite) / 1024:.1f} KiB, {settings.kind}); validating")

    info = report_lib.inspect(tflite)
    validation = report_lib.evaluate(model, tflite, splits.test, settings.report_images, others,
                                     labelled=labelled)
    timing = measure.latency_ms(tflite, threads=settings.threads, warmup=settings.latency_warmup,
                                runs=settings.latency_runs)
    ratio = report_lib.reference_ratio(tflite, settings)
    target_ms, target_note = settings.target_ms, None
    target_format = settings.latency_quantization  # the table's
    if target_ms is not None and settings.quantize != target_format:
        # as the ratio (report_lib.reference_ratio): a target is of one format's latency
        target_ms, target_note = None, (
            f"the target {settings.target_ms:.3f} ms is a {kind(target_format)} latency "
            f"(--latency_quantization={target_format}), the file is "
            f"{kind(settings.quantize)}: not compared")
    report = {
        "format": report_lib.FORMAT, "tflite": output, "source": source or "keras model",
        "weights": weights, "arch": arch.name if arch else None,
        "params": blocks.count_params(model),
        "ops": arch.ops if arch else None, "mode": settings.kind, "quantize": settings.quantize,
        "int8_io": settings.int8_io, "dataset": dataset, "tflite_info": info,
        "validation": validation,
        "latency": {"threads": settings.threads, "batch": 1, "runs": timing["count"],
                    "warmup": settings.latency_warmup, "median_ms": timing["median"],
                    "p90_ms": timing["p90"], "mean_ms": timing["mean"],
                    "std_ms": float(np.sqrt(timing["var"])), "predicted_ms": predicted,
                    "predicted_note": note, "table": settings.latency_table,
                    "target_ms": target_ms, "target_note": target_note,
                    "misses": report_lib.latency_misses(timing["median"], target_ms, predicted),
                    "ratio": ratio},
    }
    if qat_info:
        report["qat"] = qat_info
    if search:
        report["search"] = search
    json_path, md_path = report_paths(output)
    report_lib.write(report, json_path, md_path)
    summary = (f"max |logits diff| {validation['max_abs_logits_diff']:.3g}, top-1 agreement "
               f"{100 * validation['top1_agreement']:.2f}% over {validation['images']} images")
    if labelled:
        summary += (f"; accuracy Keras {100 * validation['keras_accuracy']:.2f}% / TFLite "
                    f"{100 * validation['tflite_accuracy']:.2f}%")
    log(summary)
    log(f"latency median {timing['median']:.3f} ms, p90 {timing['p90']:.3f} ms "
        f"({settings.threads} thread(s), batch 1)"
        + (f"; predicted {predicted:.3f} ms" if predicted is not None else "")
        + (f"; target {target_ms:.3f} ms" if target_ms is not None else ""))
    if target_note:
        log(f"note: {target_note}")
    if ratio:
        log(f"latency / reference {ratio['reference']}: {ratio['measured_ratio']:.3f} "
            f"(target ratio {ratio['target_ratio']:.3f}; {ratio['rounds']} rounds in turn)")
    for miss in report["latency"]["misses"] + (ratio["misses"] if ratio else []):
        log(f"MISS: {miss}")
    log(f"wrote {json_path} and {md_path}")
    return report
