"""Keras model -> TFLite flatbuffer, one function per quantization mode.

Every mode goes through `proxyless_tf.measure.to_tflite`, the latency tables' converter, so a
float32 export is converted exactly as the table's parts were.
"""

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
    from proxyless_tf.measure import to_tflite

    if mode == "none":
        return to_tflite(model)
    if mode == "float16":
        return to_tflite(model, [tf.lite.Optimize.DEFAULT], supported_types=[tf.float16])
    if mode == "dynamic":
        return to_tflite(model, [tf.lite.Optimize.DEFAULT])
    if mode not in ("int8", "qat"):
        raise ValueError(f"unknown conversion mode {mode!r}")
    # The converter insists on a representative dataset for full-integer output even for a QAT
    # model, whose ranges come from its fake-quant layers.
    if representative is None:
        raise ValueError("int8 conversion needs a representative dataset")
    io_type = tf.int8 if int8_io else None
    return to_tflite(model, [tf.lite.Optimize.DEFAULT], representative,
                     [tf.lite.OpsSet.TFLITE_BUILTINS_INT8], io_type, io_type)
