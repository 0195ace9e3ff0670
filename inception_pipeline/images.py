"""The image functions crop, resize and predict share, so that predict prepares a photo exactly
as training did: decode (EXIF orientation, decompression-bomb check), clip and widen a box,
resize to the network's input. Importing this module sets the decoders' global settings."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from inception_pipeline.annotations import AnnotationError, Box

# crop.max_pixels replaces PIL's fixed limit (which raises beyond 179 MP): decode_image checks
# the size from the header against it.
Image.MAX_IMAGE_PIXELS = None


# Intel IPP's resize takes CPU-specific paths that round differently: the same crops gave a
# different images.npy on an AVX2 and an AVX-512 machine. OpenCV's own code gives the same bytes
# with its AVX/AVX2 paths switched off (OPENCV_CPU_DISABLE), so without IPP the output depends
# on the data and params, not on the CPU.
cv2.ipp.setUseIPP(False)


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
