"""One photo to its crops: decode, read its boxes, cut out every usable box; and the data-quality
counts over all photos. Every file ends up accepted (it gave at least one crop) or rejected with
its reason."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inception_pipeline.annotations import (
    AnnotationError,
    Problem,
    parse_voc,
    parse_yolo,
    to_pixels,
)
from inception_pipeline.crop_store import crop_name
from inception_pipeline.errors import PipelineError
from inception_pipeline.images import Photo, crop_region
from inception_pipeline.layout import DATA_METRICS, REJECTS
from inception_pipeline.sources import nfc, outside, reject


@dataclass
class Outcome:
    """What became of one file: its crops (manifest rows and pixels) and its rejected parts."""
    crops: list[dict] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    clipped: int = 0
    relabelled: int = 0


@dataclass(frozen=True)
class Job:
    """One file to crop, with everything a worker process needs."""
    data_dir: Path
    real_root: str  # os.path.realpath(data_dir), worked out once
    source: str  # path relative to data_dir, with "/" separators
    annotations: str  # data.annotations
    annotation_file: str | None  # voc, yolo: this image's annotation file, if it has one
    boxes: tuple | None  # csv, coco: this image's entries, read from the one annotation file
    classes: dict | None  # coco, yolo: class names by id; None: every top folder is a class
    margin: float
    no_box: str
    max_pixels: int
    label_mismatch: str
    max_side: int


def crop_file(job: Job) -> Outcome:
    """Open one image, read its boxes, decode it as finely as they need and cut out the pixels
    of every usable box, bounded to crop.max_side.

    The label is the image's top-level folder when that is a class folder (voc, csv: always;
    coco, yolo: when its name is a class name), else the annotation's class.
    """
    outcome = Outcome()
    folder = nfc(job.source.split("/")[0]) if "/" in job.source else ""
    class_folder = job.classes is None or folder in {nfc(n) for n in job.classes.values()}
    try:
        data = (job.data_dir / job.source).read_bytes()
        image = Photo(data, job.max_pixels)
    except AnnotationError as err:
        outcome.rejects.append(reject(job.source, "image too large", str(err)))
        return outcome
    except Exception as err:  # noqa: BLE001 (PIL raises many types for files that are not images)
        outcome.rejects.append(reject(job.source, "unreadable image",
                                      f"{type(err).__name__}: {err}"))
        return outcome

    if job.boxes is not None:
        annotations = list(job.boxes)
    elif job.annotation_file is None:
        annotations = []
    else:
        path = job.data_dir / job.annotation_file
        if outside(path, job.real_root):
            outcome.rejects.append(reject(job.source, "outside data root",
                                          f"its annotation links to {path.resolve()}"))
            return outcome
        try:
            content = path.read_bytes()
            annotations = (parse_voc(content) if job.annotations == "voc"
                           else parse_yolo(content, job.classes))
        except (OSError, AnnotationError) as err:
            why = getattr(err, "strerror", None) or err
            outcome.rejects.append(reject(job.source, "bad annotation",
                                          f"{job.annotation_file}: {why}"))
            return outcome

    if not annotations:
        if job.no_box == "skip":
            outcome.rejects.append(reject(job.source, "no box", "crop.no_box=skip"))
            return outcome
        if not class_folder:
            outcome.rejects.append(reject(job.source, "no box", "crop.no_box=whole, but no "
                                          "class folder to label it"))
            return outcome
        annotations = [(None, (0, 0, image.width, image.height))]

    # The decode scale comes from every valid box, whatever its label, as predict sees them.
    regions = []
    for entry in annotations:
        try:
            regions.append(entry if isinstance(entry, Problem) else crop_region(
                to_pixels(entry[1], image.width, image.height), job.margin, image.width,
                image.height))
        except AnnotationError as err:
            regions.append(err)
    try:
        image.load([r[0] for r in regions if isinstance(r, tuple)], job.max_side)
    except PipelineError:  # the decoder library missing: not the file's fault
        raise
    except Exception as err:  # noqa: BLE001 (as above: a truncated file fails here)
        outcome.rejects.append(reject(job.source, "unreadable image",
                                      f"{type(err).__name__}: {err}"))
        return outcome

    digest = hashlib.sha256(data).hexdigest()
    for index, (entry, region) in enumerate(zip(annotations, regions, strict=True)):
        if isinstance(entry, Problem):
            outcome.rejects.append(reject(job.source, entry.reason, f"box {index}: {entry.detail}"))
            continue
        label = entry[0]
        if class_folder:
            if label is not None and nfc(label) != folder:
                if job.label_mismatch == "reject":
                    detail = f"box {index} is labelled {label!r} in folder {folder!r}"
                    outcome.rejects.append(reject(job.source, "label mismatch", detail))
                    continue
                outcome.relabelled += 1
            label = folder
        if isinstance(region, AnnotationError):
            outcome.rejects.append(reject(job.source, "bad box", f"box {index}: {region}"))
            continue
        box, was_clipped = region
        outcome.clipped += was_clipped
        xmin, ymin, xmax, ymax = box
        # Box by box: an array of the whole image would be a second copy of a huge photo.
        outcome.pixels.append(image.cut(box, job.max_side))
        outcome.crops.append({"crop": crop_name(job.source, index), "source": job.source,
                              "xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax,
                              "label": nfc(label), "source_sha256": digest})
    return outcome


def duplicate_sources(manifest: list[dict]) -> tuple[int, list[dict]]:
    """How many accepted files have their exact content at another path too, and the rows
    (source_sha256, source, label) of those whose copies lie in different class folders.

    Such copies are kept: split puts all crops of one content in one split, so a copy in two
    classes cannot leak from train into test, but one of its labels is likely wrong.
    """
    by_content: dict[str, dict[str, str]] = defaultdict(dict)
    for row in manifest:
        by_content[row["source_sha256"]][row["source"]] = row["label"]
    shared = {digest: files for digest, files in by_content.items() if len(files) > 1}
    across = [{"source_sha256": digest, "source": source, "label": label}
              for digest, files in sorted(shared.items()) if len(set(files.values())) > 1
              for source, label in sorted(files.items())]
    return sum(map(len, shared.values())), across


def quality_metrics(misplaced: int, outcomes: list[Outcome], rejects: list[dict],
                    duplicates: int, across: int) -> dict:
    """Data-quality counts. Every file found is either accepted (it gave at least one crop) or
    rejected, so files_found = files_accepted + files_rejected; rejects_by_reason counts every
    reject line, including single boxes of accepted files."""
    accepted = sum(1 for o in outcomes if o.crops)
    return {
        "files_found": misplaced + len(outcomes),
        "files_accepted": accepted,
        "files_rejected": misplaced + len(outcomes) - accepted,
        "crops": sum(len(o.crops) for o in outcomes),
        "boxes_clipped": sum(o.clipped for o in outcomes),
        "boxes_relabelled": sum(o.relabelled for o in outcomes),
        "duplicate_sources": duplicates,
        "duplicate_sources_across_classes": across,
        "rejects_by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items())),
    }


def check_rejected(metrics: dict, max_rejected: float) -> None:
    """Stop when more than ``crop.max_rejected`` of the files were rejected: a wrong data.dir
    or annotation format should fail loudly, not train on the few files that got through."""
    fraction = metrics["files_rejected"] / metrics["files_found"]
    if fraction > max_rejected:
        raise PipelineError(f"crop.max_rejected={max_rejected}: {metrics['files_rejected']} of "
                            f"{metrics['files_found']} files rejected ({fraction:.1%}); reasons "
                            f"in {REJECTS} and {DATA_METRICS}")
