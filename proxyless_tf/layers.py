"""The stock layers every op and block is made of: a bias-free convolution with batch norm and
an optional activation. One place for the conventions (initialiser, batch-norm momentum, the
activation a space chooses), so that ops of every kind follow them alike.

Every function takes the Keras module to build with (`keras` or, for quantization-aware
training, `tf_keras`; see BUILD.md)."""

BN_MOMENTUM = 0.9  # PyTorch's 0.1
BN_EPSILON = 1e-3
ACTIVATIONS = ("relu6", "relu")  # MobileNetV2 and ProxylessNAS use ReLU6; NAS-Bench-Macro ReLU


def check_activation(name, source="activation"):
    from proxyless_tf.errors import UsageError
    if name not in ACTIVATIONS:
        raise UsageError(f"{source}={name!r}: use one of {', '.join(ACTIVATIONS)}")


def conv_init(K):
    # He-normal on fan_out, as in the official ProxylessNAS / MobileNetV2 code.
    return K.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal")


def activation(K, x, kind, name):
    """ReLU6 or ReLU, as a stock layer (both convert to TFLite and quantize as they are)."""
    return K.layers.ReLU(6.0 if kind == "relu6" else None, name=name)(x)


def batch_norm(K, x, name):
    return K.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def conv_bn(K, x, filters, kernel, stride, name, act="relu6"):
    """Conv (no bias), batch norm, then `act` ("relu6", "relu", or None for a linear output)."""
    x = K.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                        kernel_initializer=conv_init(K), name=f"{name}_conv")(x)
    x = batch_norm(K, x, f"{name}_bn")
    return activation(K, x, act, f"{name}_relu") if act else x
