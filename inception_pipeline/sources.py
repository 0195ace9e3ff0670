"""Finding the labelled photos under ``data.dir`` and reading the annotation files there. Every
file found ends up a candidate image, an annotation input, or a reject line with its reason.

By ``data.annotations``: ``voc``, a Pascal VOC XML beside each image; ``csv``,
``<data.dir>/annotations.csv``; ``coco``, ``<data.dir>/annotations.json``; ``yolo``, a label
``.txt`` beside each image (or in the ``labels/`` folder matching its ``images/`` folder) with
the class names in ``<data.dir>/classes.txt`` or ``data.yaml``. With voc and csv every image
lies in a class folder (the folder name is the label); with coco and yolo images may lie
anywhere and the label is the annotation's class.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from inception_pipeline.annotations import (
    AnnotationError,
    parse_class_list,
    parse_coco,
    parse_csv_row,
    parse_yolo_yaml,
)
from inception_pipeline.errors import PipelineError
from inception_pipeline.io import read_csv
from inception_pipeline.layout import COCO_ANNOTATIONS, CSV_ANNOTATIONS, YOLO_CLASSES, YOLO_DATA

# The files at the top of data.dir that each format reads; another format's are unused.
ROOT_INPUTS = {"voc": set(), "csv": {CSV_ANNOTATIONS}, "coco": {COCO_ANNOTATIONS},
               "yolo": {YOLO_CLASSES, YOLO_DATA}}
FOLDER_LABELS = ("voc", "csv")  # the formats whose images lie in class folders
SIDECAR = {"voc": ".xml", "yolo": ".txt"}  # the formats with one annotation file per image
UNUSED = {"voc": "no image beside it has its name", "yolo": "no image has it as its label file"}


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


def sidecar_paths(image: str, annotations: str) -> list[str]:
    """Where the annotation file of ``image`` may be, first found first: voc, the XML beside it;
    yolo, the .txt beside it, then Ultralytics' place (images/a/x.jpg -> labels/a/x.txt)."""
    if annotations not in SIDECAR:
        return []
    beside = PurePosixPath(image).with_suffix(SIDECAR[annotations])
    folders = list(beside.parts[:-1])
    if annotations != "yolo" or "images" not in folders:
        return [beside.as_posix()]
    folders[len(folders) - 1 - folders[::-1].index("images")] = "labels"
    return [beside.as_posix(), "/".join([*folders, beside.name])]


def find_files(data_dir: Path, annotations: str
               ) -> tuple[list[str], dict[str, str], list[dict]]:
    """Candidate images under ``data_dir``, the annotation file of each that has one (voc,
    yolo), and the files rejected for where or what they are.

    Annotation files (a VOC XML or YOLO .txt, the format's files at the top) are inputs, not
    items; one that no image reads (another format's: every one) is rejected, so no file goes
    unseen. ``annotations`` is data.annotations.
    """
    candidates, sidecars, rejects = [], [], []
    others = set().union(*ROOT_INPUTS.values()) - ROOT_INPUTS[annotations]
    real_root = os.path.realpath(data_dir)
    for rel, entry in walk(data_dir):
        suffix = os.path.splitext(rel)[1].lower()
        if isinstance(entry, OSError):
            rejects.append(reject(rel, "unreadable folder", entry.strerror or str(entry)))
        elif rel in ROOT_INPUTS[annotations]:
            continue
        elif (rel in others or suffix == ".xml" and "/" in rel
              or suffix == ".txt" and annotations == "yolo"):
            sidecars.append(rel)  # crop_file checks where the one it reads leads
        elif entry.is_symlink() and outside(Path(entry.path), real_root):  # nothing else can
            rejects.append(reject(rel, "outside data root",
                                  f"symlink to {os.path.realpath(entry.path)}"))
        elif "/" not in rel and annotations in FOLDER_LABELS:
            rejects.append(reject(rel, "not in a class folder"))
        else:
            candidates.append(rel)
    present = set(sidecars)
    annotation_files = {}
    for rel in candidates:
        found = [path for path in sidecar_paths(rel, annotations) if path in present]
        if found:
            annotation_files[rel] = found[0]
    read = set(annotation_files.values())
    for rel in sidecars:
        if rel not in read:
            own = os.path.splitext(rel)[1].lower() == SIDECAR.get(annotations)
            rejects.append(reject(rel, "unused annotation", UNUSED[annotations] if own
                                  else f"data.annotations={annotations}"))
    return candidates, annotation_files, rejects


