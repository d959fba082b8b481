"""The one block builder. The supernet's candidate paths and every standalone network are made
by these functions, so a derived network is the supernet with its choices fixed, layer for layer
(same layer names, same weight shapes). What each candidate op's layers are is said by its kind
(`proxyless_tf.ops`); this module puts them in blocks and blocks in networks.

Every builder takes the Keras module to build with: `keras` (Keras 3, the default everywhere) or
`tf_keras` (Keras 2, only for quantization-aware training with tfmot; see BUILD.md). Only stock
layers are used, so networks convert to TFLite and quantize without custom code.
"""

import keras

from proxyless_tf import architecture, layers
from proxyless_tf.ops import keeps_shortcut, parse_op


def op_layer_prefix(block_index, op_name):
    return f"block{block_index}_{op_name}"


def block(K, x, index, op_name, out_channels, stride, act="relu6"):
    """One backbone block with its op fixed: the op's layers, plus the identity shortcut where
    the block keeps one. An op with no layers here (`zero`, `identity` at such a block) is the
    identity."""
    in_channels = x.shape[-1]
    op = parse_op(op_name)
    if not op.has_layers(stride, in_channels, out_channels):
        return x
    y = op.build(K, x, out_channels, stride, op_layer_prefix(index, op_name), act)
    if keeps_shortcut(stride, in_channels, out_channels):
        y = K.layers.Add(name=f"block{index}_add")([x, y])
    return y


def stem(K, x, channels, stride, act="relu6"):
    return layers.conv_bn(K, x, channels, 3, stride, "stem", act)


def head_conv(K, x, channels, act="relu6"):
    return layers.conv_bn(K, x, channels, 1, 1, "head", act)


def classifier(K, x, num_classes, dropout=0.0):
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout > 0:
        x = K.layers.Dropout(dropout, name="dropout")(x)
    return K.layers.Dense(num_classes, name="classifier")(x)  # logits


def head(K, x, channels, num_classes, dropout, act="relu6"):
    return classifier(K, head_conv(K, x, channels, act), num_classes, dropout)


def build_network(arch, K=keras):
    """A standalone Keras model (logits out) for an `Architecture`."""
    inputs = K.Input((arch.input_size, arch.input_size, 3), name="image")
    x = stem(K, inputs, arch.stem_channels, arch.stem_stride, arch.activation)
    for i, b in enumerate(arch.blocks):
        x = block(K, x, i, b.op, b.out_channels, b.stride, arch.activation)
    outputs = head(K, x, arch.head_channels, arch.num_classes, arch.dropout, arch.activation)
    return K.Model(inputs, outputs, name=architecture.keras_name(arch.name))


def build_path(K, op_name, index, input_size, in_channels, out_channels, stride, act="relu6"):
    """One candidate path of a supernet block, as a small model (None where the op has no
    layers: the block's shortcut carries its input)."""
    op = parse_op(op_name)
    if not op.has_layers(stride, in_channels, out_channels):
        return None
    inputs = K.Input((input_size, input_size, in_channels))
    outputs = op.build(K, inputs, out_channels, stride, op_layer_prefix(index, op_name), act)
    return K.Model(inputs, outputs, name=op_layer_prefix(index, op_name))


def count_params(model):
    """Trainable parameters, which is what published parameter counts report."""
    return int(sum(keras.ops.size(v) for v in model.trainable_weights))


def count_macs(model):
    """Multiply-accumulates of one image through the Keras model, from its layers: a conv or
    depthwise conv costs (output pixels) x (its kernel's size), a dense layer its kernel's size
    (batch norm folds into the convs at export; biases, ReLU, add and pooling are not counted,
    as published MAC counts do)."""
    import numpy as np
    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            height, width = layer.output.shape[1:3]
            total += int(height) * int(width) * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total
