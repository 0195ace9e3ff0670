"""crop: every bounding box of every image under ``data.dir`` becomes one crop.

Layout: one folder per class (the folder name is the label). Boxes come from a Pascal VOC XML
beside each image (``data.annotations: voc``) or from ``<data.dir>/annotations.csv`` with the
columns path, xmin, ymin, xmax, ymax[, label] (``csv``; paths relative to ``data.dir``, pixel
edges counted from 0). Images are decoded with their EXIF orientation applied, so boxes refer to
the picture a viewer shows. Every file found ends up accepted (it gave at least one crop) or in
the rejects list with its reason. A crop longer than ``crop.max_side`` on either side is stored
shrunk to it (aspect ratio kept), and a JPEG is decoded only as finely as its boxes need
(``images.Photo``). The crops go into raw-pixel shards (``crop_store``).
"""

from __future__ import annotations

import os
from pathlib import Path

from inception_pipeline.crop_store import MANIFEST_FIELDS, SHARD_NAME, ShardWriter
from inception_pipeline.cropping import (
    Job,
    check_rejected,
    crop_file,
    duplicate_sources,
    quality_metrics,
)
from inception_pipeline.errors import PipelineError, run
from inception_pipeline.io import atomic_dir, parallel_map, worker_count, write_csv, write_json
from inception_pipeline.layout import (
    CROPS_DIR,
    CSV_ANNOTATIONS,
    DATA_METRICS,
    DUPLICATES,
    MANIFEST,
    REJECTS,
)
from inception_pipeline.params import load_params
from inception_pipeline.sources import check_data_dir, find_files, read_csv_boxes, reject


def main() -> None:
    params = load_params()
    data, cfg = params["data"], params["crop"]
    data_dir = Path(data["dir"])
    check_data_dir(data_dir)
    candidates, rejects = find_files(data_dir, voc=data["annotations"] == "voc")
    misplaced = len(rejects)
    csv_boxes = None
    if data["annotations"] == "csv":
        csv_boxes, csv_rejects = read_csv_boxes(data_dir)
        rejects += csv_rejects
        rejects += [reject(path, "missing image", f"named in {CSV_ANNOTATIONS}")
                    for path in sorted(set(csv_boxes) - set(candidates))]
    if not candidates:
        raise PipelineError(f"data.dir={str(data_dir)!r}: no files in its class folders")

    with atomic_dir(CROPS_DIR) as tmp:
        real_root = os.path.realpath(data_dir)
        jobs = [Job(data_dir, real_root, rel,
                    None if csv_boxes is None else tuple(csv_boxes.get(rel, ())),
                    cfg["margin"], cfg["no_box"], cfg["max_pixels"], cfg["label_mismatch"],
                    cfg["max_side"])
                for rel in candidates]
        outcomes = []
        with ShardWriter(tmp, SHARD_NAME) as shards:
            # In file order, so the shards come out the same whatever the worker count.
            for outcome in parallel_map(crop_file, jobs, worker_count(data["workers"]), "crop"):
                for row, pixels in zip(outcome.crops, outcome.pixels, strict=True):
                    row["shard"], row["offset"] = shards.write(pixels)
                    row["height"], row["width"] = pixels.shape[:2]
                outcome.pixels.clear()
                outcomes.append(outcome)
        manifest = [row for o in outcomes for row in o.crops]
        rejects += [r for o in outcomes for r in o.rejects]
        duplicates, across = duplicate_sources(manifest)
        metrics = quality_metrics(misplaced, outcomes, rejects, duplicates, len(across))
        # Written before the checks below, so that a failed run still says why.
        write_csv(REJECTS, ["path", "reason", "detail"], rejects)
        write_csv(DUPLICATES, ["source_sha256", "source", "label"], across)
        write_json(DATA_METRICS, metrics)
        check_rejected(metrics, cfg["max_rejected"])
        if not manifest:
            raise PipelineError(f"data.dir={str(data_dir)!r}: no usable image; reasons in "
                                f"{REJECTS}")
        write_csv(tmp / MANIFEST, MANIFEST_FIELDS, manifest)
    print(f"crop: {metrics['files_found']} files in {data_dir}/: {metrics['files_accepted']} "
          f"accepted -> {len(manifest)} crops in {CROPS_DIR}/, {metrics['files_rejected']} "
          f"rejected; {len(rejects)} reject lines in {REJECTS}"
          + (f"; {len(across)} files share their content with another class, listed in "
             f"{DUPLICATES}" if across else ""))


if __name__ == "__main__":
    run(main)
