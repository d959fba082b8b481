"""The one block builder. The supernet's candidate paths and every standalone network are made
by these functions, so a derived network is the supernet with its choices fixed, layer for layer
(same layer names, same weight shapes).

Every builder takes the Keras module to build with: `keras` (Keras 3, the default everywhere) or
`tf_keras` (Keras 2, only for quantization-aware training with tfmot; see BUILD.md). Only stock
layers are used, so networks convert to TFLite and quantize without custom code.
"""

import keras

from proxyless_tf import architecture
from proxyless_tf.search_space import ZERO, parse_op

BN_MOMENTUM = 0.9  # PyTorch's 0.1
BN_EPSILON = 1e-3


def _conv_init(K):
    # He-normal on fan_out, as in the official ProxylessNAS / MobileNetV2 code.
    return K.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal")


def conv_bn(K, x, filters, kernel, stride, name, activation=True):
    x = K.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                        kernel_initializer=_conv_init(K), name=f"{name}_conv")(x)
    x = K.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if activation:
        x = K.layers.ReLU(6.0, name=f"{name}_relu")(x)
    return x


def mbconv(K, x, op_name, out_channels, stride, name):
    """Mobile inverted bottleneck: 1x1 expand, kxk depthwise, 1x1 linear projection.
    The shortcut is not part of the op: the block adds it (see `block`)."""
    op = parse_op(op_name)
    if op.expand != 1:
        x = conv_bn(K, x, hidden_channels(x.shape[-1], op), 1, 1, f"{name}_expand")
    x = K.layers.DepthwiseConv2D(op.kernel, stride, padding="same", use_bias=False,
                                 depthwise_initializer=_conv_init(K), name=f"{name}_dw_conv")(x)
    x = K.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
    x = K.layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    return conv_bn(K, x, out_channels, 1, 1, f"{name}_project", activation=False)


def hidden_channels(in_channels, op):
    """The width of an MBConv's depthwise stage: the input widened by the op's expand ratio."""
    return in_channels * op.expand


def mbconv_folded_weights(in_channels, op_name, out_channels):
    """How many numbers `mbconv` reads per inference once batch norm is folded into its
    convolutions (as the TFLite converter does): each kernel plus one bias per output channel."""
    op = parse_op(op_name)
    hidden = hidden_channels(in_channels, op)
    expand = in_channels * hidden + hidden if op.expand != 1 else 0
    return expand + op.kernel ** 2 * hidden + hidden + hidden * out_channels + out_channels


def op_layer_prefix(block_index, op_name):
    return f"block{block_index}_{op_name}"


def block(K, x, index, op_name, out_channels, stride):
    """One backbone block with its op fixed: `zero` is the identity, an MBConv op gets the
    identity shortcut added when the shapes allow it."""
    has_shortcut = stride == 1 and x.shape[-1] == out_channels
    if op_name == ZERO:
        return x
    y = mbconv(K, x, op_name, out_channels, stride, op_layer_prefix(index, op_name))
    if has_shortcut:
        y = K.layers.Add(name=f"block{index}_add")([x, y])
    return y


def stem(K, x, channels, stride):
    return conv_bn(K, x, channels, 3, stride, "stem")


def head(K, x, channels, num_classes, dropout):
    x = conv_bn(K, x, channels, 1, 1, "head")
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout > 0:
        x = K.layers.Dropout(dropout, name="dropout")(x)
    return K.layers.Dense(num_classes, name="classifier")(x)  # logits


def build_network(arch, K=keras):
    """A standalone Keras model (logits out) for an `Architecture`."""
    inputs = K.Input((arch.input_size, arch.input_size, 3), name="image")
    x = stem(K, inputs, arch.stem_channels, arch.stem_stride)
    for i, b in enumerate(arch.blocks):
        x = block(K, x, i, b.op, b.out_channels, b.stride)
    outputs = head(K, x, arch.head_channels, arch.num_classes, arch.dropout)
    return K.Model(inputs, outputs, name=architecture.keras_name(arch.name))


def build_path(K, op_name, index, input_size, in_channels, out_channels, stride):
    """One candidate path of a supernet block, as a small model (None for `zero`)."""
    if op_name == ZERO:
        return None
    inputs = K.Input((input_size, input_size, in_channels))
    outputs = mbconv(K, inputs, op_name, out_channels, stride, op_layer_prefix(index, op_name))
    return K.Model(inputs, outputs, name=op_layer_prefix(index, op_name))


def count_params(model):
    """Trainable parameters, which is what published parameter counts report."""
    return int(sum(keras.ops.size(v) for v in model.trainable_weights))
