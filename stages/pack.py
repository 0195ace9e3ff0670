"""pack: the resized crops as one uint8 array (N, H, W, 3) in RGB, plus labels and class names.

images.npy is written streaming, one image after another, so memory stays flat however many
images there are. labels.npy is its own file: the split stage depends on it alone, so a change
that leaves the labels as they were (say resize.size) does not re-split.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from stages.crop import MANIFEST
from stages.errors import PipelineError, run
from stages.io import (
    atomic_path,
    parallel_map,
    read_csv,
    save_npy,
    worker_count,
    write_csv,
    write_json,
)
from stages.params import load_params
from stages.resize import OUT_DIR as RESIZED_DIR
from stages.resize import read_image

OUT_DIR = Path("data/packed")
ITEM_FIELDS = ["index", "crop", "source", "label", "source_sha256"]


def class_index(labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted class names and each label's position among them."""
    classes = sorted(set(labels))
    position = {name: i for i, name in enumerate(classes)}
    return classes, np.array([position[label] for label in labels], dtype=np.int32)


def bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """cv2 decodes to BGR; the model takes RGB (the predict stage converts with this too)."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_rgb(path: Path) -> np.ndarray:
    return bgr_to_rgb(read_image(path))


def main() -> None:
    params = load_params()
    rows = read_csv(RESIZED_DIR / MANIFEST)
    if not rows:
        raise PipelineError(f"{RESIZED_DIR / MANIFEST}: no crops to pack")
    classes, labels = class_index([row["label"] for row in rows])
    paths = [RESIZED_DIR / row["crop"] for row in rows]
    shape = _read_rgb(paths[0]).shape
    with atomic_path(OUT_DIR / "images.npy") as tmp, open(tmp, "wb") as out:
        # Plain sequential writes, not a memory map: written pages are never mapped into this
        # process, so its RSS stays flat however large the array (BENCHMARKS.md).
        np.lib.format.write_array_header_1_0(out, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
            "fortran_order": False, "shape": (len(rows), *shape)})
        for i, image in enumerate(parallel_map(_read_rgb, paths,
                                               worker_count(params["data"]["workers"]), "pack")):
            if image.shape != shape or image.dtype != np.uint8:
                raise PipelineError(f"{paths[i]}: shape {image.shape} {image.dtype}, expected "
                                    f"{shape} uint8")
            out.write(np.ascontiguousarray(image).data)
    save_npy(OUT_DIR / "labels.npy", labels)
    write_json(OUT_DIR / "classes.json", classes)
    write_csv(OUT_DIR / "items.csv", ITEM_FIELDS,
              ({"index": i, **{k: row[k] for k in ITEM_FIELDS[1:]}} for i, row in enumerate(rows)))
    print(f"pack: {len(rows)} images {shape} of {len(classes)} classes -> {OUT_DIR}/")


if __name__ == "__main__":
    run(main)
