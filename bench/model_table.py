"""Markdown table of every registered network: parameters and forward multiply-adds.

    python bench/model_table.py [input_size] [num_classes]   (defaults: 75 51)

Multiply-adds count the convolutions and dense layers only (batch norm, pooling and additions
are comparatively free), from the layer shapes, without running the model.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from models import NETWORKS, build_classifier


def multiply_adds(model: keras.Model) -> int:
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += multiply_adds(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            # Every output value costs one kernel window over all input channels.
            _, height, width, _ = layer.output.shape
            total += height * width * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def main(size: int = 75, classes: int = 51) -> None:
    print(f"| network | params at {size}/{classes} | forward multiply-adds at {size} |")
    print("|---|---:|---:|")
    for name in NETWORKS:
        model = build_classifier(name, size, classes, weights=None, bn_momentum=0.9,
                                 augment=False, seed=0)
        print(f"| {name} | {model.count_params():,} | {multiply_adds(model) / 1e9:.4f} G |")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
