"""Keras model -> TFLite flatbuffer in each quantization mode: `convert` is
`proxyless_tf.quantize.convert`, the function the latency tables convert their parts and
networks with too (`latency.meter.Meter.prepare`), so an exported file of any mode is converted
exactly as the table's parts of that mode were; the export calibrates int8 on held-out images
(`representative_images`), the tables on random inputs.
"""

from proxyless_tf.quantize import MODES, convert  # noqa: F401 (the export's API)


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
