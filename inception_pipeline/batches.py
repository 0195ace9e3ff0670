"""Training and evaluation input: rows of images.npy read on demand, as Keras batches."""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras
import numpy as np

from inception_pipeline.io import load_npy


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The order of ``indices`` in ``epoch``: a function of (seed, epoch) alone."""
    return np.random.default_rng([seed, epoch]).permutation(indices)


class NpyRows:
    """Rows of a .npy file, read on demand with positioned reads: ``rows[indices]``.

    Pages of a memory map (np.load's mmap_mode) count in the process's RSS once touched, so a
    training epoch over a memory map grows RSS by the whole array. Reads copy each batch out
    of the page cache and leave nothing mapped: RSS stays flat however large the file, also
    beyond RAM (BENCHMARKS.md, "Training and evaluation input").
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


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``train.class_weight: balanced``: each class's weight n / (k x count), n the images, k
    the classes present (scikit-learn's compute_class_weight("balanced")); 0 for a class
    with no image, which no label names anyway."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.zeros(num_classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


class LabelMixing:
    """``train.mixup`` / ``train.cutmix``: Keras' MixUp and CutMix layers on a training batch,
    images and one-hot labels together (the labels become soft, each row summing to 1). With
    both, each batch takes one of the two, at even odds.

    Here rather than in the model: they change the labels, which the model never sees. Each
    batch's draws come from ``seed`` (epoch, batch, replica), so a resumed run mixes as the
    uninterrupted one would. The layers compute in float32 whatever the precision policy, and
    the mixed images are rounded back to uint8, the model's input (MixUp's blends move by
    under half a grey level; CutMix's pixels are copied, unchanged).
    """

    def __init__(self, mixup: float = 0.0, cutmix: float = 0.0):
        self.layers = []
        if mixup:
            self.layers.append(lambda seed: keras.layers.MixUp(mixup, seed=seed,
                                                               dtype="float32"))
        if cutmix:  # factor (a, a): alpha a (a single float draws alpha from [0, a])
            self.layers.append(lambda seed: keras.layers.CutMix((cutmix, cutmix), seed=seed,
                                                                dtype="float32"))

    def __bool__(self) -> bool:
        return bool(self.layers)

    def __call__(self, images: np.ndarray, one_hot: np.ndarray, seed: list[int]
                 ) -> tuple[np.ndarray, np.ndarray]:
        if len(images) < 2:  # nothing to mix with
            return images, one_hot
        rng = np.random.default_rng(seed)
        make_layer = self.layers[rng.integers(len(self.layers))]
        # A layer per batch: its seed generator then starts from this batch's seed.
        mixed = make_layer(int(rng.integers(2**31)))(
            {"images": images, "labels": one_hot}, training=True)
        pixels = np.clip(np.rint(keras.ops.convert_to_numpy(mixed["images"])), 0, 255)
        return (pixels.astype(images.dtype),
                keras.ops.convert_to_numpy(mixed["labels"]).astype(np.float32))


class Batches(keras.utils.PyDataset):
    """(uint8 images, one-hot labels) batches gathered from an images array or ``NpyRows``.

    With ``shuffle_seed`` the order changes every epoch, as ``epoch_order`` gives it; without
    it, batches follow ``indices`` (for validation and prediction). Training batches may mix
    images and labels (``mixing``, a ``LabelMixing``: soft labels) and weigh each image by
    its label's ``class_weights`` (per-class weights: a third element, the sample weights).
    """

    def __init__(self, images, labels, indices, num_classes, batch_size, shuffle_seed=None,
                 output_names=("predictions",), mixing=None, class_weights=None):
        super().__init__()
        self.images, self.labels, self.indices = images, labels, indices
        self.num_classes, self.batch_size, self.shuffle_seed = num_classes, batch_size, shuffle_seed
        self.output_names = output_names  # every output (GoogLeNet's aux heads too) gets the labels
        self.mixing, self.class_weights = mixing, class_weights
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

    def replica_part(self, i: int, replica: int, replicas: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images, labels, sample weights) of replica ``replica``'s share of batch ``i``: its
        consecutive slice of ``rows(i)``, so the ``replicas`` parts together are the batch.
        Labels are one-hot, or soft when mixed (within the share); the weights are each
        label's class weight (soft: the label-weighted mean), 1 without class weights."""
        part = np.array_split(self.rows(i), replicas)[replica]
        images = self.images[part]
        labels = np.eye(self.num_classes, dtype=np.float32)[self.labels[part]]
        if self.mixing:
            images, labels = self.mixing(images, labels,
                                         [self.shuffle_seed or 0, self.epoch, i, replica])
        weights = (labels @ self.class_weights if self.class_weights is not None
                   else np.ones(len(part), np.float32))
        return images, labels, weights

    def __getitem__(self, i):
        images, labels, weights = self.replica_part(i, 0, 1)
        if len(self.output_names) > 1:
            labels = {name: labels for name in self.output_names}
        if self.class_weights is None:
            return images, labels
        return images, labels, weights  # one array weighs every output's loss

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)
