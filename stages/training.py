"""Keras pieces shared by train and evaluate: batches from the memory map, loss, metrics.

Imported only after params are validated, since importing TensorFlow takes seconds.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The order of ``indices`` in ``epoch``: a function of (seed, epoch) alone."""
    return np.random.default_rng([seed, epoch]).permutation(indices)


class Batches(keras.utils.PyDataset):
    """(uint8 images, one-hot labels) batches gathered from a (memory-mapped) images array.

    With ``shuffle_seed`` the order changes every epoch, as ``epoch_order`` gives it; without
    it, batches follow ``indices`` (for validation and prediction).
    """

    def __init__(self, images, labels, indices, num_classes, batch_size, shuffle_seed=None,
                 output_names=("predictions",)):
        super().__init__()
        self.images, self.labels, self.indices = images, labels, indices
        self.num_classes, self.batch_size, self.shuffle_seed = num_classes, batch_size, shuffle_seed
        self.output_names = output_names  # every output (GoogLeNet's aux heads too) gets the labels
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if self.shuffle_seed is None:
            return self.indices
        return epoch_order(self.indices, self.shuffle_seed, self.epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, i):
        batch = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        if self.shuffle_seed is not None:
            # Sequential reads on the memory map; the order within a batch does not matter.
            batch = np.sort(batch)
        one_hot = np.eye(self.num_classes, dtype=np.float32)[self.labels[batch]]
        if len(self.output_names) == 1:
            return self.images[batch], one_hot
        return self.images[batch], {name: one_hot for name in self.output_names}

    def on_epoch_end(self):
        self.epoch += 1
        self.order = self._order()


def make_loss(name: str, label_smoothing: float = 0.0) -> keras.losses.Loss:
    loss = {"binary": keras.losses.BinaryCrossentropy,
            "categorical": keras.losses.CategoricalCrossentropy}[name]
    return loss(label_smoothing=label_smoothing)


def make_optimizer(name: str, lr: float, schedule: str, steps_per_epoch: int, epochs: int):
    if schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps_per_epoch * epochs)
    elif schedule == "exponential":  # the paper: x0.94 every two epochs
        lr = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=2 * steps_per_epoch, decay_rate=0.94, staircase=True)
    if name == "rmsprop":  # the paper's settings: decay 0.9, epsilon 1.0
        return keras.optimizers.RMSprop(learning_rate=lr, rho=0.9, epsilon=1.0)
    return {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[name](learning_rate=lr)


def metrics() -> list[keras.metrics.Metric]:
    """Logged whatever the loss, so runs with different losses compare on the same curves.

    ``accuracy`` is always categorical (top-1, argmax); ``binary_accuracy`` is the element-wise
    metric old Keras silently substituted for it when the loss was binary cross-entropy.
    """
    return [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"),
        keras.metrics.BinaryAccuracy(name="binary_accuracy"),
        keras.metrics.CategoricalCrossentropy(name="categorical_crossentropy"),
        keras.metrics.BinaryCrossentropy(name="binary_crossentropy"),
    ]


def compile_model(model: keras.Model, optimizer, loss: keras.losses.Loss,
                  aux_loss_weight: float) -> None:
    """Compile for training; with auxiliary heads, total = main + w * aux1 + w * aux2.

    Metrics are computed on the main head only: that is the classifier that gets evaluated.
    """
    if len(model.outputs) == 1:
        losses, weights, metric_map = loss, None, metrics()
    else:
        names = model.output_names
        losses = {name: loss for name in names}
        weights = {name: 1.0 if name == "predictions" else aux_loss_weight for name in names}
        metric_map = {"predictions": metrics()}
    # No XLA (Keras' "auto"): with oneDNN on it was no faster here and compiled 10 s longer
    # (bench/train_step.py, BENCHMARKS.md).
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, metrics=metric_map,
                  jit_compile=False)


class MainHeadLogNames(keras.callbacks.Callback):
    """With auxiliary heads Keras logs "predictions_accuracy"; log it as "accuracy", like every
    other network, so that curves of all networks share names in ``dvc plots diff``."""

    def on_epoch_end(self, epoch, logs=None):
        for key in [k for k in logs if "predictions_" in k]:
            logs[key.replace("predictions_", "")] = logs.pop(key)


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` to each epoch's logs, ahead of the DVCLive callback."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.start
