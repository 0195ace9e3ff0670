"""Backbones Keras ships in keras.applications, without their top, global-average pooled.

``weights`` is None (random init), "imagenet" (Keras' standard download, cached under
~/.keras/models) or a path to a local weights file for the network without its top.
InceptionResNetV2's residual scales are fixed by Keras (0.17, 0.1, 0.2 for its three block
types), so ``residual_scale`` is refused here.
"""

from __future__ import annotations

import keras

from models import WeightsUnavailable

APPLICATIONS = {
    "inception_resnet_v2": keras.applications.InceptionResNetV2,
    "inception_v3": keras.applications.InceptionV3,
    "resnet50": keras.applications.ResNet50,
}


def backbone(name: str, input_shape: tuple[int, int, int], weights: str | None, *,
             residual_scale: float | None = None) -> keras.Model:
    if residual_scale is not None:
        raise ValueError(f"keras.applications' {name} has no settable residual scale")
    try:
        return APPLICATIONS[name](include_top=False, weights=weights, input_shape=input_shape,
                                  pooling="avg")
    except Exception as err:  # Keras raises bare Exception for a failed download
        if weights == "imagenet" and ("URL fetch failure" in str(err) or "HTTP" in str(err)):
            raise WeightsUnavailable(
                f"train.weights=imagenet: could not download the {name} ImageNet weights "
                f"({err}); on an offline machine copy the no-top weights file into "
                f"~/.keras/models/ or set train.weights to its path") from None
        raise
