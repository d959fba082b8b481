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


def to_tflite(model, optimizations=(), representative_dataset=None, supported_ops=None,
              inference_input_type=None, inference_output_type=None):
    """TFLite flatbuffer bytes for a Keras 3 model (float by default)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = list(optimizations)
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
            with contextlib.redirect_stdout(io.StringIO()):  # Keras' export prints every capture
                return converter.convert()
        finally:
            os.chdir(cwd)


def interpreter(tflite_bytes, threads=1):
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=tflite_bytes, num_threads=threads)
    interp.allocate_tensors()
    return interp


def _random_input(detail, rng):
    shape, dtype = detail["shape"], detail["dtype"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype)
    return rng.uniform(-1, 1, size=shape).astype(dtype)


def latency_ms(tflite_bytes, threads=1, warmup=5, runs=30, batch=1, seed=0):
    """Times `runs` invocations after `warmup`; returns count, mean, var, median, p90 (ms)."""
    interp = interpreter(tflite_bytes, threads)
    detail = interp.get_input_details()[0]
    if batch != detail["shape"][0]:
        interp.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], _random_input(detail, np.random.default_rng(seed)))
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - start) * 1e3)
    times = np.array(times)
    return {"count": int(runs), "mean": float(times.mean()), "var": float(times.var()),
            "median": float(np.median(times)), "p90": float(np.percentile(times, 90))}


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
