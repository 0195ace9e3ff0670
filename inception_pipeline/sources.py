"""Finding the labelled photos under ``data.dir``: one folder per class (the folder name is the
label), boxes in a VOC XML beside each image or in ``<data.dir>/annotations.csv``. Every file
found ends up a candidate image, an annotation input, or a reject line with its reason."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from inception_pipeline.annotations import AnnotationError, parse_csv_row
from inception_pipeline.errors import PipelineError
from inception_pipeline.io import read_csv
from inception_pipeline.layout import CSV_ANNOTATIONS


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
