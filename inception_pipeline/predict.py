"""inception-predict: the trained model's top-k classes for new images, prepared as in training.

    inception-predict IMAGE [IMAGE ...] [--box x0,y0,x1,y1] [--annotation FILE]
                      [--top-k 5] [--json] [--model data/model/model.keras]

(or ``python -m inception_pipeline.predict``). Each box goes through the functions the crop and
resize stages use, with params.yaml's settings: Photo (EXIF orientation applied; a JPEG decoded
box by box, each as finely as it needs), crop_region (clipped, widened by crop.margin), Photo.cut
(bounded to crop.max_side) and resize_image (resize.size, resize.mode), so the model sees the
uint8 RGB array that images.npy would hold for it. For a JPEG each box is decoded on its own, so
a single --box gives training's array byte for byte; other formats (and CMYK JPEGs) are decoded
whole, at a scale that depends on all the boxes given for the image, as in crop: with the
image's boxes from its annotation, predict gives training's arrays byte for byte, and a single
--box of a photo with other, smaller boxes may differ from them in rounding. Boxes are 0-based
pixel edges with x1, y1 exclusive (as in annotations.csv); --box may be repeated. --annotation
takes a VOC XML or a YOLO .txt (one image; YOLO's class names are not needed), or a CSV laid
out like annotations.csv or a COCO JSON, their paths relative to the file's folder. An image
without a box is used whole, as crop.no_box=whole does. With evaluate.tta_flip the probabilities
are averaged with the mirror image's, as evaluate averages them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from inception_pipeline.annotations import (
    AnnotationError,
    Box,
    Entry,
    Normalised,
    Problem,
    parse_coco,
    parse_csv_row,
    parse_voc,
    parse_yolo,
    to_pixels,
)
from inception_pipeline.errors import PipelineError, run
from inception_pipeline.images import Photo, configure_decoders, crop_region, resize_image
from inception_pipeline.io import read_csv, read_json
from inception_pipeline.layout import CLASSES, MODEL
from inception_pipeline.params import load_params
from inception_pipeline.runtime import configure_tensorflow

# The annotation files that describe one image: every box of theirs is the image's.
ONE_IMAGE = {".xml": "a VOC XML", ".txt": "a YOLO .txt"}


def parse_box(text: str) -> Box:
    try:
        box = tuple(int(value) for value in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise PipelineError(f"--box {text!r}: expected four integers x0,y0,x1,y1")
    return box


class Annotation:
    """The boxes of a VOC XML or YOLO .txt (one image), or of an annotations.csv-style CSV or a
    COCO JSON (images named by path relative to the file's folder), read once."""

    def __init__(self, path: Path):
        self.path = path
        suffix = path.suffix.lower()
        try:
            if suffix in ONE_IMAGE:
                content = path.read_bytes()
                self.one_image = (parse_voc(content) if suffix == ".xml"
                                  else parse_yolo(content, None))
                return
            if suffix == ".json":
                entries = parse_coco(path.read_bytes()).images
            else:
                entries = {}
                for row in read_csv(path):
                    image = Path((row.get("path") or "").replace("\\", "/")).as_posix()
                    entries.setdefault(image, []).append(csv_entry(row))
        except (OSError, UnicodeDecodeError) as err:
            raise PipelineError(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})"
                                ) from None
        except AnnotationError as err:
            raise PipelineError(f"{path}: {err}") from None
        self.one_image = None
        self.root = path.resolve().parent
        self.by_image = entries

    def boxes(self, image: Path) -> list[Box | Normalised]:
        """Every box of the XML or .txt, or those of ``image`` (its path relative to the CSV's or
        JSON's folder) in the CSV or JSON; a bad one stops, naming it."""
        if self.one_image is not None:
            where, entries = str(self.path), self.one_image
        else:
            try:
                key = image.resolve().relative_to(self.root).as_posix()
            except ValueError:
                raise PipelineError(f"{image}: not under {self.root}, the folder of {self.path}"
                                    ) from None
            where, entries = f"{self.path}, {key}", self.by_image.get(key, [])
        for index, entry in enumerate(entries):
            if isinstance(entry, Problem):
                raise PipelineError(f"{where}: box {index}: {entry.reason}: {entry.detail}")
        return [box for _, box in entries]


def csv_entry(row: dict) -> Entry:
    """One annotations.csv row, its error kept for when its image is asked for."""
    try:
        return parse_csv_row(row)
    except AnnotationError as err:
        return Problem("bad box", str(err))


def load_image(path: Path, max_pixels: int) -> Photo:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return Photo(data, max_pixels)
    except AnnotationError as err:
        raise PipelineError(f"{path}: {err}") from None
    except Exception as err:  # noqa: BLE001 (PIL raises many types for files that are not images)
        raise PipelineError(f"{path}: unreadable image ({type(err).__name__})") from None


