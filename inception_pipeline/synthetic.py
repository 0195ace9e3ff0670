"""The embedded demo dataset: synthetic, deterministic scenes from ``sample.seed``.

Each class is a glyph from the DejaVu fonts that matplotlib ships. Every image is a cluttered
scene holding one or two objects of its folder's class, with a Pascal VOC XML beside it. Colour,
size, position, rotation, font weight, background and JPEG quality are drawn independently of the
class, so the only thing that tells classes apart is the object's shape: a network has to look at
the crop, and nothing else, to get it right.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# 51 classes, as in the study. Folder names are the labels; a few are non-ASCII or hold a space
# on purpose, so the demo exercises what real datasets contain.
CLASSES: dict[str, str] = {
    **{c: c for c in "ABCDEFGHJKLMNPRTUVWY"},
    **{d: d for d in "234578"},
    "Ω": "Ω", "λ": "λ", "ψ": "ψ", "Σ": "Σ", "Φ": "Φ",
    "star": "★", "spade": "♠", "club": "♣", "heart": "♥", "diamond": "♦",
    "umbrella": "☂", "sun": "☀", "airplane": "✈", "musical note": "♪", "telephone": "☎",
    "flag": "⚑", "flower": "✿", "yin yang": "☯", "knight": "♞", "anchor": "⚓",
    "scissors": "✂", "envelope": "✉", "at": "@", "ampersand": "&", "section": "§",
}


assert len(CLASSES) == 51


FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")


@dataclass(frozen=True)
class Object:
    label: str
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax, pixel edges (xmax exclusive)


@cache
def glyph_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name), size)


def _luminance(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A two-colour gradient with noise and random shapes: clutter around (and under) objects."""
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, width)[None, :, None] if rng.random() < 0.5 else \
        np.linspace(0, 1, height)[:, None, None]
    pixels = a * (1 - t) + b * t + rng.normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(4, 12)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, x1 = sorted(rng.integers(-20, width + 20, 2))
        y0, y1 = sorted(rng.integers(-20, height + 20, 2))
        kind = rng.integers(3)
        if kind == 0:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 4)))
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], outline=colour, width=int(rng.integers(1, 4)))
        else:
            draw.rectangle([x0, y0, x1, y1], fill=colour if rng.random() < 0.3 else None,
                           outline=colour)
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))


def _glyph_mask(rng: np.random.Generator, glyph: str, height: int) -> Image.Image:
    """The glyph as an 8-bit mask, rotated by up to 20 degrees and cut to its ink."""
    font = glyph_font(FONTS[rng.integers(len(FONTS))], height)
    left, top, right, bottom = font.getbbox(glyph)
    mask = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(mask).text((4 - left, 4 - top), glyph, fill=255, font=font)
    mask = mask.rotate(float(rng.uniform(-20, 20)), resample=Image.BICUBIC, expand=True)
    return mask.crop(mask.getbbox())


def free_spot(rng, size, scene_size, taken) -> tuple[int, int] | None:
    """A top-left corner where a ``size`` box fits inside the scene without touching ``taken``."""
    (w, h), (W, H) = size, scene_size
    for _ in range(30):
        x, y = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
        if not any(x < c + 4 and a < x + w + 4 and y < d + 4 and b < y + h + 4
                   for a, b, c, d in taken):
            return x, y
    return None


def place(rng, mask: Image.Image, scene_size: tuple[int, int], objects: list[Object]
          ) -> tuple[int, int, int, int] | None:
    """Shrink ``mask`` in place to fit the scene, then the box of a free spot for it (None when
    the scene has none)."""
    width, height = scene_size
    mask.thumbnail((width - 8, height - 8))
    spot = free_spot(rng, mask.size, scene_size, [o.box for o in objects])
    if spot is None:
        return None
    x, y = spot
    return x, y, x + mask.width, y + mask.height


def render_scene(seed: int, class_index: int, image_index: int, label: str, glyph: str
                 ) -> tuple[Image.Image, list[Object]]:
    """One scene of class ``label``; the same arguments always give the same pixels and boxes."""
    rng = np.random.default_rng([seed, class_index, image_index])
    width, height = (int(v) for v in rng.integers(128, 225, 2))
    image = _background(rng, width, height)
    objects: list[Object] = []
    for _ in range(1 if rng.random() < 0.7 else 2):
        mask = _glyph_mask(rng, glyph, int(rng.integers(40, min(width, height) - 16)))
        if (box := place(rng, mask, (width, height), objects)) is None:
            continue
        x, y = box[:2]
        region = np.asarray(image.crop(box)).reshape(-1, 3).mean(axis=0)
        colour = rng.integers(0, 256, 3)
        while abs(_luminance(colour) - _luminance(region)) < 70:  # keep the object visible
            colour = rng.integers(0, 256, 3)
        image.paste(tuple(int(v) for v in colour), (x, y), mask)
        objects.append(Object(label, box))
    return image, objects


def voc_xml(filename: str, folder: str, size: tuple[int, int], objects: list[Object]) -> bytes:
    """A minimal Pascal VOC annotation (1-based inclusive pixel coordinates, as VOC has them)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    size_el = ET.SubElement(root, "size")
    for tag, value in zip(("width", "height", "depth"), (*size, 3), strict=True):
        ET.SubElement(size_el, tag).text = str(value)
    for obj in objects:
        obj_el = ET.SubElement(root, "object")
        ET.SubElement(obj_el, "name").text = obj.label
        box_el = ET.SubElement(obj_el, "bndbox")
        xmin, ymin, xmax, ymax = obj.box
        voc_box = (xmin + 1, ymin + 1, xmax, ymax)
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), voc_box, strict=True):
            ET.SubElement(box_el, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


@dataclass(frozen=True)
class SceneKind:
    """What ``sample.difficulty`` picks: the classes, a scene renderer and the JPEG qualities."""
    classes: dict[str, str]  # folder name (label): glyph drawn
    render: Callable[[int, int, int, str, str], tuple[Image.Image, list[Object]]]
    jpeg_quality: tuple[int, int]  # drawn from [low, high)


def write_scene(job: tuple[Path, SceneKind, int, int, int, str, str]) -> None:
    """Render one scene and write its JPEG and VOC XML into its class folder."""
    out_dir, kind, seed, class_index, image_index, label, glyph = job
    image, objects = kind.render(seed, class_index, image_index, label, glyph)
    quality = int(np.random.default_rng([seed, class_index, image_index, 1]).integers(
        *kind.jpeg_quality))
    stem = f"{image_index:05d}"
    image.save(out_dir / label / f"{stem}.jpg", quality=quality)
    (out_dir / label / f"{stem}.xml").write_bytes(
        voc_xml(f"{stem}.jpg", label, image.size, objects))


DEMO = SceneKind(CLASSES, render_scene, (55, 96))
