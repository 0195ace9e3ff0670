"""resize: every crop to ``resize.size`` x ``resize.size``, stretched (as the study did) or padded.

Stretching changes the aspect ratio (a tall glyph becomes a fat one); padding keeps it and fills
the borders with black. The resized crops keep the crops' relative paths and manifest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from stages.crop import MANIFEST
from stages.crop import OUT_DIR as CROPS_DIR
from stages.errors import PipelineError, run
from stages.io import atomic_dir, parallel_map, read_csv, worker_count
from stages.params import load_params

OUT_DIR = Path("data/resized")


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


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to BGR uint8 (np.fromfile copes with any Unicode path)."""
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise PipelineError(f"{path}: cannot decode image")
    return image


def write_png(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise PipelineError(f"{path}: cannot encode PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded.tofile(path)


def _resize_file(job: tuple[Path, Path, int, str]) -> None:
    source, target, size, mode = job
    write_png(target, resize_image(read_image(source), size, mode))


def main() -> None:
    params = load_params()
    cfg = params["resize"]
    rows = read_csv(CROPS_DIR / MANIFEST)
    with atomic_dir(OUT_DIR) as tmp:
        jobs = [(CROPS_DIR / row["crop"], tmp / row["crop"], cfg["size"], cfg["mode"])
                for row in rows]
        for _ in parallel_map(_resize_file, jobs, worker_count(params["data"]["workers"]),
                              "resize"):
            pass
        shutil.copyfile(CROPS_DIR / MANIFEST, tmp / MANIFEST)
    print(f"resize: {len(rows)} crops -> {cfg['size']}x{cfg['size']} ({cfg['mode']}) in {OUT_DIR}/")


if __name__ == "__main__":
    run(main)
