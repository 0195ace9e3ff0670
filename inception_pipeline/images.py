"""The image functions crop, resize and predict share, so that predict prepares a photo exactly as
training did: open and decode (decompression-bomb check, a JPEG decoded region by region and
reduced where the region allows, EXIF orientation), clip and widen a box, cut it out at a bounded
size, resize to the network's input. Importing it changes no setting: the stages and commands
that decode call ``configure_decoders()`` first."""

from __future__ import annotations

import functools
import io
import math
import warnings
from typing import NamedTuple

import cv2
import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError
from turbojpeg import TJPF_RGB, TurboJPEG, tjMCUHeight, tjMCUWidth

from inception_pipeline.annotations import AnnotationError, Box
from inception_pipeline.errors import PipelineError


def configure_decoders() -> None:
    """The decoders' settings for the stages and commands that decode images, called before
    they do (and by each worker process, see ``io.parallel_map``).

    PIL's fixed decompression-bomb limit (it raises beyond 179 MP) is lifted, so that
    crop.max_pixels, which ``Photo`` checks from the header, is the only limit.

    Intel IPP's resize takes CPU-specific paths that round differently: the same crops gave a
    different images.npy on an AVX2 and an AVX-512 machine. OpenCV's own code gives the same
    bytes with its AVX/AVX2 paths switched off (OPENCV_CPU_DISABLE), so without IPP the output
    depends on the data and params, not on the CPU. OpenCV keeps this flag per thread: call
    this in the thread that resizes.
    """
    Image.MAX_IMAGE_PIXELS = None
    cv2.ipp.setUseIPP(False)


# EXIF orientation -> the transpose that shows the stored pixels as a viewer does.
ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}
SWAPS_SIDES = {Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE,
               Image.Transpose.ROTATE_90}
# A point (x, y) of the upright picture, in pixel edges, as a point of the stored pixels
# (stored width w, height h), for each transpose.
TO_STORED = {
    None: lambda x, y, w, h: (x, y),
    Image.Transpose.FLIP_LEFT_RIGHT: lambda x, y, w, h: (w - x, y),
    Image.Transpose.ROTATE_180: lambda x, y, w, h: (w - x, h - y),
    Image.Transpose.FLIP_TOP_BOTTOM: lambda x, y, w, h: (x, h - y),
    Image.Transpose.TRANSPOSE: lambda x, y, w, h: (y, x),
    Image.Transpose.ROTATE_270: lambda x, y, w, h: (y, h - x),
    Image.Transpose.TRANSVERSE: lambda x, y, w, h: (w - y, h - x),
    Image.Transpose.ROTATE_90: lambda x, y, w, h: (w - y, x),
}
DCT_SCALES = (8, 4, 2, 1)  # the reductions libjpeg decodes at directly
# Decoded region by region with libjpeg-turbo; MPO is a phone's JPEG with extra pictures after
# the first.
REGION_FORMATS = {"JPEG", "MPO"}
# The regions of a photo decoded at full size are cut out when they cover less than this share
# of it: beyond, re-decoding their blocks costs more than the whole decode; and only from a
# photo of at least this many pixels: below, the cut-out's fixed cost is most of what it saves
# (cut_out_pays).
CUT_OUT_SHARE = 0.2
CUT_OUT_MIN_PIXELS = 1_000_000
# Pixels of a reduced decode beyond a box that its crop depends on: cut's Lanczos reaches 3
# lobes of at most a 2x shrink (6), chroma upsampling one more, and one to spare.
REGION_CONTEXT = 8


