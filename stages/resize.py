"""resize: every crop to ``resize.size`` x ``resize.size``, stretched (as the study did) or padded.

Stretching changes the aspect ratio (a tall glyph becomes a fat one); padding keeps it and fills
the borders with black. The resized crops go straight into one uint8 array, ``images.npy``
(N, size, size, 3) in RGB, written one crop after another; its rows follow manifest.csv, the
crops' manifest copied as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from stages.crop import MANIFEST, load_crop
from stages.crop import OUT_DIR as CROPS_DIR
from stages.errors import PipelineError, run
from stages.io import atomic_dir, parallel_map, read_csv, worker_count, write_npy_rows
from stages.params import load_params

OUT_DIR = Path("data/resized")
IMAGES = "images.npy"

# Intel IPP's resize takes CPU-specific paths that round differently: the same crops gave a
# different images.npy on an AVX2 and an AVX-512 machine. OpenCV's own code gives the same bytes
# with its AVX/AVX2 paths switched off (OPENCV_CPU_DISABLE), so without IPP the output depends
# on the data and params, not on the CPU.
cv2.ipp.setUseIPP(False)


def resize_image(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    """``image`` (H, W, C) as a ``size`` x ``size`` image; ``mode`` is "stretch" or "pad"."""
    height, width = image.shape[:2]
    if mode == "pad":
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    else:
        new_w = new_h = size
    # Area averaging when shrinking avoids aliasing; cubic when enlarging keeps edges smooth.
    shrinking = new_w * new_h < width * height
    resized = cv2.resize(image, (new_w, new_h),
                         interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    if mode == "stretch":
        return resized
    top, left = (size - new_h) // 2, (size - new_w) // 2
    return cv2.copyMakeBorder(resized, top, size - new_h - top, left, size - new_w - left,
                              cv2.BORDER_CONSTANT, value=(0, 0, 0))


def _resize_crop(job: tuple[dict, int, str]) -> np.ndarray:
    row, size, mode = job
    return resize_image(load_crop(row), size, mode)


def main() -> None:
    params = load_params()
    cfg = params["resize"]
    size = cfg["size"]
    rows = read_csv(CROPS_DIR / MANIFEST)
    if not rows:
        raise PipelineError(f"{CROPS_DIR / MANIFEST}: no crops to resize")
    jobs = [(row, size, cfg["mode"]) for row in rows]
    resized = parallel_map(_resize_crop, jobs, worker_count(params["data"]["workers"]), "resize")
    with atomic_dir(OUT_DIR) as tmp:
        write_npy_rows(tmp / IMAGES, (len(rows), size, size, 3), resized,
                       name_of=lambda i: f"{CROPS_DIR / MANIFEST} crop {rows[i]['crop']}")
        shutil.copyfile(CROPS_DIR / MANIFEST, tmp / MANIFEST)
    print(f"resize: {len(rows)} crops -> {size}x{size} ({cfg['mode']}) in {OUT_DIR / IMAGES}")


if __name__ == "__main__":
    run(main)
