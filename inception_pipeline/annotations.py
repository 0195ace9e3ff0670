"""Annotation parsers: Pascal VOC XML and annotations.csv rows, to 0-based pixel-edge boxes."""

from __future__ import annotations

import math

import defusedxml.ElementTree as SafeET

Box = tuple[int, int, int, int]  # xmin, ymin, xmax, ymax: pixel edges, xmax/ymax exclusive


class AnnotationError(ValueError):
    """An annotation that cannot be used; the message is the reject reason."""


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
