"""Inception-v4, without its top, global-average pooled.

Reference: Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning", arXiv 1602.07261 (AAAI 2017), figures 3-9.

Layout as in the paper and the TF-slim release: stem -> 4x Inception-A -> Reduction-A
(k, l, m, n = 192, 224, 256, 384) -> 7x Inception-B -> Reduction-B -> 3x Inception-C. Grids at
299x299 input: 35 -> 17 -> 8; at 75x75, the smallest input that fits: 7 -> 3 -> 1. The
block outputs are the layers named "stem", "reduction_a" and "reduction_b".
"""

from __future__ import annotations

import keras
from keras import layers

from models.blocks import conv_bn, reduction_a


def stem(x):
    """Figure 3: 299x299x3 -> 35x35x384."""
    x = conv_bn(x, 32, 3, strides=2, padding="valid", name="stem_1")
    x = conv_bn(x, 32, 3, padding="valid", name="stem_2")
    x = conv_bn(x, 64, 3, name="stem_3")

    pool = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_4_pool")(x)
    conv = conv_bn(x, 96, 3, strides=2, padding="valid", name="stem_4_conv")
    x = layers.Concatenate(name="stem_4")([pool, conv])

    b1 = conv_bn(x, 64, 1, name="stem_5_b1_1")
    b1 = conv_bn(b1, 96, 3, padding="valid", name="stem_5_b1_2")
    b2 = conv_bn(x, 64, 1, name="stem_5_b2_1")
    b2 = conv_bn(b2, 64, (7, 1), name="stem_5_b2_2")
    b2 = conv_bn(b2, 64, (1, 7), name="stem_5_b2_3")
    b2 = conv_bn(b2, 96, 3, padding="valid", name="stem_5_b2_4")
    x = layers.Concatenate(name="stem_5")([b1, b2])

    conv = conv_bn(x, 192, 3, strides=2, padding="valid", name="stem_6_conv")
    pool = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_6_pool")(x)
    return layers.Concatenate(name="stem")([conv, pool])


def inception_a(x, name):
    """Figure 4: 35x35x384 -> 35x35x384."""
    b0 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_b0_pool")(x)
    b0 = conv_bn(b0, 96, 1, name=f"{name}_b0")
    b1 = conv_bn(x, 96, 1, name=f"{name}_b1")
    b2 = conv_bn(x, 64, 1, name=f"{name}_b2_1")
    b2 = conv_bn(b2, 96, 3, name=f"{name}_b2_2")
    b3 = conv_bn(x, 64, 1, name=f"{name}_b3_1")
    b3 = conv_bn(b3, 96, 3, name=f"{name}_b3_2")
    b3 = conv_bn(b3, 96, 3, name=f"{name}_b3_3")
    return layers.Concatenate(name=name)([b0, b1, b2, b3])


def inception_b(x, name):
    """Figure 5: 17x17x1024 -> 17x17x1024."""
    b0 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_b0_pool")(x)
    b0 = conv_bn(b0, 128, 1, name=f"{name}_b0")
    b1 = conv_bn(x, 384, 1, name=f"{name}_b1")
    b2 = conv_bn(x, 192, 1, name=f"{name}_b2_1")
    b2 = conv_bn(b2, 224, (1, 7), name=f"{name}_b2_2")
    b2 = conv_bn(b2, 256, (7, 1), name=f"{name}_b2_3")
    b3 = conv_bn(x, 192, 1, name=f"{name}_b3_1")
    b3 = conv_bn(b3, 192, (1, 7), name=f"{name}_b3_2")
    b3 = conv_bn(b3, 224, (7, 1), name=f"{name}_b3_3")
    b3 = conv_bn(b3, 224, (1, 7), name=f"{name}_b3_4")
    b3 = conv_bn(b3, 256, (7, 1), name=f"{name}_b3_5")
    return layers.Concatenate(name=name)([b0, b1, b2, b3])


def reduction_b(x):
    """Figure 8: 17x17x1024 -> 8x8x1536."""
    pool = layers.MaxPooling2D(3, strides=2, padding="valid", name="reduction_b_pool")(x)
    b1 = conv_bn(x, 192, 1, name="reduction_b_b1_1")
    b1 = conv_bn(b1, 192, 3, strides=2, padding="valid", name="reduction_b_b1_2")
    b2 = conv_bn(x, 256, 1, name="reduction_b_b2_1")
    b2 = conv_bn(b2, 256, (1, 7), name="reduction_b_b2_2")
    b2 = conv_bn(b2, 320, (7, 1), name="reduction_b_b2_3")
    b2 = conv_bn(b2, 320, 3, strides=2, padding="valid", name="reduction_b_b2_4")
    return layers.Concatenate(name="reduction_b")([pool, b1, b2])


def inception_c(x, name):
    """Figure 6: 8x8x1536 -> 8x8x1536; the last two convolutions of branches 2 and 3 fork."""
    b0 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_b0_pool")(x)
    b0 = conv_bn(b0, 256, 1, name=f"{name}_b0")
    b1 = conv_bn(x, 256, 1, name=f"{name}_b1")
    b2 = conv_bn(x, 384, 1, name=f"{name}_b2_1")
    b2 = layers.Concatenate(name=f"{name}_b2")([
        conv_bn(b2, 256, (1, 3), name=f"{name}_b2_2a"),
        conv_bn(b2, 256, (3, 1), name=f"{name}_b2_2b")])
    b3 = conv_bn(x, 384, 1, name=f"{name}_b3_1")
    b3 = conv_bn(b3, 448, (1, 3), name=f"{name}_b3_2")
    b3 = conv_bn(b3, 512, (3, 1), name=f"{name}_b3_3")
    b3 = layers.Concatenate(name=f"{name}_b3")([
        conv_bn(b3, 256, (3, 1), name=f"{name}_b3_4a"),
        conv_bn(b3, 256, (1, 3), name=f"{name}_b3_4b")])
    return layers.Concatenate(name=name)([b0, b1, b2, b3])


def backbone(name: str, input_shape: tuple[int, int, int], weights: str | None, *,
             residual_scale: float | None = None) -> keras.Model:
    """Preprocessed float image -> 1536 pooled features; ``weights``: None or a weights file."""
    if residual_scale is not None:
        raise ValueError(f"{name} has no residual connections to scale")
    inputs = keras.Input(input_shape, name="input")
    x = stem(inputs)
    for i in range(1, 5):
        x = inception_a(x, f"inception_a{i}")
    x = reduction_a(x, 192, 224, 256, 384, name="reduction_a")
    for i in range(1, 8):
        x = inception_b(x, f"inception_b{i}")
    x = reduction_b(x)
    for i in range(1, 4):
        x = inception_c(x, f"inception_c{i}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights:
        model.load_weights(weights)
    return model
