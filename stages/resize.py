"""resize: every crop to ``resize.size`` x ``resize.size``, stretched (as the study did) or padded.

Stretching changes the aspect ratio (a tall glyph becomes a fat one); padding keeps it and fills
the borders with black. The resized crops go straight into one uint8 array, ``images.npy``
(N, size, size, 3) in RGB, written one crop after another; its rows follow manifest.csv, the
crops' manifest copied as it is.
"""

from __future__ import annotations

import shutil

import numpy as np

from inception_pipeline.crop_store import load_crop
from inception_pipeline.errors import PipelineError, run
from inception_pipeline.images import configure_decoders, resize_image
from inception_pipeline.io import atomic_dir, parallel_map, read_csv, worker_count, write_npy_rows
from inception_pipeline.layout import CROPS_DIR, MANIFEST, RESIZED_DIR, RESIZED_IMAGES
from inception_pipeline.params import load_params


def _resize_crop(job: tuple[dict, int, str]) -> np.ndarray:
    row, size, mode = job
    return resize_image(load_crop(row, CROPS_DIR), size, mode)


def main() -> None:
    params = load_params()
    configure_decoders()
    cfg = params["resize"]
    size = cfg["size"]
    rows = read_csv(CROPS_DIR / MANIFEST)
    if not rows:
        raise PipelineError(f"{CROPS_DIR / MANIFEST}: no crops to resize")
    jobs = [(row, size, cfg["mode"]) for row in rows]
    resized = parallel_map(_resize_crop, jobs, worker_count(params["data"]["workers"]), "resize",
                           configure_decoders)
    with atomic_dir(RESIZED_DIR) as tmp:
        write_npy_rows(tmp / RESIZED_IMAGES.name, (len(rows), size, size, 3), resized,
                       name_of=lambda i: f"{CROPS_DIR / MANIFEST} crop {rows[i]['crop']}")
        shutil.copyfile(CROPS_DIR / MANIFEST, tmp / MANIFEST)
    print(f"resize: {len(rows)} crops -> {size}x{size} ({cfg['mode']}) in {RESIZED_IMAGES}")


if __name__ == "__main__":
    run(main)