def read_boxes(data_dir: Path, annotations: str, candidates: list[str]
               ) -> tuple[dict[str, list] | None, dict | None, list[dict]]:
    """What crop needs besides the images, by data.annotations: the entries of every image
    (csv, coco: from their one file; None with voc and yolo, whose files crop reads image by
    image), the class names by id (coco, yolo; None: every top-level folder is a class), and
    the reject lines of the one file (entries naming no image, images named but missing)."""
    if annotations == "voc":
        return None, None, []
    if annotations == "yolo":
        return None, read_yolo_classes(data_dir), []
    if annotations == "csv":
        boxes, rejects = read_csv_boxes(data_dir)
        classes, source = None, CSV_ANNOTATIONS
    else:
        classes, boxes, rejects = read_coco_boxes(data_dir)
        source = COCO_ANNOTATIONS
    rejects += [reject(path, "missing image", f"named in {source}")
                for path in sorted(set(boxes) - set(candidates))]
    return boxes, classes, rejects


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


def read_input(path: Path, annotations: str) -> bytes:
    """A file that data.annotations cannot do without: missing or unreadable stops crop."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror or err}); "
                            f"data.annotations={annotations} needs it") from None


def read_coco_boxes(data_dir: Path) -> tuple[dict, dict[str, list], list[dict]]:
    """From annotations.json: the class names by category id, the entries of every image it
    lists (by path relative to ``data_dir``), and reject lines for annotations of no listed
    image and for images leading outside ``data_dir``. A file that is not COCO stops crop."""
    path = data_dir / COCO_ANNOTATIONS
    try:
        coco = parse_coco(read_input(path, "coco"))
    except AnnotationError as err:
        raise PipelineError(f"{path}: {err}") from None
    rejects = [reject(COCO_ANNOTATIONS, "unknown image", detail) for detail in coco.orphans]
    boxes = {}
    real_root = os.path.realpath(data_dir)
    for name, entries in coco.images.items():
        if outside(data_dir / name, real_root):
            rejects.append(reject(COCO_ANNOTATIONS, "outside data root", f"file_name {name!r}"))
        else:
            boxes[name] = entries
    return coco.classes, boxes, rejects


def read_yolo_classes(data_dir: Path) -> dict[int, str]:
    """The class names by index, from classes.txt or data.yaml (not both: they could
    disagree). Missing, unreadable or malformed stops crop."""
    found = [data_dir / name for name in (YOLO_CLASSES, YOLO_DATA) if (data_dir / name).exists()]
    if not found:
        raise PipelineError(f"{data_dir / YOLO_CLASSES}: missing (data.annotations=yolo needs "
                            f"it, or {YOLO_DATA})")
    if len(found) > 1:
        raise PipelineError(f"{data_dir}: both {YOLO_CLASSES} and {YOLO_DATA} name the classes; "
                            f"keep one")
    parse = parse_class_list if found[0].name == YOLO_CLASSES else parse_yolo_yaml
    try:
        return parse(read_input(found[0], "yolo"))
    except AnnotationError as err:
        raise PipelineError(f"{found[0]}: {err}") from None


def check_data_dir(data_dir: Path, annotations: str) -> None:
    if not data_dir.is_dir():
        raise PipelineError(f"data.dir={str(data_dir)!r}: no such folder")
    if annotations in FOLDER_LABELS and not any(p.is_dir() for p in data_dir.iterdir()):
        raise PipelineError(f"data.dir={str(data_dir)!r}: no class folders in it "
                            f"(expected one folder per class)")