def model_inputs(path: Path, image: Photo, boxes: list[Box], crop: dict, resize: dict
                 ) -> tuple[list[np.ndarray], list[Box]]:
    """The arrays the model saw in training for ``boxes`` of ``image``, and the regions cropped:
    the crop and resize stages' steps, without their files."""
    try:
        regions = [crop_region(box, crop["margin"], image.width, image.height)[0]
                   for box in boxes]
    except AnnotationError as err:
        raise PipelineError(f"{path}: {err}") from None
    try:
        image.load(regions, crop["max_side"])
    except PipelineError:
        raise
    except Exception as err:  # noqa: BLE001 (as in load_image: a truncated file fails here)
        raise PipelineError(f"{path}: unreadable image ({type(err).__name__})") from None
    return [resize_image(image.cut(region, crop["max_side"]), resize["size"], resize["mode"])
            for region in regions], regions


def top_classes(probs: np.ndarray, classes: list[str], k: int) -> list[dict]:
    """The ``k`` most probable classes, most probable first (ties: class order, as argmax)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"class": classes[i], "probability": float(probs[i])} for i in order]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="inception-predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--box", action="append", default=[], metavar="x0,y0,x1,y1",
                        help="a box to classify, for every image given (repeatable)")
    parser.add_argument("--annotation", type=Path, metavar="FILE",
                        help="boxes from a VOC XML or YOLO .txt (one image), an "
                             "annotations.csv-style CSV or a COCO JSON")
    parser.add_argument("--top-k", type=int, default=5, help="classes listed per box (5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--model", type=Path, default=MODEL, help=f"({MODEL})")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, params: dict) -> tuple[list[tuple[Path, Box]], np.ndarray]:
    """(image, region cropped) for every box of every image, and the model's inputs for them;
    bad input fails here, before the slow model load."""
    crop, resize = params["crop"], params["resize"]
    given_boxes = [parse_box(text) for text in args.box]
    annotation = Annotation(args.annotation) if args.annotation else None
    items, inputs = [], []
    for path in args.images:
        image = load_image(path, crop["max_pixels"])
        boxes = [to_pixels(box, image.width, image.height) for box in
                 (annotation.boxes(path) if annotation else given_boxes)] or [
            (0, 0, image.width, image.height)]
        arrays, regions = model_inputs(path, image, boxes, crop, resize)
        items += [(path, region) for region in regions]
        inputs += arrays
    return items, np.stack(inputs)


def classify(model_path: Path, inputs: np.ndarray, tta_flip: bool = False
             ) -> tuple[np.ndarray, list[str]]:
    """Class probabilities (N, C) from the saved model, and the class names; with ``tta_flip``
    (evaluate.tta_flip, so that predict agrees with evaluate) averaged with the mirror
    images'."""
    for needed in (model_path, CLASSES):
        if not needed.is_file():
            raise PipelineError(f"{needed}: missing (the pipeline writes it: `dvc repro`)")
    classes = read_json(CLASSES)
    configure_tensorflow()
    from models import class_probabilities, load_classifier

    model = load_classifier(model_path)
    if model.input_shape[1:] != inputs.shape[1:]:
        raise PipelineError(f"{model_path} takes {model.input_shape[1]}px inputs, params.yaml "
                            f"gives {inputs.shape[1]}px: retrain it (`dvc repro`)")
    probs = class_probabilities(model, inputs, tta_flip=tta_flip)
    if probs.shape[1] != len(classes):
        raise PipelineError(f"{model_path} has {probs.shape[1]} classes, {CLASSES} "
                            f"{len(classes)}: retrain it (`dvc repro`)")
    return probs, classes


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.top_k < 1:
        raise PipelineError(f"--top-k {args.top_k}: must be at least 1")
    if args.box and args.annotation:
        raise PipelineError("give --box or --annotation, not both")
    kind = ONE_IMAGE.get(args.annotation.suffix.lower()) if args.annotation else None
    if kind and len(args.images) > 1:
        raise PipelineError(f"--annotation {args.annotation}: {kind} describes one image, "
                            f"{len(args.images)} given")
    configure_decoders()
    params = load_params()
    items, inputs = prepare(args, params)
    probs, classes = classify(args.model, inputs, params["evaluate"]["tta_flip"])
    results = [{"image": str(path), "box": list(region), "top": top_classes(p, classes, args.top_k)}
               for (path, region), p in zip(items, probs, strict=True)]
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
        return
    for result in results:
        print(f"{result['image']} [box {','.join(map(str, result['box']))}]")
        for top in result["top"]:
            print(f"  {top['probability']:.4f}  {top['class']}")


def cli() -> None:
    """The ``inception-predict`` console script."""
    run(main)


if __name__ == "__main__":
    cli()
