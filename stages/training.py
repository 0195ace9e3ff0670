"""Keras pieces shared by train and evaluate: batches from the memory map, loss, metrics.

Imported only after params are validated, since importing TensorFlow takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from stages.io import atomic_dir, load_npy, read_json, write_json


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The order of ``indices`` in ``epoch``: a function of (seed, epoch) alone."""
    return np.random.default_rng([seed, epoch]).permutation(indices)


class NpyRows:
    """Rows of a .npy file, read on demand with positioned reads: ``rows[indices]``.

    Pages of a memory map (np.load's mmap_mode) count in the process's RSS once touched, so a
    training epoch over a memory map grows RSS by the whole array. Reads copy each batch out
    of the page cache and leave nothing mapped: RSS stays flat however large the file, also
    beyond RAM (BENCHMARKS.md, "Training input").
    """

    def __init__(self, path: str | os.PathLike):
        mapped = load_npy(path, mmap=True)  # parses and validates the header; reads no rows
        if not mapped.flags.c_contiguous:
            raise ValueError(f"{path}: rows are not contiguous (Fortran order)")
        self.path, self.shape, self.dtype = Path(path), mapped.shape, mapped.dtype
        self.offset, self.row_bytes = mapped.offset, mapped[:1].nbytes
        del mapped

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.shape[1:]), self.dtype)
        if not len(indices):
            return out
        if indices.min() < 0 or indices.max() >= len(self):
            raise IndexError(f"{self.path}: row index out of range 0..{len(self) - 1}")
        buffer = memoryview(out.reshape(-1).view(np.uint8))
        # One read per run of consecutive rows (sorted training batches have a few).
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1
        with open(self.path, "rb", buffering=0) as f:
            for start, end in zip(np.r_[0, breaks], np.r_[breaks, len(indices)], strict=True):
                size = (end - start) * self.row_bytes
                read = os.preadv(f.fileno(), [buffer[start * self.row_bytes:][:size]],
                                 self.offset + int(indices[start]) * self.row_bytes)
                if read != size:
                    raise ValueError(f"{self.path}: truncated (short read at row "
                                     f"{indices[start]})")
        return out


class Batches(keras.utils.PyDataset):
    """(uint8 images, one-hot labels) batches gathered from an images array or ``NpyRows``.

    With ``shuffle_seed`` the order changes every epoch, as ``epoch_order`` gives it; without
    it, batches follow ``indices`` (for validation and prediction).
    """

    def __init__(self, images, labels, indices, num_classes, batch_size, shuffle_seed=None,
                 output_names=("predictions",)):
        super().__init__()
        self.images, self.labels, self.indices = images, labels, indices
        self.num_classes, self.batch_size, self.shuffle_seed = num_classes, batch_size, shuffle_seed
        self.output_names = output_names  # every output (GoogLeNet's aux heads too) gets the labels
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch``'s order (a resumed run starts after the epochs it has done)."""
        self.epoch = epoch
        self.order = (self.indices if self.shuffle_seed is None
                      else epoch_order(self.indices, self.shuffle_seed, epoch))

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def rows(self, i: int) -> np.ndarray:
        """The indices of batch ``i``."""
        batch = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        if self.shuffle_seed is not None:
            # Sequential reads of the file; the order within a batch does not matter.
            batch = np.sort(batch)
        return batch

    def replica_part(self, i: int, replica: int, replicas: int) -> tuple[np.ndarray, np.ndarray]:
        """(images, one-hot labels) of replica ``replica``'s share of batch ``i``: its
        consecutive slice of ``rows(i)``, so the ``replicas`` parts together are the batch."""
        part = np.array_split(self.rows(i), replicas)[replica]
        return self.images[part], np.eye(self.num_classes, dtype=np.float32)[self.labels[part]]

    def __getitem__(self, i):
        images, one_hot = self.replica_part(i, 0, 1)
        if len(self.output_names) == 1:
            return images, one_hot
        return images, {name: one_hot for name in self.output_names}

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)


@keras.saving.register_keras_serializable(package="inception_pipeline")
class ProbabilityBinaryCrossentropy(keras.losses.BinaryCrossentropy):
    """Binary cross-entropy of the softmax probabilities, as standalone Keras (<= 2.3) computed
    it for a softmax classifier: ``train.loss: binary_probabilities``.

    Keras 3's BinaryCrossentropy, given a softmax output, takes the logits Keras cached on it
    and treats them as sigmoid logits (README, "What train.loss: binary computes").
    """

    def call(self, y_true, y_pred):
        # Clipping makes a new tensor, without the cached logits: the loss sees probabilities.
        epsilon = keras.config.epsilon()
        return super().call(y_true, keras.ops.clip(y_pred, epsilon, 1 - epsilon))


