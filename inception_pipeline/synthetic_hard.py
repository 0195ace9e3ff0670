"""The hard benchmark (``sample.difficulty: hard``): synthetic scenes built to be hard like photos.

The demo's scenes (synthetic.py) are easy on purpose: one flat-coloured glyph, kept visible
against a plain background. Here everything real photos throw at a classifier is drawn on top
of the same idea (a class is a shape, nothing else), each from ``sample.seed`` alone:

- confusable classes (O Q, E F, spade club) beside distinct shapes, each drawn in any of up to
  19 fonts (sans, serif, mono; bold, italic) that has it, sheared, stretched and, half the
  time, mirrored (objects are photographed from either side, so flips are fair augmentation);
- objects filled with fabric-like textures (stripes, checks, plaid, blobs): about two thirds in
  their class's typical colours and kind, the rest in random ones, so colour is a hint, not the
  answer;
- photo-like clutter: textured patches and blobs behind the object, and glyphs of *other* classes
  as distractors, some reaching into the object's box;
- occluders over part of the object; object sizes from three to nine tenths of the image's
  short side, so small objects are enlarged and blurred by resize;
- uneven lighting and colour casts, defocus blur, sensor noise, low JPEG qualities, and
  annotated boxes that are a few pixels off, as hand-drawn boxes are.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from inception_pipeline.synthetic import Object, SceneKind, glyph_font, place

# The first ten mix confusable pairs (O Q, E F, spade club) with distinct shapes, as a small real
# dataset has; the rest add more of each kind.
HARD_CLASSES: dict[str, str] = {
    "O": "O", "Q": "Q", "E": "E", "F": "F", "spade": "♠", "club": "♣", "star": "★",
    "airplane": "✈", "anchor": "⚓", "scissors": "✂",
    "6": "6", "8": "8", "B": "B", "P": "P", "heart": "♥", "diamond": "♦", "umbrella": "☂",
    "knight": "♞", "envelope": "✉", "telephone": "☎",
}

HARD_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf",
    "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf",
    "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf",
)


def texture(rng: np.random.Generator, width: int, height: int,
            look: tuple[np.ndarray, np.ndarray, int] | None = None) -> np.ndarray:
    """A ``height x width x 3`` fabric-like texture in [0, 1]: flat, stripes, checks or blobs;
    in ``look``'s two colours (each jittered) and kind when given, else in random ones."""
    if look is None:
        a, b, kind = rng.random(3), rng.random(3), rng.integers(4)
    else:
        a, b = (np.clip(c + rng.normal(0, 0.08, 3), 0, 1) for c in look[:2])
        kind = look[2]
    if kind == 0:
        mix = np.zeros((height, width))
    elif kind in (1, 2):
        yy, xx = np.mgrid[0:height, 0:width]
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 16)
        mix = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period) > 0
        if kind == 2:  # checks / plaid: a second set of stripes across the first
            across = np.sin(2 * np.pi * (-xx * np.sin(angle) + yy * np.cos(angle))
                            / rng.uniform(3, 16)) > 0
            mix = (mix.astype(float) + across) / 2
    else:
        coarse = rng.random((int(rng.integers(2, 7)), int(rng.integers(2, 7))))
        mix = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize(
            (width, height), Image.BICUBIC), dtype=float) / 255
    mix = np.asarray(mix, dtype=float)[..., None]
    grain = rng.normal(0, rng.uniform(0, 0.06), (height, width, 1))
    return np.clip(a * (1 - mix) + b * mix + grain, 0, 1)


@cache
def fonts_with(glyph: str) -> tuple[str, ...]:
    """The fonts of HARD_FONTS that draw ``glyph`` (not as the missing-glyph box)."""
    def ink(font_name: str, character: str) -> bytes:
        mask = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(mask).text((8, 8), character, fill=255, font=glyph_font(font_name, 40))
        return mask.tobytes()
    return tuple(name for name in HARD_FONTS
                 if any(ink(name, glyph)) and ink(name, glyph) != ink(name, "\uffff"))


