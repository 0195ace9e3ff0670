"""Layers saved inside the model: pixel preprocessing and training-time augmentation."""

from __future__ import annotations

import keras
from keras import ops

# keras.applications' "caffe" mode: RGB -> BGR, then subtract the ImageNet channel means.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="inception_pipeline")
class ImagePreprocessing(keras.layers.Layer):
    """uint8 RGB pixels -> the input scaling a backbone was trained with.

    A registered layer rather than a Lambda, so the saved model loads in Keras' safe mode.
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("tf", "caffe"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return ops.flip(x, axis=-1) - ops.convert_to_tensor(CAFFE_BGR_MEAN, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def augmentation(seed: int) -> keras.Sequential:
    """Random shifts, small rotations, zoom and contrast; active only while training.

    No flips: mirrored glyphs (and mirrored text, logos, most man-made objects) are other
    classes or no class at all.
    """
    return keras.Sequential([
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
        keras.layers.RandomRotation(0.05, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomZoom(0.15, fill_mode="nearest", seed=seed + 2),
        keras.layers.RandomContrast(0.3, seed=seed + 3),
    ], name="augmentation")
