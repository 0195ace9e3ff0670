"""Building blocks shared by the Inception networks defined in this package.

Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", arXiv 1602.07261.
"""

from __future__ import annotations

from keras import layers


def conv_bn(x, filters, kernel, strides=1, padding="same", *, name: str):
    """Conv2D -> BatchNormalization -> ReLU, named ``{name}_conv``, ``{name}_bn``, ``name``.

    As in Keras' inception_v3 and inception_resnet_v2: the convolution has no bias (batch
    norm's offset takes its place) and batch norm has no scale (the next layer is linear up
    to the ReLU, so it absorbs a per-channel scale).
    """
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(scale=False, name=f"{name}_bn")(x)
    return layers.ReLU(name=name)(x)


def reduction_a(x, k, l, m, n, *, name: str):
    """Figure 7: 35x35 -> 17x17; the filter counts k, l, m, n differ per network (Table 1)."""
    pool = layers.MaxPooling2D(3, strides=2, padding="valid", name=f"{name}_pool")(x)
    b1 = conv_bn(x, n, 3, strides=2, padding="valid", name=f"{name}_b1")
    b2 = conv_bn(x, k, 1, name=f"{name}_b2_1")
    b2 = conv_bn(b2, l, 3, name=f"{name}_b2_2")
    b2 = conv_bn(b2, m, 3, strides=2, padding="valid", name=f"{name}_b2_3")
    return layers.Concatenate(name=name)([pool, b1, b2])
