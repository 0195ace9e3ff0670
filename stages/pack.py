"""pack: the resized crops with their labels, as the arrays training reads.

images.npy is resize's array (uint8 (N, H, W, 3), RGB), copied after its shape is checked
against the manifest. labels.npy is its own file: the split stage depends on it alone, so a
change that leaves the labels as they were (say resize.size) does not re-split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from inception_pipeline.errors import PipelineError, run
from inception_pipeline.io import atomic_path, load_npy, read_csv, save_npy, write_csv, write_json
from inception_pipeline.layout import (
    CLASSES,
    IMAGES,
    ITEMS,
    LABELS,
    MANIFEST,
    PACKED_DIR,
    RESIZED_DIR,
    RESIZED_IMAGES,
)

ITEM_FIELDS = ["index", "crop", "source", "label", "source_sha256"]


def class_index(labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted class names and each label's position among them."""
    classes = sorted(set(labels))
    position = {name: i for i, name in enumerate(classes)}
    return classes, np.array([position[label] for label in labels], dtype=np.int32)


def check_images(shape: tuple[int, ...], rows: int, path: Path) -> None:
    """Raise unless ``shape`` is the (rows, H, W, 3) the manifest promises."""
    if len(shape) != 4 or shape[0] != rows or shape[3] != 3:
        raise PipelineError(f"{path}: shape {shape}, expected ({rows}, H, W, 3): one image per "
                            f"row of {RESIZED_DIR / MANIFEST}")


def main() -> None:
    rows = read_csv(RESIZED_DIR / MANIFEST)
    if not rows:
        raise PipelineError(f"{RESIZED_DIR / MANIFEST}: no crops to pack")
    shape = load_npy(RESIZED_IMAGES, mmap=True).shape  # maps the file, reads its header only
    check_images(shape, len(rows), RESIZED_IMAGES)
    classes, labels = class_index([row["label"] for row in rows])
    with atomic_path(IMAGES) as tmp:
        shutil.copyfile(RESIZED_IMAGES, tmp)  # a kernel-side copy: no pixel passes through here
    save_npy(LABELS, labels)
    write_json(CLASSES, classes)
    write_csv(ITEMS, ITEM_FIELDS,
              ({"index": i, **{k: row[k] for k in ITEM_FIELDS[1:]}} for i, row in enumerate(rows)))
    print(f"pack: {len(rows)} images {shape[1:]} of {len(classes)} classes -> {PACKED_DIR}/")


if __name__ == "__main__":
    run(main)
