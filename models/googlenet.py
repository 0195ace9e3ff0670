"""GoogLeNet (Inception-v1), without its top, plus its two auxiliary classifiers.

Reference: Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke, Rabinovich, "Going
Deeper with Convolutions", arXiv 1409.4842 (CVPR 2015), table 1 and figures 2(b) and 3.

Filter counts, 5x5 branches and auxiliary heads are the paper's. One deliberate change: every
convolution is conv -> batch norm -> ReLU, as in BN-Inception (Ioffe and Szegedy, arXiv
1502.03167), instead of plain conv + ReLU with local response normalization: this pipeline
trains from scratch for few steps, and that paper reached GoogLeNet's accuracy with batch norm
in 14x fewer steps; it also matches the other networks here. The main head's dropout (0.4 in
the paper) is the classifier's ``model.dropout``.

Max pools use "same" padding, which reproduces the paper's grids (224 -> 112 -> 56 -> 28 ->
14 -> 7; Caffe pools with ceil rounding). The auxiliary heads pool 5x5 with stride 3, valid,
on the grid of inception 4a/4d, which is ceil(input / 16): at 75x75 input that grid is
exactly 5 (-> 1x1), so the pool needs no adapting there, and 65x65 is the smallest input the
heads accept.
"""

from __future__ import annotations

import keras
from keras import layers

from models.blocks import conv_bn


def stem(x):
    """Table 1 up to inception 3a: 224x224x3 -> 28x28x192."""
    x = conv_bn(x, 64, 7, strides=2, name="conv1")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = conv_bn(x, 64, 1, name="conv2_reduce")
    x = conv_bn(x, 192, 3, name="conv2")
    return layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)


def inception(x, filters_1x1, reduce_3x3, filters_3x3, reduce_5x5, filters_5x5, pool_proj, name):
    """Figure 2(b), the Inception module with dimension reductions (filter counts: table 1)."""
    b0 = conv_bn(x, filters_1x1, 1, name=f"{name}_1x1")
    b1 = conv_bn(x, reduce_3x3, 1, name=f"{name}_3x3_reduce")
    b1 = conv_bn(b1, filters_3x3, 3, name=f"{name}_3x3")
    b2 = conv_bn(x, reduce_5x5, 1, name=f"{name}_5x5_reduce")
    b2 = conv_bn(b2, filters_5x5, 5, name=f"{name}_5x5")
    b3 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b3 = conv_bn(b3, pool_proj, 1, name=f"{name}_pool_proj")
    return layers.Concatenate(name=name)([b0, b1, b2, b3])


def aux_head(x, num_classes: int, name: str, seed: int):
    """Section 5's auxiliary classifier on a 4a/4d feature map -> float32 softmax ``name``.

    5x5/3 average pool (valid) -> 1x1 conv 128 -> dense 1024 ReLU -> 70% dropout -> softmax.
    """
    x = layers.AveragePooling2D(5, strides=3, padding="valid", name=f"{name}_pool")(x)
    x = conv_bn(x, 128, 1, name=f"{name}_conv")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, seed=seed, name=f"{name}_dropout")(x)
    # float32 like the main head, so softmax and the loss stay stable under mixed precision.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=name)(x)


def backbone(name: str, input_shape: tuple[int, int, int], weights: str | None, *,
             residual_scale: float | None = None) -> keras.Model:
    """Preprocessed float image -> [1024 pooled features, 4a map, 4d map].

    The two feature maps feed ``aux_head``; ``weights`` is None or a weights file.
    """
    if residual_scale is not None:
        raise ValueError(f"{name} has no residual connections to scale")
    inputs = keras.Input(input_shape, name="input")
    x = stem(inputs)
    x = inception(x, 64, 96, 128, 16, 32, 32, name="inception_3a")
    x = inception(x, 128, 128, 192, 32, 96, 64, name="inception_3b")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool3")(x)
    aux1 = x = inception(x, 192, 96, 208, 16, 48, 64, name="inception_4a")
    x = inception(x, 160, 112, 224, 24, 64, 64, name="inception_4b")
    x = inception(x, 128, 128, 256, 24, 64, 64, name="inception_4c")
    aux2 = x = inception(x, 112, 144, 288, 32, 64, 64, name="inception_4d")
    x = inception(x, 256, 160, 320, 32, 128, 128, name="inception_4e")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool4")(x)
    x = inception(x, 256, 160, 320, 32, 128, 128, name="inception_5a")
    x = inception(x, 384, 192, 384, 48, 128, 128, name="inception_5b")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, [x, aux1, aux2], name=name)
    if weights:
        model.load_weights(weights)
    return model
