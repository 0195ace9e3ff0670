"""Annotation parsers, to 0-based pixel-edge boxes: Pascal VOC XML, annotations.csv rows, COCO
JSON, YOLO label files and their class lists (classes.txt, data.yaml). Pure: finding and
reading the files is sources.py's."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import PurePosixPath

import defusedxml.ElementTree as SafeET
import yaml

Box = tuple[int, int, int, int]  # xmin, ymin, xmax, ymax: pixel edges, xmax/ymax exclusive


class AnnotationError(ValueError):
    """An annotation that cannot be used; the message is the reject detail."""


@dataclass(frozen=True)
class Problem:
    """An annotation entry that cannot be used. Crop rejects it under its image's path, so an
    image whose every entry is bad is rejected, not taken whole as an image without boxes."""
    reason: str  # "bad box" or "unknown class"
    detail: str


@dataclass(frozen=True)
class Normalised:
    """A YOLO box: centre and size as fractions of the image's width and height. Its pixel
    edges need the size of the image as shown (EXIF orientation applied), known once decoded."""
    cx: float
    cy: float
    width: float
    height: float

    def pixels(self, width: int, height: int) -> Box:
        """Each edge rounded to the nearest pixel edge, as the CSV's and COCO's are."""
        half_w, half_h = self.width / 2, self.height / 2
        return (round((self.cx - half_w) * width), round((self.cy - half_h) * height),
                round((self.cx + half_w) * width), round((self.cy + half_h) * height))


# What a parser gives for each box: (label or None, box), or the Problem that makes it unusable.
Entry = tuple[str | None, Box | Normalised] | Problem


def to_pixels(box: Box | Normalised, width: int, height: int) -> Box:
    return box.pixels(width, height) if isinstance(box, Normalised) else box


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


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # a byte-order mark, as Windows tools write, is dropped
    except UnicodeDecodeError as err:
        raise AnnotationError(f"not UTF-8 text (byte {err.start})") from None


@dataclass(frozen=True)
class Coco:
    classes: dict[int | str, str]  # category id -> name
    images: dict[str, list[Entry]]  # file_name ("/" separators) -> its entries, every image listed
    orphans: list[str]  # annotations whose image_id no image has: "annotations[N]: ..."


def parse_coco(data: bytes) -> Coco:
    """A COCO JSON's categories, images and their boxes.

    bbox is [x, y, width, height] in pixels, x and y of the top-left corner, counted from 0;
    its edges x, y, x + width, y + height are each rounded to the nearest pixel edge. A file
    that is not COCO (malformed JSON, a section missing, an image or category without id or
    name, a repeated id) raises AnnotationError; a bad bbox or an unknown category_id is that
    annotation's Problem.
    """
    try:
        document = json.loads(_text(data))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"malformed JSON ({err})") from None
    if not isinstance(document, dict):
        raise AnnotationError("expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            raise AnnotationError(f"{key}: missing or not a list")
    classes = {i: name.strip() for i, name in _ids(document["categories"], "categories",
                                                   "name").items()}
    files = _ids(document["images"], "images", "file_name")
    images: dict[str, list[Entry]] = {_posix(name): [] for name in files.values()}
    orphans = []
    for index, annotation in enumerate(document["annotations"]):
        where = f"annotations[{index}]"
        if not isinstance(annotation, dict) or not {"image_id", "category_id", "bbox"} <= set(
                annotation):
            raise AnnotationError(f"{where}: expected an object with image_id, category_id "
                                  f"and bbox")
        image = annotation["image_id"]
        if not _is_id(image) or image not in files:
            orphans.append(f"{where}: image_id {image!r} is not in images")
            continue
        images[_posix(files[image])].append(_coco_entry(annotation, classes, where))
    return Coco(classes, images, orphans)


def _posix(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/")).as_posix()


def _is_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _ids(items: list, section: str, field: str) -> dict:
    """{id: item[field]} for COCO's images or categories."""
    found: dict = {}
    for index, item in enumerate(items):
        where = f"{section}[{index}]"
        if not (isinstance(item, dict) and _is_id(item.get("id"))
                and isinstance(item.get(field), str) and item[field].strip()):
            raise AnnotationError(f"{where}: expected an object with an integer or string id "
                                  f"and a non-empty {field}")
        if item["id"] in found:
            raise AnnotationError(f"{where}: id {item['id']!r} repeats an earlier one's")
        found[item["id"]] = item[field]
    return found


def _coco_entry(annotation: dict, classes: dict, where: str) -> Entry:
    bbox = annotation["bbox"]
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in bbox)):
        return Problem("bad box", f"{where}: bbox {bbox!r} is not four numbers "
                                  f"[x, y, width, height]")
    category = annotation["category_id"]
    if not _is_id(category) or category not in classes:
        return Problem("unknown class", f"{where}: category_id {category!r} is not in "
                                        f"categories")
    x, y, width, height = bbox
    return classes[category], (round(x), round(y), round(x + width), round(y + height))


def parse_yolo(data: bytes, classes: dict[int, str] | None) -> list[Entry]:
    """One entry per non-blank line ``class cx cy w h`` of a YOLO label file, in order (box N is
    the Nth non-blank line, counted from 0). ``classes`` (index -> name) gives the labels; None
    (predicting) takes any class index and leaves the label unknown."""
    return [_yolo_entry(line.split(), classes, f"line {number}")
            for number, line in enumerate(_text(data).splitlines(), start=1) if line.strip()]


def _yolo_entry(fields: list[str], classes: dict[int, str] | None, where: str) -> Entry:
    if len(fields) != 5:
        return Problem("bad box", f"{where}: {len(fields)} fields, expected 5 (class cx cy w h)")
    try:
        index = int(fields[0])
    except ValueError:
        return Problem("bad box", f"{where}: class={fields[0]!r} is not an integer")
    try:
        box = Normalised(*(_number(text, name) for text, name
                           in zip(fields[1:], ("cx", "cy", "w", "h"), strict=True)))
    except AnnotationError as err:
        return Problem("bad box", f"{where}: {err}")
    if classes is None:
        return None, box
    if index not in classes:
        return Problem("unknown class", f"{where}: class {index} is not in the class list "
                                        f"({len(classes)} names)")
    return classes[index], box


def parse_class_list(data: bytes) -> dict[int, str]:
    """classes.txt: one class name a line, line N (from 0) naming class N."""
    names = {}
    for index, line in enumerate(_text(data).rstrip().splitlines()):
        if not line.strip():
            raise AnnotationError(f"line {index + 1}: empty, but class {index} needs a name")
        names[index] = line.strip()
    if not names:
        raise AnnotationError("no class names in it")
    return names


def parse_yolo_yaml(data: bytes) -> dict[int, str]:
    """data.yaml's ``names``: a list (index = position) or a mapping index -> name, as
    Ultralytics writes it. An unquoted number is taken as the name it reads as (class 4 of a
    digits dataset), other non-strings (``yes`` reads as true) are refused."""
    try:
        document = yaml.safe_load(_text(data))
    except yaml.YAMLError as err:
        raise AnnotationError(f"malformed YAML ({' '.join(str(err).split())})") from None
    names = document.get("names") if isinstance(document, dict) else None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise AnnotationError("names: missing, or not a list or mapping of class names")
    for index, name in names.items():
        if not (type(index) is int and index >= 0 and type(name) in (str, int)
                and str(name).strip()):
            raise AnnotationError(f"names: {index!r}: {name!r} is not a class index and name "
                                  f"(quote names YAML reads otherwise)")
    return {index: str(name).strip() for index, name in names.items()}
