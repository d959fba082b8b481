"""Keras model -> TFLite flatbuffer in one of the shipped formats: the one conversion that both
the export (`export.convert`, calibrated on held-out images) and the latency tables
(`latency.meter.Meter.prepare`, calibrated on random inputs of the model's shape) use, so a
table's int8 parts are converted exactly as the int8 file that ships.

    none     float32
    float16  float16 weights (computed in float32 on CPU)
    dynamic  int8 weights, float activations quantized on the fly
    int8     full integer, activations calibrated on a representative dataset
    qat      full integer from the fake-quant ranges of quantization-aware training (export)

MODES is the one list of the formats (the --quantize and --latency_quantization flags, the
export's settings, the meters, `latency compare`); `kind` names one to a user. Importing this
module loads neither NumPy nor TensorFlow (options.py takes MODES from it); `check_mode` is the
one check that a format is one of them.
"""

from proxyless_tf.errors import UsageError

MODES = ("none", "float16", "dynamic", "int8")
CALIBRATION_SAMPLES = 8  # random inputs that calibrate a timed model's int8 activations


def check_mode(mode, setting):
    """A one-line UsageError unless `mode` is one of MODES; `setting` is how the user set it (a
    flag, "--quantize", or a keyword of the Python API, "quantization")."""
    if mode not in MODES:
        raise UsageError(f"{setting}={mode!r}: use one of {', '.join(MODES)}")


def kind(mode):
    """What a file of `mode` holds, in words: float32 (mode none), float16, dynamic or int8."""
    return "float32" if mode == "none" else mode


def convert(model, mode, representative=None, int8_io=False):
    """TFLite bytes for a Keras 3 model, or for a tfmot QAT model (tf_keras) with mode 'qat'.

    `representative`: the converter's representative_dataset (int8 and qat; see
    `random_representative`). `int8_io` makes the model's input and output int8 too (int8 and
    qat only)."""
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


def random_representative(model, count=CALIBRATION_SAMPLES, seed=0):
    """A representative_dataset of `count` random inputs of `model`'s input shape (batch 1,
    uniform in [-1, 1] like the inputs the timing feeds, `measure.latency_ms`): what calibrates
    a model that is only timed, never evaluated."""
    import numpy as np
    shape = [1] + [int(d) for d in model.inputs[0].shape[1:]]
    rng = np.random.default_rng(seed)
    samples = [rng.uniform(-1, 1, size=shape).astype(np.float32) for _ in range(count)]

    def generate():
        for sample in samples:
            yield [sample]

    return generate


def convert_for_timing(model, mode, interior=False):
    """`model` converted as `mode` ships, calibrated on random inputs: what a latency table
    times. `interior`: a part of a network (a block), whose int8 input and output stay int8
    inside the network, so it is timed without the float<->int8 conversions at its ends (the
    whole network keeps them once, as the export converts it)."""
    representative = random_representative(model) if mode == "int8" else None
    return convert(model, mode, representative, int8_io=interior and mode == "int8")
