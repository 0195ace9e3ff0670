"""pack: the resized crops with their labels, as the arrays training reads.

images.npy is resize's array (uint8 (N, H, W, 3), RGB), copied after its shape is checked
against the manifest. labels.npy is its own file: the split stage depends on it alone, so a
change that leaves the labels as they were (say resize.size) does not re-split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from stages.crop import MANIFEST
from stages.errors import PipelineError, run
from stages.io import atomic_path, load_npy, read_csv, save_npy, write_csv, write_json
from stages.resize import IMAGES
from stages.resize import OUT_DIR as RESIZED_DIR

OUT_DIR = Path("data/packed")
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
    source = RESIZED_DIR / IMAGES
    shape = load_npy(source, mmap=True).shape  # maps the file, reads its header only
    check_images(shape, len(rows), source)
    classes, labels = class_index([row["label"] for row in rows])
    with atomic_path(OUT_DIR / IMAGES) as tmp:
        shutil.copyfile(source, tmp)  # a kernel-side copy: no pixel passes through this process
    save_npy(OUT_DIR / "labels.npy", labels)
    write_json(OUT_DIR / "classes.json", classes)
    write_csv(OUT_DIR / "items.csv", ITEM_FIELDS,
              ({"index": i, **{k: row[k] for k in ITEM_FIELDS[1:]}} for i, row in enumerate(rows)))
    print(f"pack: {len(rows)} images {shape[1:]} of {len(classes)} classes -> {OUT_DIR}/")


if __name__ == "__main__":
    run(main)
