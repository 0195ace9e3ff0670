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


def augmentation(seed: int, *, augment: bool = True, flip: bool = False,
                 scale_jitter: float = 0.0, color_jitter: float = 0.0,
                 random_erasing: float = 0.0) -> keras.Sequential | None:
    """The training-time augmentation block (None: nothing to do); active only while training.

    ``augment``: random shifts, small rotations, zoom and contrast. ``flip``: a random
    left-right mirror, for classes that look the same mirrored (most objects photographed from
    either side; not text, logos or the demo's glyphs, whose mirror image is no class at all).
    ``scale_jitter`` s: a random resized crop, each side zoomed in or out by up to s on its own
    (scale and aspect), the window shifted by up to s / 2 (Keras has no RandomResizedCrop, and
    RandomCrop crops a whole batch at one place). ``color_jitter`` c: brightness by up to c of
    the range, contrast by up to c, saturation by a factor from (2 - c) / (2 + c) to its
    inverse, hue by up to c / 4 of the circle. ``random_erasing`` p: with probability p a
    rectangle of 2-33% of the image is replaced by noise.
    """
    layers = []
    if augment:
        layers += [
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomZoom(0.15, fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomContrast(0.3, seed=seed + 3),
        ]
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 8, name="flip"))
    if scale_jitter:
        layers += [
            keras.layers.RandomZoom(scale_jitter, scale_jitter, fill_mode="nearest",
                                    seed=seed + 4, name="scale_jitter"),
            keras.layers.RandomTranslation(scale_jitter / 2, scale_jitter / 2,
                                           fill_mode="nearest", seed=seed + 5,
                                           name="scale_jitter_shift"),
        ]
    if color_jitter:
        # saturation_factor f scales saturation by f / (1 - f): 0.5 leaves it as it is
        layers.append(keras.layers.RandomColorJitter(
            value_range=(0, 255), brightness_factor=color_jitter, contrast_factor=color_jitter,
            saturation_factor=(0.5 - color_jitter / 4, 0.5 + color_jitter / 4),
            hue_factor=color_jitter / 2, seed=seed + 6, name="color_jitter"))
    if random_erasing:
        # factor (p, p): erase with probability p (a single float draws it from [0, p])
        layers.append(keras.layers.RandomErasing(factor=(random_erasing, random_erasing),
                                                 value_range=(0, 255), seed=seed + 7,
                                                 name="random_erasing"))
    return keras.Sequential(layers, name="augmentation") if layers else None