def class_look(seed: int, class_index: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A class's typical colours and texture kind: real classes have them (denim is blue)."""
    rng = np.random.default_rng([seed, class_index, 3])
    return rng.random(3), rng.random(3), int(rng.integers(4))


def _shape_mask(rng: np.random.Generator, glyph: str, height: int) -> Image.Image:
    """The glyph in a random font, rotated, sheared and stretched, cut to its ink."""
    fonts = fonts_with(glyph)
    font = glyph_font(fonts[rng.integers(len(fonts))], height)
    left, top, right, bottom = font.getbbox(glyph)
    mask = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(mask).text((4 - left, 4 - top), glyph, fill=255, font=font)
    shear = float(rng.uniform(-0.3, 0.3))
    mask = mask.transform(mask.size, Image.AFFINE, (1, shear, -shear * mask.height / 2, 0, 1, 0),
                          resample=Image.BICUBIC)
    stretch = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
    mask = mask.resize((max(1, round(mask.width * stretch)), mask.height), Image.BICUBIC)
    mask = mask.rotate(float(rng.uniform(-30, 30)), resample=Image.BICUBIC, expand=True)
    if rng.random() < 0.5:  # seen from the other side, as a photographed object can be
        mask = mask.transpose(Image.FLIP_LEFT_RIGHT)
    return mask.crop(mask.getbbox())


def _paste(canvas: np.ndarray, fill: np.ndarray, mask: Image.Image, x: int, y: int) -> None:
    """Blend ``fill`` into ``canvas`` through ``mask`` at (x, y), clipped to the canvas."""
    height, width = canvas.shape[:2]
    alpha = np.asarray(mask, dtype=float)[..., None] / 255
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + mask.width, width), min(y + mask.height, height)
    if x1 <= x0 or y1 <= y0:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - a) + fill[y0 - y:y1 - y, x0 - x:x1 - x] * a


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Textured patches over a textured ground: clutter with edges at every scale."""
    canvas = texture(rng, width, height)
    for _ in range(rng.integers(3, 9)):
        w, h = (int(rng.integers(16, max(17, s // 2 + 1))) for s in (width, height))
        mask = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(mask)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([0, 0, w - 1, h - 1], fill=255)
        mask = mask.rotate(float(rng.uniform(0, 180)), expand=True)
        _paste(canvas, texture(rng, mask.width, mask.height), mask,
               int(rng.integers(-w // 2, width)), int(rng.integers(-h // 2, height)))
    return canvas


def _distractors(rng: np.random.Generator, canvas: np.ndarray, others: list[str]) -> None:
    """Glyphs of other classes anywhere in the scene (drawn before the objects, so under them)."""
    height, width = canvas.shape[:2]
    for _ in range(rng.integers(0, 3)):
        mask = _shape_mask(rng, others[rng.integers(len(others))],
                           int(rng.integers(16, max(17, min(width, height) // 3))))
        _paste(canvas, texture(rng, mask.width, mask.height), mask,
               int(rng.integers(-mask.width // 3, width)), int(rng.integers(-mask.height // 3,
                                                                          height)))


def _occlude(rng: np.random.Generator, canvas: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """A textured bar or blob over 10-30% of the box, entering from one of its sides."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cover = rng.uniform(0.10, 0.30)
    if rng.random() < 0.5:  # from the left or right
        ow, oh = max(2, round(w * cover)), round(h * rng.uniform(0.6, 1.2))
        ox = x0 - ow // 3 if rng.random() < 0.5 else x1 - ow + ow // 3
        oy = y0 + int(rng.integers(-h // 5, h // 5 + 1))
    else:  # from the top or bottom
        ow, oh = round(w * rng.uniform(0.6, 1.2)), max(2, round(h * cover))
        ox = x0 + int(rng.integers(-w // 5, w // 5 + 1))
        oy = y0 - oh // 3 if rng.random() < 0.5 else y1 - oh + oh // 3
    mask = Image.new("L", (max(ow, 2), max(oh, 2)), 0)
    draw = ImageDraw.Draw(mask)
    (draw.ellipse if rng.random() < 0.4 else draw.rectangle)([0, 0, mask.width - 1,
                                                              mask.height - 1], fill=255)
    _paste(canvas, texture(rng, mask.width, mask.height), mask, ox, oy)


def _lighting(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Uneven light (a gradient and a falloff from a random centre) and a colour cast."""
    height, width = canvas.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    cx, cy = rng.random(2)
    falloff = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / rng.uniform(0.1, 0.8))
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (xx * np.cos(angle) + yy * np.sin(angle)) * rng.uniform(-0.5, 0.5)
    light = rng.uniform(0.45, 1.1) + 0.5 * falloff * rng.uniform(0, 1) + gradient
    cast = rng.uniform(0.8, 1.2, 3)
    return canvas * light[..., None] * cast


def _visible_texture(rng: np.random.Generator, under: np.ndarray, mask: Image.Image,
                     look: tuple[np.ndarray, np.ndarray, int] | None) -> np.ndarray:
    """A texture for the object whose mean brightness differs from what lies under it by at
    least 0.1, as a photographed object's mostly does (five tries, then the last one)."""
    for _ in range(5):
        fill = texture(rng, mask.width, mask.height, look)
        if abs(_luminance(fill) - _luminance(under)) >= 0.1:
            break
    return fill


def _luminance(pixels: np.ndarray) -> float:
    return float((pixels.reshape(-1, 3).mean(axis=0) * (0.299, 0.587, 0.114)).sum())


def _jitter_box(rng, box, width, height) -> tuple[int, int, int, int]:
    """The box as a person draws it: each edge off by up to 6% of the box's size."""
    x0, y0, x1, y1 = box
    dx, dy = 0.06 * (x1 - x0), 0.06 * (y1 - y0)
    x0, x1 = (int(round(v + rng.uniform(-dx, dx))) for v in (x0, x1))
    y0, y1 = (int(round(v + rng.uniform(-dy, dy))) for v in (y0, y1))
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def render_hard_scene(seed: int, class_index: int, image_index: int, label: str, glyph: str
                      ) -> tuple[Image.Image, list[Object]]:
    """One hard scene of class ``label``; the same arguments always give the same pixels."""
    rng = np.random.default_rng([seed, class_index, image_index, 2])
    width, height = (int(v) for v in rng.integers(160, 321, 2))
    canvas = _background(rng, width, height)
    _distractors(rng, canvas, [g for g in HARD_CLASSES.values() if g != glyph])
    objects: list[Object] = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        short = min(width, height)
        size = int(short * np.exp(rng.uniform(np.log(0.3), np.log(0.9))))
        mask = _shape_mask(rng, glyph, size)
        if (box := place(rng, mask, (width, height), objects)) is None:
            continue
        x, y = box[:2]
        look = class_look(seed, class_index) if rng.random() < 0.65 else None
        _paste(canvas, _visible_texture(rng, canvas[y:box[3], x:box[2]], mask, look), mask, x, y)
        if rng.random() < 0.3:
            _occlude(rng, canvas, box)
        objects.append(Object(label, _jitter_box(rng, box, width, height)))
    canvas = _lighting(rng, canvas) + rng.normal(0, rng.uniform(0.005, 0.05), canvas.shape)
    image = Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.0)))), objects


HARD = SceneKind(HARD_CLASSES, render_hard_scene, (30, 91))