class Photo:
    """An image file as crop and predict use it: opened from its header (size checked against
    crop.max_pixels before any decoding), decoded by ``load`` only as finely as its regions
    need, cut region by region by ``cut``. Regions are pixel edges of the upright picture (EXIF
    orientation applied), the frame of ``width`` x ``height`` that boxes refer to.

    A JPEG (baseline or progressive, YCbCr, RGB or greyscale) that a small region would make
    decode at full size is decoded region by region with libjpeg-turbo: each region's blocks
    are cut out losslessly (one pass over the file for all regions) and only they are decoded,
    at the region's own DCT reduction. Other photos are decoded whole. The format comes from
    the content, not the file name.
    """

    def __init__(self, data: bytes, max_pixels: int):
        try:
            self.image = Image.open(io.BytesIO(data))  # reads the header only
        except UnidentifiedImageError:
            # PIL's own message holds a memory address, which would make rejects.csv vary by run.
            raise UnidentifiedImageError("not an image format PIL reads") from None
        width, height = self.stored_size = self.image.size
        if width * height > max_pixels:
            raise AnnotationError(f"image of {width}x{height} pixels exceeds crop.max_pixels="
                                  f"{max_pixels} (decompression bomb?)")
        self.transpose = ORIENTATIONS.get(self.image.getexif().get(ExifTags.Base.Orientation))
        self.width, self.height = (height, width) if self.transpose in SWAPS_SIDES else (width,
                                                                                        height)
        self.data = data
        self.scale = 1  # of the whole-image decode
        self.parts: dict[Box, Part] = {}  # the region decodes of a JPEG, by stored-frame box

    def load(self, regions: list[Box], max_side: int) -> None:
        """Decode the pixels ``regions`` need. The photo is decoded whole at the largest DCT
        reduction (1/8, 1/4, 1/2) that leaves every region at least ``max_side`` pixels on its
        longer side (decode_scale); a JPEG that this would decode at full size, for a small
        region, is instead decoded region by region when cut_out_pays, each region at its own
        reduction. A truncated file fails here, not halfway through its regions."""
        self.scale = decode_scale(regions, max_side)
        if (self.image.format in REGION_FORMATS and self.image.mode in ("RGB", "L")
                and cut_out_pays(regions, self.scale, self.width * self.height)):
            boxes = [self.stored_box(region) for region in regions]
            self.parts = decode_regions(self.data, boxes, max_side)
            return
        width, height = self.stored_size
        # PIL picks the largest reduction that keeps the image at least the size asked for;
        # None for formats other than JPEG.
        if self.scale > 1 and (drafted := self.image.draft(
                "RGB", (max(1, width // self.scale), max(1, height // self.scale)))):
            self.scale = round(width / drafted[1][2])
        self.image.load()
        if self.image.mode == "I" or self.image.mode.startswith("I;16"):
            self.image = grey16_to_rgb(self.image)
        elif self.image.mode != "RGB":
            self.image = self.image.convert("RGB")

    def stored_box(self, region: Box) -> Box:
        """``region`` (upright frame) as a box of the stored pixels."""
        x0, y0, x1, y1 = region
        to_stored = TO_STORED[self.transpose]
        (ax, ay), (bx, by) = (to_stored(x, y, *self.stored_size) for x, y in ((x0, y0), (x1, y1)))
        return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)

    def cut(self, region: Box, max_side: int) -> np.ndarray:
        """The RGB pixels of ``region`` (from crop_region, loaded by ``load``), upright, at most
        ``max_side`` on their longer side (bounded_size); smaller regions come out pixel for
        pixel."""
        box = self.stored_box(region)
        image, scale, (left, top) = self.parts.get(box) or (self.image, self.scale, (0, 0))
        box_in_image = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
        size = bounded_size(box[2] - box[0], box[3] - box[1], max_side)
        if scale == 1 and size == (box[2] - box[0], box[3] - box[1]):
            part = image.crop(box_in_image)
        else:
            # Lanczos, which PIL widens by the shrink factor (a low-pass over the area each
            # pixel covers, like resize's INTER_AREA): after a reduced JPEG decode the shrink
            # left is 1-2x, where a box filter averages two misaligned pixels and blurs. The
            # box may have fractional edges then. BENCHMARKS.md: "Camera-sized photos".
            part = image.resize(size, Image.Resampling.LANCZOS,
                                box=tuple(v / scale for v in box_in_image))
        # Cut, then turned upright: turning the whole photo would copy all of it.
        return np.asarray(part if self.transpose is None else part.transpose(self.transpose))


class Part(NamedTuple):
    """One region of a JPEG, decoded: its pixels at 1/``scale``, whose top left corner is the
    stored photo's pixel ``origin``."""
    image: Image.Image
    scale: int
    origin: tuple[int, int]


def cut_out_pays(regions: list[Box], scale: int, pixels: int) -> bool:
    """Whether cutting ``regions`` out of a JPEG of ``pixels`` pixels and decoding only them
    costs less CPU than decoding it whole at ``scale``. Both read every block of the file
    (entropy decoding, the most of a reduced decode); the cut-out also copies the regions'
    blocks into a JPEG of their own and decodes them again, which costs more than the whole
    decode's reduced IDCT saves except at full size (BENCHMARKS.md: "Region decode")."""
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions)
    return scale == 1 and pixels >= CUT_OUT_MIN_PIXELS and area < CUT_OUT_SHARE * pixels


def decode_scale(regions: list[Box], max_side: int) -> int:
    """The largest DCT reduction that leaves every region at least ``max_side`` pixels on its
    longer side; 1 when one is smaller than that."""
    longest = min((max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in regions), default=math.inf)
    return next(s for s in DCT_SCALES if s == 1 or longest >= s * max_side)


@functools.cache
def turbojpeg() -> TurboJPEG:
    try:
        return TurboJPEG()
    except (OSError, RuntimeError) as err:
        raise PipelineError(f"libturbojpeg not found ({err}): install Debian's libturbojpeg0 "
                            "(make test and make repro do)") from None


def decode_regions(data: bytes, boxes: list[Box], max_side: int) -> dict[Box, Part]:
    """Each box of the JPEG ``data`` (stored frame) decoded from the blocks around it only.

    The lossless crop takes the box and REGION_CONTEXT pixels of the reduced decode around it,
    widened to the MCU grid: chroma upsampling, the reduced IDCT and cut's Lanczos then see the
    same pixels as in a decode of the whole photo at that scale, so the crop is the same.
    """
    jpeg = turbojpeg()
    width, height, subsampling, _ = jpeg.decode_header(data)
    mcu_w, mcu_h = tjMCUWidth[subsampling], tjMCUHeight[subsampling]
    crops, scales = {}, {}
    for box in dict.fromkeys(boxes):
        x0, y0, x1, y1 = box
        scales[box] = scale = decode_scale([box], max_side)
        context = REGION_CONTEXT * scale
        left = max(0, x0 - context) // mcu_w * mcu_w
        top = max(0, y0 - context) // mcu_h * mcu_h
        crops[box] = (left, top, min(width, x1 + context) - left, min(height, y1 + context) - top)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        whole = [box for box, crop in crops.items() if crop == (0, 0, width, height)]
        cut = [box for box in crops if box not in whole]
        jpegs = dict(zip(cut, jpeg.crop_multiple(data, [crops[box] for box in cut])
                         if cut else [], strict=True)) | dict.fromkeys(whole, data)
        parts = {}
        for box, (left, top, _, _) in crops.items():
            pixels = jpeg.decode(jpegs[box], TJPF_RGB, scaling_factor=(1, scales[box]))
            parts[box] = Part(Image.fromarray(pixels), scales[box], (left, top))
    # libjpeg only warns about a file that ends early (and fills the rest with grey), as it
    # does about recoverable damage; PIL rejects the first and passes the second: so here.
    for warning in caught:
        if "Premature end" in str(warning.message):
            raise OSError(f"image file is truncated ({warning.message})")
    return parts


def bounded_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) with the longer side cut to ``max_side`` (unchanged when it is not
    longer) and the shorter one scaled alike, rounded half up, at least 1."""
    longer = max(width, height)
    if longer <= max_side:
        return width, height
    return tuple(max(1, (2 * side * max_side + longer) // (2 * longer)) for side in (width, height))


def grey16_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits (value / 257, rounded): PIL's convert clips at 255."""
    values = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    return Image.fromarray(((values + 128) // 257).astype(np.uint8)).convert("RGB")


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


def resize_image(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    """``image`` (H, W, C) as a ``size`` x ``size`` image; ``mode`` is "stretch" or "pad"."""
    height, width = image.shape[:2]
    if mode == "pad":
        scale = size / max(height, width)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    else:
        new_w = new_h = size
    # Area averaging when shrinking avoids aliasing; cubic when enlarging keeps edges smooth.
    shrinking = new_w * new_h < width * height
    resized = cv2.resize(image, (new_w, new_h),
                         interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    if mode == "stretch":
        return resized
    top, left = (size - new_h) // 2, (size - new_w) // 2
    return cv2.copyMakeBorder(resized, top, size - new_h - top, left, size - new_w - left,
                              cv2.BORDER_CONSTANT, value=(0, 0, 0))
