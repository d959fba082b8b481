"""Measuring real latency: convert a Keras model to TFLite and time it with the LiteRT
interpreter (`ai_edge_litert`), the runtime that ships to devices. Used by the latency tables,
the latency validation and the export reports, so all of them measure the same way."""

import contextlib
import io
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from proxyless_tf import quiet

try:
    import resource
except ImportError:  # not on Windows
    resource = None


def to_tflite(model, optimizations=(), representative_dataset=None, supported_ops=None,
              inference_input_type=None, inference_output_type=None, supported_types=None):
    """TFLite flatbuffer bytes for a Keras model (float by default; the arguments are the
    converter's settings of the same names, `export.convert` picks them per quantization mode)."""
    converter = _converter(model)
    converter.optimizations = list(optimizations)
    if supported_types is not None:
        converter.target_spec.supported_types = list(supported_types)
    if representative_dataset is not None:
        converter.representative_dataset = representative_dataset
    if supported_ops is not None:
        converter.target_spec.supported_ops = list(supported_ops)
    if inference_input_type is not None:
        converter.inference_input_type = inference_input_type
    if inference_output_type is not None:
        converter.inference_output_type = inference_output_type
    with tempfile.TemporaryDirectory() as tmp:  # keep converter scratch files out of the cwd
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            # the converter's native notes go to fd 2 (shown only if it fails)
            with contextlib.redirect_stdout(io.StringIO()), quiet.native_stderr():
                return converter.convert()
        finally:
            os.chdir(cwd)


def _converter(model):
    """A Keras 3 model is converted from its inference function, which the converter freezes
    (the weights become constants): the same flatbuffer as `from_keras_model`, which first
    exports a SavedModel, in about a quarter of the time (1.4 s against 6 s for a
    flags/mobile.cfg network here), and byte for byte the one of freezing it first ourselves,
    0.3-0.6 s sooner (2026-11-29). A tf_keras model (quantization-aware training) goes
    through `from_keras_model`."""
    import keras
    if not isinstance(model, keras.Model):
        return tf.lite.TFLiteConverter.from_keras_model(model)
    specs = [tf.TensorSpec([None] + list(t.shape[1:]), t.dtype) for t in model.inputs]
    infer = tf.function(lambda *inputs: model(inputs[0] if len(inputs) == 1 else list(inputs),
                                              training=False))
    return _quiet_converter(infer.get_concrete_function(*specs))


def _quiet_converter(function):
    """The converter of a concrete function. Without a trackable object the converter warns
    that this path is deprecated; with one it re-exports the model (as slow as
    `from_keras_model`). It freezes the function's variables either way, so the warning is
    muted here."""
    import logging
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        return tf.lite.TFLiteConverter.from_concrete_functions([function])
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def interpreter(tflite_bytes, threads=1):
    from ai_edge_litert.interpreter import Interpreter
    with quiet.native_stderr():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interp = Interpreter(model_content=tflite_bytes, num_threads=threads)
        interp.allocate_tensors()
    return interp


def _random_input(detail, rng):
    shape, dtype = detail["shape"], detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype)
    return rng.uniform(-1, 1, size=shape).astype(dtype)


def _preemptions():
    """Involuntary context switches of the calling thread so far (Linux), else None."""
    try:
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    except (AttributeError, OSError):
        return None


def latency_ms(tflite_bytes, threads=1, warmup=5, runs=30, batch=1, seed=0, clean=False):
    """Times `runs` invocations after `warmup`; returns count, mean, var, median, p90 (ms).

    clean=True (single-threaded runs on a shared machine): a run during which the calling
    thread was preempted (an involuntary context switch) is discarded and repeated, up to
    5 * runs attempts; the result then also has `preempted`, the number discarded."""
    interp = interpreter(tflite_bytes, threads)
    detail = interp.get_input_details()[0]
    if batch != detail["shape"][0]:
        interp.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], _random_input(detail, np.random.default_rng(seed)))
    for _ in range(warmup):
        interp.invoke()
    clean = clean and _preemptions() is not None
    times, dropped = [], []
    for _ in range(5 * runs if clean else runs):
        before = _preemptions() if clean else None
        start = time.perf_counter()
        interp.invoke()
        elapsed = (time.perf_counter() - start) * 1e3
        if clean and _preemptions() != before:
            dropped.append(elapsed)
        else:
            times.append(elapsed)
        if len(times) == runs:
            break
    if len(times) < max(3, runs // 5):  # hardly a clean run: keep every run rather than few
        times = times + dropped
    times = np.array(times)
    result = {"count": int(len(times)), "mean": float(times.mean()), "var": float(times.var()),
              "median": float(np.median(times)), "p90": float(np.percentile(times, 90))}
    if clean:
        result["preempted"] = len(dropped)
    return result


class OtherLoad:
    """Share of the machine's CPU time that other processes used between `start()` and
    `stop()` (Linux: /proc/stat minus this process's own CPU time); None where unreadable."""

    @staticmethod
    def _sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        own = os.times()
        ticks = os.sysconf("SC_CLK_TCK")
        return sum(values), idle, (own.user + own.system) * ticks

    def start(self):
        try:
            self._begin = self._sample()
        except (OSError, ValueError, IndexError, AttributeError):
            self._begin = None
        return self

    def stop(self):
        if self._begin is None:
            return None
        try:
            total, idle, own = self._sample()
        except (OSError, ValueError, IndexError, AttributeError):
            return None
        total0, idle0, own0 = self._begin
        if total <= total0:
            return 0.0
        busy = (total - total0) - (idle - idle0) - (own - own0)
        return min(1.0, max(0.0, busy / (total - total0)))


def other_load(window=0.5):
    """Share of the CPUs other processes keep busy over `window` seconds."""
    meter = OtherLoad().start()
    time.sleep(window)
    return meter.stop()


def wait_quiet(max_busy, timeout, window=0.5):
    """Waits (up to `timeout` seconds) until other processes keep the CPUs at most `max_busy`
    busy. Returns the last share seen (None where it cannot be read)."""
    deadline = time.time() + timeout
    while True:
        busy = other_load(window)
        if busy is None or busy <= max_busy or time.time() >= deadline:
            return busy


def run_tflite(tflite_bytes, images, threads=1):
    """Logits for a batch of float images, one invocation per image (batch-1 model)."""
    interp = interpreter(tflite_bytes, threads)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for image in images:
        x = image[None]
        if inp["dtype"] != np.float32:  # quantized input
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), np.iinfo(inp["dtype"]).min,
                        np.iinfo(inp["dtype"]).max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"])[0]
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y)
    return np.stack(results)


def tf_latency_ms(model, device="/CPU:0", warmup=5, runs=30, batch=1, seed=0):
    """Times a Keras model run by the TensorFlow runtime (a traced graph) on `device`, batch
    `batch`; the output is fetched to the host each run, which waits for the device. Returns
    count, mean, var, median, p90 (ms) like `latency_ms`."""
    shape = [batch, *model.input_shape[1:]]
    image = np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(np.float32)
    with tf.device(device):
        x = tf.constant(image)
        run = tf.function(lambda t: model(t, training=False))
        for _ in range(max(1, warmup)):  # the first call traces
            run(x).numpy()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run(x).numpy()
            times.append((time.perf_counter() - start) * 1e3)
    times = np.array(times)
    return {"count": int(runs), "mean": float(times.mean()), "var": float(times.var()),
            "median": float(np.median(times)), "p90": float(np.percentile(times, 90))}
