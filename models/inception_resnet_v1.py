"""Inception-ResNet-v1, without its top, global-average pooled.

Reference: Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning", arXiv 1602.07261 (AAAI 2017), figures 7 and 10-15.

Built as the paper draws it (figure 15): stem -> 5x Inception-ResNet-A -> Reduction-A
(k, l, m, n = 192, 192, 256, 384) -> 10x Inception-ResNet-B -> Reduction-B -> strictly 5x
Inception-ResNet-C, about 22.77M parameters with a 1000-class head at 299x299. Releases such
as TF-slim's/FaceNet's add a sixth C block without activation (about 24.37M); not this one.

Each residual branch ends in a linear 1x1 convolution (with bias, no batch norm) back to the
trunk's width, is scaled by ``residual_scale`` before the addition (the paper's cure for
residual variants dying early in training; it suggests 0.1-0.3), and the sum goes through a
ReLU. Batch norm sits on the traditional layers only, not after the summations. The scaling
is a Rescaling layer, not a Lambda, so saved models load in Keras' safe mode.

Grids at 299x299 input: 35 -> 17 -> 8; at 75x75, the smallest input that fits: 7 -> 3 -> 1.
The block outputs are the layers named "stem", "reduction_a" and "reduction_b".
"""

from __future__ import annotations

import keras
from keras import layers

from models.blocks import conv_bn, reduction_a

DEFAULT_RESIDUAL_SCALE = 0.1


def stem(x):
    """Figure 14: 299x299x3 -> 35x35x256."""
    x = conv_bn(x, 32, 3, strides=2, padding="valid", name="stem_1")
    x = conv_bn(x, 32, 3, padding="valid", name="stem_2")
    x = conv_bn(x, 64, 3, name="stem_3")
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_4")(x)
    x = conv_bn(x, 80, 1, padding="valid", name="stem_5")
    x = conv_bn(x, 192, 3, padding="valid", name="stem_6")
    return conv_bn(x, 256, 3, strides=2, padding="valid", name="stem")


def _residual(x, branches, scale, name):
    """Concatenated branches -> linear 1x1 to the trunk's width -> * scale -> + x -> ReLU."""
    mixed = layers.Concatenate(name=f"{name}_mixed")(branches)
    up = layers.Conv2D(x.shape[-1], 1, name=f"{name}_up")(mixed)
    up = layers.Rescaling(scale, name=f"{name}_scale")(up)
    x = layers.Add(name=f"{name}_add")([x, up])
    return layers.ReLU(name=name)(x)


def inception_resnet_a(x, scale, name):
    """Figure 10: 35x35x256 -> 35x35x256."""
    b0 = conv_bn(x, 32, 1, name=f"{name}_b0")
    b1 = conv_bn(x, 32, 1, name=f"{name}_b1_1")
    b1 = conv_bn(b1, 32, 3, name=f"{name}_b1_2")
    b2 = conv_bn(x, 32, 1, name=f"{name}_b2_1")
    b2 = conv_bn(b2, 32, 3, name=f"{name}_b2_2")
    b2 = conv_bn(b2, 32, 3, name=f"{name}_b2_3")
    return _residual(x, [b0, b1, b2], scale, name)


def inception_resnet_b(x, scale, name):
    """Figure 11: 17x17x896 -> 17x17x896."""
    b0 = conv_bn(x, 128, 1, name=f"{name}_b0")
    b1 = conv_bn(x, 128, 1, name=f"{name}_b1_1")
    b1 = conv_bn(b1, 128, (1, 7), name=f"{name}_b1_2")
    b1 = conv_bn(b1, 128, (7, 1), name=f"{name}_b1_3")
    return _residual(x, [b0, b1], scale, name)


def reduction_b(x):
    """Figure 12: 17x17x896 -> 8x8x1792."""
    pool = layers.MaxPooling2D(3, strides=2, padding="valid", name="reduction_b_pool")(x)
    b1 = conv_bn(x, 256, 1, name="reduction_b_b1_1")
    b1 = conv_bn(b1, 384, 3, strides=2, padding="valid", name="reduction_b_b1_2")
    b2 = conv_bn(x, 256, 1, name="reduction_b_b2_1")
    b2 = conv_bn(b2, 256, 3, strides=2, padding="valid", name="reduction_b_b2_2")
    b3 = conv_bn(x, 256, 1, name="reduction_b_b3_1")
    b3 = conv_bn(b3, 256, 3, name="reduction_b_b3_2")
    b3 = conv_bn(b3, 256, 3, strides=2, padding="valid", name="reduction_b_b3_3")
    return layers.Concatenate(name="reduction_b")([pool, b1, b2, b3])


def inception_resnet_c(x, scale, name):
    """Figure 13: 8x8x1792 -> 8x8x1792."""
    b0 = conv_bn(x, 192, 1, name=f"{name}_b0")
    b1 = conv_bn(x, 192, 1, name=f"{name}_b1_1")
    b1 = conv_bn(b1, 192, (1, 3), name=f"{name}_b1_2")
    b1 = conv_bn(b1, 192, (3, 1), name=f"{name}_b1_3")
    return _residual(x, [b0, b1], scale, name)


def backbone(name: str, input_shape: tuple[int, int, int], weights: str | None, *,
             residual_scale: float | None = None) -> keras.Model:
    """Preprocessed float image -> 1792 pooled features; ``weights``: None or a weights file.

    ``residual_scale`` (default 0.1) multiplies every residual branch before its addition.
    """
    scale = DEFAULT_RESIDUAL_SCALE if residual_scale is None else residual_scale
    inputs = keras.Input(input_shape, name="input")
    x = stem(inputs)
    for i in range(1, 6):
        x = inception_resnet_a(x, scale, f"inception_resnet_a{i}")
    x = reduction_a(x, 192, 192, 256, 384, name="reduction_a")
    for i in range(1, 11):
        x = inception_resnet_b(x, scale, f"inception_resnet_b{i}")
    x = reduction_b(x)
    for i in range(1, 6):
        x = inception_resnet_c(x, scale, f"inception_resnet_c{i}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights:
        model.load_weights(weights)
    return model