def make_loss(name: str, label_smoothing: float = 0.0,
              reduction: str | None = "sum_over_batch_size") -> keras.losses.Loss:
    """The loss; ``reduction=None`` gives one value per image (the multi-worker loop's)."""
    loss = {"binary": keras.losses.BinaryCrossentropy,
            "binary_probabilities": ProbabilityBinaryCrossentropy,
            "categorical": keras.losses.CategoricalCrossentropy}[name]
    return loss(label_smoothing=label_smoothing, reduction=reduction)


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
                  aux_loss_weight: float, jit_compile: bool = False) -> None:
    """Compile for training; with auxiliary heads, total = main + w * aux1 + w * aux2.

    Metrics are computed on the main head only: that is the classifier that gets evaluated.
    """
    if len(model.outputs) == 1:
        losses, weights, metric_map = loss, None, metrics()
    else:
        losses = {name: loss for name in model.output_names}
        weights = loss_weights(model.output_names, aux_loss_weight)
        metric_map = {"predictions": metrics()}
    # XLA off by default (Keras' "auto" would turn it on): with oneDNN on it was no faster here
    # and compiled 10 s longer (bench/train_step.py, BENCHMARKS.md).
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, metrics=metric_map,
                  jit_compile=jit_compile)


def loss_weights(output_names: list[str], aux_loss_weight: float) -> dict[str, float]:
    """Each output's weight in the total loss: 1 for the main head, ``aux_loss_weight`` else."""
    return {name: 1.0 if name == "predictions" else aux_loss_weight for name in output_names}


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


def run_fingerprint(settings: dict, files: list[Path]) -> str:
    """A digest of everything a training run depends on: its settings and its input files."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, saves what a killed run needs to resume where it stopped.

    Each checkpoint is a folder ``epoch-NNNN`` (weights with the optimizer's state, the random
    generators' state, the DVCLive folder so far, and the run's fingerprint), written under a
    temporary name and renamed into place; older ones are deleted only after that, so a kill
    at any moment leaves at least one whole checkpoint. A checkpoint whose fingerprint differs
    from the run's (other params, code or data) is never resumed.
    """

    def __init__(self, directory: Path, live_dir: Path, fingerprint: str):
        super().__init__()
        self.directory, self.live_dir, self.fingerprint = directory, live_dir, fingerprint

    def latest(self) -> tuple[int, Path] | None:
        """(epochs done, folder) of the newest checkpoint of this run, if any."""
        for folder in sorted(self.directory.glob("epoch-[0-9][0-9][0-9][0-9]"), reverse=True):
            state = read_json(folder / "state.json")
            if state["fingerprint"] == self.fingerprint:
                return state["epochs_done"], folder
        return None

    def restore(self, model: keras.Model) -> int:
        """Load the newest checkpoint into ``model`` and ``live_dir``; the epochs it had done."""
        found = self.latest()
        if found is None:
            self.discard()  # checkpoints of another run (other params, code or data)
            return 0
        epochs_done, folder = found
        model.optimizer.build(model.trainable_variables)
        model.load_weights(folder / "state.weights.h5")
        states = read_json(folder / "state.json")["seed_generators"]
        for variable, state in zip(seed_generator_states(model), states, strict=True):
            variable.assign(state)
        if self.live_dir.exists():
            shutil.rmtree(self.live_dir)
        shutil.copytree(folder / "live", self.live_dir)
        return epochs_done

    def on_epoch_end(self, epoch, logs=None):
        # Runs after the DVCLive callback, so the copied folder holds this epoch's curves.
        with atomic_dir(self.directory / f"epoch-{epoch + 1:04d}") as tmp:
            self.model.save_weights(tmp / "state.weights.h5")
            shutil.copytree(self.live_dir, tmp / "live")
            write_json(tmp / "state.json", {
                "epochs_done": epoch + 1, "fingerprint": self.fingerprint,
                # A list in the model's order: the variables' paths are not unique.
                "seed_generators": [v.numpy().tolist()
                                    for v in seed_generator_states(self.model)]})
        for folder in self.directory.glob("epoch-*"):
            if folder.name != f"epoch-{epoch + 1:04d}":
                shutil.rmtree(folder)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def seed_generator_states(model: keras.Model) -> list:
    """The augmentation and dropout layers' random states, which save_weights leaves out."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """``train.strategy``: default (one device), mirrored (one replica per local GPU) or
    multi_worker (one replica per device of every worker that TF_CONFIG lists).

    Without GPUs, mirrored uses every CPU device TensorFlow lists: one, unless it was
    configured as several logical devices, as the tests do. multi_worker is
    MultiWorkerMirroredStrategy, which reads TF_CONFIG (checked here first, so that a missing
    or malformed one is one line, not a TensorFlow traceback); Keras 3's fit() fails under it
    (keras-team/keras#20585), so the train stage runs ``stages.distributed.fit_multi_worker``
    instead. Create the strategy before any other TensorFlow work: MultiWorkerMirroredStrategy
    has to start the cluster's servers before the runtime is initialised.
    """
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        from stages.distributed import configure_coordination_service, read_tf_config

        read_tf_config()  # raises a PipelineError naming the problem
        configure_coordination_service()  # its heartbeat timeout (MULTI_WORKER_HEARTBEAT_SECONDS)
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()
