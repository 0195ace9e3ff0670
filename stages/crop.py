"""crop: every bounding box of every image under ``data.dir`` becomes one crop.

Layout: one folder per class (the folder name is the label). Boxes come from a Pascal VOC XML
beside each image (``data.annotations: voc``) or from ``<data.dir>/annotations.csv`` with the
columns path, xmin, ymin, xmax, ymax[, label] (``csv``; paths relative to ``data.dir``, pixel
edges counted from 0). Images are decoded with their EXIF orientation applied, so boxes refer to
the picture a viewer shows. Every file found ends up accepted (it gave at least one crop) or in
the rejects list with its reason.

The crops go, as raw RGB pixels, into a few shard files (``crops-000.bin``, ...); manifest.csv
gives each crop's shard, offset and size. Raw pixels cost disk (height x width x 3 bytes per
crop, more than the JPEG they came from) but no PNG encode here and decode in resize, and a few
shards instead of a file per crop keep ``dvc status`` fast (BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as SafeET
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stages.errors import PipelineError, run
from stages.io import (
    ShardWriter,
    atomic_dir,
    parallel_map,
    read_csv,
    read_shard_array,
    worker_count,
    write_csv,
    write_json,
)
from stages.params import load_params

OUT_DIR = Path("data/crops")
MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ["crop", "source", "xmin", "ymin", "xmax", "ymax", "label", "source_sha256",
                   "shard", "offset", "height", "width"]
SHARD_NAME = "crops"
REJECTS = Path("metrics/rejects.csv")
DUPLICATES = Path("metrics/duplicates.csv")
DATA_METRICS = Path("metrics/data.json")
CSV_ANNOTATIONS = "annotations.csv"

Box = tuple[int, int, int, int]  # xmin, ymin, xmax, ymax: pixel edges, xmax/ymax exclusive

# crop.max_pixels replaces PIL's fixed limit (which raises beyond 179 MP): decode_image checks
# the size from the header against it.
Image.MAX_IMAGE_PIXELS = None


class AnnotationError(ValueError):
    """An annotation that cannot be used; the message is the reject reason."""


@dataclass
class Outcome:
    """What became of one file: its crops (manifest rows and pixels) and its rejected parts."""
    crops: list[dict] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    clipped: int = 0
    relabelled: int = 0


def parse_voc(xml: bytes) -> list[tuple[str | None, Box]]:
    """(label, box) for every object of a VOC annotation, converted to 0-based pixel edges.

    VOC counts pixels from 1 with xmax/ymax inclusive, so (1, 1, 10, 10) is the 10x10 square at
    the top left, which is (0, 0, 10, 10) here. Parsed with defusedxml: entity expansion and
    external entities are refused.
    """
    try:
        root = SafeET.fromstring(xml)
    except Exception as err:  # noqa: BLE001 (ParseError and defusedxml's refusals alike)
        raise AnnotationError(f"malformed XML ({type(err).__name__}: {err})") from None
    objects = []
    for obj in root.iter("object"):
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AnnotationError("object without bndbox")
        values = [_number(bndbox.findtext(tag), tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        name = obj.findtext("name")
        objects.append((name.strip() if name else None,
                        (round(values[0]) - 1, round(values[1]) - 1,
                         round(values[2]), round(values[3]))))
    return objects


def _number(text: str | None, name: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise AnnotationError(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{name}={text!r} is not a finite number")
    return value


def parse_csv_row(row: dict) -> tuple[str | None, Box]:
    """(label, box) from one annotations.csv row; coordinates are 0-based pixel edges."""
    box = tuple(round(_number(row.get(tag), tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
    label = (row.get("label") or "").strip() or None
    return label, box


def clip_box(box: Box, width: int, height: int) -> tuple[Box, bool]:
    """The part of ``box`` inside the image, and whether clipping changed it.

    Raises AnnotationError for a box that is inverted, has no area, or lies wholly outside.
    """
    xmin, ymin, xmax, ymax = box
    if xmax < xmin or ymax < ymin:
        raise AnnotationError(f"inverted box {box}")
    if xmax == xmin or ymax == ymin:
        raise AnnotationError(f"zero-area box {box}")
    clipped = (max(xmin, 0), max(ymin, 0), min(xmax, width), min(ymax, height))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise AnnotationError(f"box {box} lies outside the {width}x{height} image")
    return clipped, clipped != box


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """``box`` grown by ``margin`` of its width/height on each side, kept inside the image."""
    xmin, ymin, xmax, ymax = box
    dx, dy = round((xmax - xmin) * margin), round((ymax - ymin) * margin)
    return max(xmin - dx, 0), max(ymin - dy, 0), min(xmax + dx, width), min(ymax + dy, height)


def crop_region(box: Box, margin: float, width: int, height: int) -> tuple[Box, bool]:
    """The pixels cropped for ``box`` (clipped, then widened by ``margin``) and whether it was
    clipped; shared with the predict stage so that it crops as training did."""
    box, was_clipped = clip_box(box, width, height)
    return expand_box(box, margin, width, height), was_clipped


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode to RGB with EXIF orientation applied; refuse oversized images before decoding.

    The format comes from the content, not the file name. PIL cannot decode part of a JPEG or
    PNG, so a big image is decoded whole, but only once: no extra copy when it is already RGB
    and upright.
    """
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        # PIL's own message holds a memory address, which would make rejects.csv vary by run.
        raise UnidentifiedImageError("not an image format PIL reads") from None
    width, height = image.size
    if width * height > max_pixels:
        raise AnnotationError(f"image of {width}x{height} pixels exceeds crop.max_pixels="
                              f"{max_pixels} (decompression bomb?)")
    ImageOps.exif_transpose(image, in_place=True)
    image.load()  # a truncated file fails here, not halfway through its boxes
    if image.mode == "I" or image.mode.startswith("I;16"):
        return grey16_to_rgb(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def grey16_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits (value / 257, rounded): PIL's convert clips at 255."""
    values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    return Image.fromarray(((values + 128) // 257).astype(np.uint8)).convert("RGB")


def crop_name(source: str, index: int) -> str:
    """Name of box ``index`` of ``source``: ``c/sub/x.jpg`` -> ``c/sub__x.jpg-0``."""
    label, *rest = source.split("/")
    return f"{label}/{'__'.join(rest)}-{index}"


def load_crop(row: dict, directory: Path = OUT_DIR) -> np.ndarray:
    """The RGB pixels of the crop that manifest row ``row`` describes."""
    return read_shard_array(directory, row["shard"], int(row["offset"]),
                            (int(row["height"]), int(row["width"]), 3))


@dataclass(frozen=True)
class Job:
    """One file to crop, with everything a worker process needs."""
    data_dir: Path
    real_root: str  # os.path.realpath(data_dir), worked out once
    source: str  # path relative to data_dir, with "/" separators
    boxes: tuple | None  # from the CSV; None means read the VOC XML beside the image
    margin: float
    no_box: str
    max_pixels: int
    label_mismatch: str


def outside(path: Path, real_root: str) -> bool:
    """Whether ``path``, symlinks and ``..`` resolved, leads out of the folder whose
    ``os.path.realpath`` is ``real_root``."""
    real = os.path.realpath(path)
    return real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep)


def nfc(name: str) -> str:
    """Unicode NFC: macOS writes file names decomposed (NFD), annotation tools mostly not."""
    return unicodedata.normalize("NFC", name)


def reject(source: str, reason: str, detail: str = "") -> dict:
    return {"path": source, "reason": reason, "detail": detail}


def crop_file(job: Job) -> Outcome:
    """Decode one image, read its boxes, and cut out the pixels of every usable box."""
    outcome = Outcome()
    folder = nfc(job.source.split("/")[0])
    try:
        data = (job.data_dir / job.source).read_bytes()
        image = decode_image(data, job.max_pixels)
    except AnnotationError as err:
        outcome.rejects.append(reject(job.source, "image too large", str(err)))
        return outcome
    except Exception as err:  # noqa: BLE001 (PIL raises many types for files that are not images)
        outcome.rejects.append(reject(job.source, "unreadable image",
                                      f"{type(err).__name__}: {err}"))
        return outcome

    if job.boxes is not None:
        annotations = list(job.boxes)
    else:
        xml_path = (job.data_dir / job.source).with_suffix(".xml")
        if outside(xml_path, job.real_root):
            outcome.rejects.append(reject(job.source, "outside data root",
                                          f"its annotation links to {xml_path.resolve()}"))
            return outcome
        try:
            annotations = parse_voc(xml_path.read_bytes()) if xml_path.exists() else []
        except AnnotationError as err:
            outcome.rejects.append(reject(job.source, "bad annotation", str(err)))
            return outcome

    if not annotations:
        if job.no_box == "skip":
            outcome.rejects.append(reject(job.source, "no box", "crop.no_box=skip"))
            return outcome
        annotations = [(None, (0, 0, image.width, image.height))]

    digest = hashlib.sha256(data).hexdigest()
    for index, (label, box) in enumerate(annotations):
        if label is not None and nfc(label) != folder:
            if job.label_mismatch == "reject":
                detail = f"box {index} is labelled {label!r} in folder {folder!r}"
                outcome.rejects.append(reject(job.source, "label mismatch", detail))
                continue
            outcome.relabelled += 1
        try:
            box, was_clipped = crop_region(box, job.margin, image.width, image.height)
        except AnnotationError as err:
            outcome.rejects.append(reject(job.source, "bad box", f"box {index}: {err}"))
            continue
        outcome.clipped += was_clipped
        xmin, ymin, xmax, ymax = box
        # Box by box: an array of the whole image would be a second copy of a huge photo.
        outcome.pixels.append(np.asarray(image.crop(box)))
        outcome.crops.append({"crop": crop_name(job.source, index), "source": job.source,
                              "xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax,
                              "label": folder, "source_sha256": digest})
    return outcome


def walk(folder: Path, prefix: str = "") -> Iterator[tuple[str, os.DirEntry | OSError]]:
    """(path relative to ``folder``, its directory entry) for every file and symlink under
    ``folder``, in sorted order, or (path, error) for a folder that cannot be listed. Symlinked
    folders are listed as entries, not entered."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as err:
        yield prefix.rstrip("/") or ".", err
        return
    for entry in entries:
        rel = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from walk(Path(entry.path), rel + "/")
        elif entry.is_file() or entry.is_symlink():
            yield rel, entry


def find_files(data_dir: Path, voc: bool) -> tuple[list[str], list[dict]]:
    """Candidate images under ``data_dir`` and the files rejected for where or what they are.

    Annotation files (a VOC XML beside an image, the CSV at the root) are inputs, not items;
    an XML that no image reads (``voc`` False: every XML) is rejected, so no file goes unseen.
    """
    candidates, xmls, rejects = [], [], []
    real_root = os.path.realpath(data_dir)
    for rel, entry in walk(data_dir):
        if isinstance(entry, OSError):
            rejects.append(reject(rel, "unreadable folder", entry.strerror or str(entry)))
        elif rel == CSV_ANNOTATIONS:
            continue
        elif os.path.splitext(rel)[1].lower() == ".xml" and "/" in rel:
            xmls.append(rel)  # crop_file checks where the XML it reads leads
        elif entry.is_symlink() and outside(Path(entry.path), real_root):  # nothing else can
            rejects.append(reject(rel, "outside data root",
                                  f"symlink to {os.path.realpath(entry.path)}"))
        elif "/" not in rel:
            rejects.append(reject(rel, "not in a class folder"))
        else:
            candidates.append(rel)
    read = {Path(rel).with_suffix(".xml").as_posix() for rel in candidates} if voc else set()
    why = "no image beside it has its name" if voc else "data.annotations=csv"
    rejects += [reject(rel, "unused annotation", why) for rel in xmls if rel not in read]
    return candidates, rejects


def read_csv_boxes(data_dir: Path) -> tuple[dict[str, list], list[dict]]:
    """Boxes per image path from annotations.csv, and rows rejected with their reason."""
    csv_path = data_dir / CSV_ANNOTATIONS
    if not csv_path.is_file():
        raise PipelineError(f"{csv_path}: missing (data.annotations=csv needs it)")
    rows = read_csv(csv_path)
    missing = {"path", "xmin", "ymin", "xmax", "ymax"} - set(rows[0] if rows else ())
    if missing:
        raise PipelineError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}")
    boxes: dict[str, list] = {}
    rejects = []
    real_root = os.path.realpath(data_dir)
    for line, row in enumerate(rows, start=2):
        where = f"{CSV_ANNOTATIONS} line {line}"
        path = row["path"].replace("\\", "/")
        if outside(data_dir / path, real_root):
            rejects.append(reject(where, "outside data root", f"path {row['path']!r}"))
            continue
        try:
            boxes.setdefault(Path(path).as_posix(), []).append(parse_csv_row(row))
        except AnnotationError as err:
            rejects.append(reject(where, "bad box", str(err)))
    return boxes, rejects


def check_data_dir(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise PipelineError(f"data.dir={str(data_dir)!r}: no such folder")
    if not any(p.is_dir() for p in data_dir.iterdir()):
        raise PipelineError(f"data.dir={str(data_dir)!r}: no class folders in it "
                            f"(expected one folder per class)")


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

    with atomic_dir(OUT_DIR) as tmp:
        real_root = os.path.realpath(data_dir)
        jobs = [Job(data_dir, real_root, rel,
                    None if csv_boxes is None else tuple(csv_boxes.get(rel, ())),
                    cfg["margin"], cfg["no_box"], cfg["max_pixels"], cfg["label_mismatch"])
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
          f"accepted -> {len(manifest)} crops in {OUT_DIR}/, {metrics['files_rejected']} "
          f"rejected; {len(rejects)} reject lines in {REJECTS}"
          + (f"; {len(across)} files share their content with another class, listed in "
             f"{DUPLICATES}" if across else ""))


if __name__ == "__main__":
    run(main)
