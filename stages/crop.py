"""crop: every bounding box of every image under ``data.dir`` becomes one crop.

Boxes come from ``data.annotations``: ``voc``, a Pascal VOC XML beside each image; ``csv``,
``<data.dir>/annotations.csv`` (path, xmin, ymin, xmax, ymax[, label]); ``coco``,
``<data.dir>/annotations.json``; ``yolo``, a label .txt per image with the class names in
``<data.dir>/classes.txt`` or ``data.yaml`` (inception_pipeline/sources.py). With voc and csv
every image lies in a class folder, whose name is the label; with coco and yolo the label is
the annotation's class, unless the image lies in a folder named after a class. Images are
decoded with their EXIF orientation applied, so boxes refer to the picture a viewer shows.
Every file found ends up accepted (it gave at least one crop) or in the rejects list with its
reason. A crop longer than ``crop.max_side`` on either side is stored shrunk to it (aspect
ratio kept), and a JPEG is decoded only as finely as its boxes need (``images.Photo``). The
crops go into raw-pixel shards (``crop_store``).
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
from inception_pipeline.images import configure_decoders
from inception_pipeline.io import atomic_dir, parallel_map, worker_count, write_csv, write_json
from inception_pipeline.layout import CROPS_DIR, DATA_METRICS, DUPLICATES, MANIFEST, REJECTS
from inception_pipeline.params import load_params
from inception_pipeline.sources import FOLDER_LABELS, check_data_dir, find_files, read_boxes


def main() -> None:
    params = load_params()
    configure_decoders()
    data, cfg = params["data"], params["crop"]
    data_dir, annotations = Path(data["dir"]), data["annotations"]
    check_data_dir(data_dir, annotations)
    candidates, annotation_files, rejects = find_files(data_dir, annotations)
    misplaced = len(rejects)
    boxes, classes, box_rejects = read_boxes(data_dir, annotations, candidates)
    rejects += box_rejects
    if not candidates:
        where = "its class folders" if annotations in FOLDER_LABELS else "it"
        raise PipelineError(f"data.dir={str(data_dir)!r}: no files in {where}")

    with atomic_dir(CROPS_DIR) as tmp:
        real_root = os.path.realpath(data_dir)
        jobs = [Job(data_dir, real_root, rel, annotations, annotation_files.get(rel),
                    None if boxes is None else tuple(boxes.get(rel, ())), classes,
                    cfg["margin"], cfg["no_box"], cfg["max_pixels"], cfg["label_mismatch"],
                    cfg["max_side"])
                for rel in candidates]
        outcomes = []
        with ShardWriter(tmp, SHARD_NAME) as shards:
            # In file order, so the shards come out the same whatever the worker count.
            for outcome in parallel_map(crop_file, jobs, worker_count(data["workers"]), "crop",
                                        configure_decoders):
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
