"""Keras model -> TFLite flatbuffer, one function per quantization mode.

The conversion mirrors `proxyless_tf.measure.to_tflite` (the latency tables' converter) and adds
the modes it does not need: float16 weights, and the QAT path for tf_keras models.
"""

import contextlib
import io
import os
import tempfile

MODES = ("none", "float16", "dynamic", "int8")


def representative_images(dataset, count):
    """A representative_dataset for the converter: `count` single images (batch 1, float32)
    from `dataset`, a batched (images, labels) pipeline. Materialised once, so every call of the
    generator sees the same images."""
    images = []
    for batch, _ in dataset:
        for image in batch.numpy():
            images.append(image[None])
            if len(images) >= count:
                break
        if len(images) >= count:
            break

    def generate():
        for image in images:
            yield [image]

    return generate


def convert(model, mode, representative=None, int8_io=False):
    """TFLite bytes for a Keras 3 model, or for a tfmot QAT model (tf_keras) with mode 'qat'.

    none: float32; float16: float16 weights (computed in float32 on CPU); dynamic: int8 weights,
    float activations quantized on the fly; int8: full integer, activations calibrated on
    `representative`; qat: full integer from the fake-quant ranges learned in training.
    `int8_io` makes the model's input and output int8 too (int8 and qat only)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "none":
        pass
    elif mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in ("int8", "qat"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # The converter insists on a representative dataset for full-integer output even for a
        # QAT model, whose ranges come from its fake-quant layers.
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset")
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    else:
        raise ValueError(f"unknown conversion mode {mode!r}")
    with tempfile.TemporaryDirectory() as tmp:  # keep converter scratch files out of the cwd
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # Keras' export prints every capture
                return converter.convert()
        finally:
            os.chdir(cwd)
