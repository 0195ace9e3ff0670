"""inception-predict: the trained model's top-k classes for new images, prepared as in training.

    inception-predict IMAGE|FOLDER [...] [--box x0,y0,x1,y1] [--annotation FILE|FOLDER]
                      [--top-k 5] [--json] [--csv FILE] [--model FILE]

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
takes a VOC XML or a YOLO .txt (one image; YOLO's class names are not needed), or a CSV laid out
like annotations.csv or a COCO JSON, their paths relative to the file's folder, or a dataset's
folder, read as crop reads data.dir with params.yaml's data.annotations (voc, yolo: each image's
own file; csv, coco: the folder's annotations.csv or annotations.json). An image without a box
is used whole, as crop.no_box=whole does. With evaluate.tta_flip the probabilities are averaged
with the mirror image's, as evaluate averages them.

A FOLDER is searched recursively, in sorted order, as crop searches data.dir
(``sources.walk``); annotation files in it are not images, and a file found there that cannot
be classified (not an image, a bad box) is skipped with a line on stderr, where a file named on
the command line stops the run. Crops go to the model in batches (``batch_size`` of each
classifier), prepared image by image.

The model: ``--model`` names a .keras file or a .tflite file. Without it, predict runs the
export stage's data/export/model.tflite in LiteRT's interpreter, without importing TensorFlow,
when data/export/export.json records the sha256 of data/model/model.keras as it is now; else
data/model/model.keras in Keras.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
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
from inception_pipeline.export import file_sha256
from inception_pipeline.images import Photo, configure_decoders, crop_region, resize_image
from inception_pipeline.io import atomic_path, read_csv, read_json
from inception_pipeline.layout import (
    CLASSES,
    COCO_ANNOTATIONS,
    CSV_ANNOTATIONS,
    EXPORT_INFO,
    MODEL,
    TFLITE_MODEL,
)
from inception_pipeline.params import load_params
from inception_pipeline.runtime import configure_tensorflow, quiet_start_up
from inception_pipeline.sources import sidecar_paths, walk

# The annotation files that describe one image: every box of theirs is the image's.
ONE_IMAGE = {".xml": "a VOC XML", ".txt": "a YOLO .txt"}
# Files in a searched folder that are annotations (or class lists), not images.
NOT_IMAGES = {".xml", ".txt", ".json", ".csv", ".yaml", ".yml"}
CSV_FIELDS = ["image", "box", "rank", "class", "probability"]


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
            key = key_under(image, self.root, f"the folder of {self.path}")
            where, entries = f"{self.path}, {key}", self.by_image.get(key, [])
        for index, entry in enumerate(entries):
            if isinstance(entry, Problem):
                raise PipelineError(f"{where}: box {index}: {entry.reason}: {entry.detail}")
        return [box for _, box in entries]


class Sidecars:
    """The boxes of a dataset folder whose images each have their own annotation file
    (data.annotations voc or yolo), found where crop looks for it (sources.sidecar_paths)."""

    def __init__(self, root: Path, annotations: str):
        self.root, self.annotations = root.resolve(), annotations

    def boxes(self, image: Path) -> list[Box | Normalised]:
        key = key_under(image, self.root, f"the dataset folder (data.annotations="
                                          f"{self.annotations})")
        for rel in sidecar_paths(key, self.annotations):
            if (self.root / rel).is_file():
                return Annotation(self.root / rel).boxes(image)
        return []


def read_annotation(path: Path, annotations: str) -> Annotation | Sidecars:
    """--annotation: a file, or a dataset's folder read as crop reads data.dir in the format
    ``annotations`` (data.annotations)."""
    if not path.is_dir():
        return Annotation(path)
    if annotations in ("csv", "coco"):
        return Annotation(path / (CSV_ANNOTATIONS if annotations == "csv" else COCO_ANNOTATIONS))
    return Sidecars(path, annotations)


def key_under(image: Path, root: Path, what: str) -> str:
    """``image``'s path relative to ``root`` (resolved), as annotation files name it."""
    try:
        return image.resolve().relative_to(root).as_posix()
    except ValueError:
        raise PipelineError(f"{image}: not under {root}, {what}") from None


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
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE|FOLDER",
                        help="image files, or folders searched recursively")
    parser.add_argument("--box", action="append", default=[], metavar="x0,y0,x1,y1",
                        help="a box to classify, for every image given (repeatable)")
    parser.add_argument("--annotation", type=Path, metavar="FILE|FOLDER",
                        help="boxes from a VOC XML or YOLO .txt (one image), an "
                             "annotations.csv-style CSV, a COCO JSON, or a dataset's folder "
                             "(read as crop reads data.dir, with data.annotations)")
    parser.add_argument("--top-k", type=int, default=5, help="classes listed per box (5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--csv", type=Path, metavar="FILE",
                        help="write image,box,rank,class,probability rows to FILE (a row per "
                             "class listed) instead of printing them")
    parser.add_argument("--model", type=Path, metavar="FILE",
                        help=f"a .keras or .tflite file (default: {TFLITE_MODEL} when it is "
                             f"the export of {MODEL}, else {MODEL})")
    return parser.parse_args(argv)


def image_files(args: argparse.Namespace) -> Iterator[tuple[Path, bool]]:
    """(image, named on the command line) for every IMAGE, and every file found in every
    FOLDER, in order; found files that are annotations are left out."""
    for path in args.images:
        if not path.is_dir():
            yield path, True
            continue
        for rel, entry in walk(path):
            if isinstance(entry, OSError):
                skipped(path / rel, f"unreadable folder ({entry.strerror or entry})")
            elif os.path.splitext(rel)[1].lower() not in NOT_IMAGES:
                yield path / rel, False


def skipped(path: Path, reason: str) -> None:
    print(f"inception-predict: skipped {path}: {reason}", file=sys.stderr)


def prepared_crops(args: argparse.Namespace, params: dict
                   ) -> Iterator[tuple[Path, Box, np.ndarray]]:
    """(image, region cropped, model input) for every box of every image. A file named on the
    command line that fails stops the run; one found in a folder is skipped."""
    crop, resize = params["crop"], params["resize"]
    given_boxes = [parse_box(text) for text in args.box]
    annotation = (read_annotation(args.annotation, params["data"]["annotations"])
                  if args.annotation else None)
    for path, named in image_files(args):
        try:
            image = load_image(path, crop["max_pixels"])
            boxes = [to_pixels(box, image.width, image.height) for box in
                     (annotation.boxes(path) if annotation else given_boxes)] or [
                (0, 0, image.width, image.height)]
            arrays, regions = model_inputs(path, image, boxes, crop, resize)
        except PipelineError as err:
            if named:
                raise
            skipped(path, str(err).removeprefix(f"{path}: "))
            continue
        yield from ((path, region, array) for region, array in zip(regions, arrays, strict=True))


def batches(crops: Iterator[tuple[Path, Box, np.ndarray]], size: int
            ) -> Iterator[tuple[list[tuple[Path, Box]], np.ndarray]]:
    """The crops in groups of ``size`` (the last smaller): their (image, region) and inputs."""
    items, arrays = [], []
    for path, region, array in crops:
        items.append((path, region))
        arrays.append(array)
        if len(arrays) == size:
            yield items, np.stack(arrays)
            items, arrays = [], []
    if arrays:
        yield items, np.stack(arrays)


class KerasClassifier:
    """The .keras model in Keras (imports TensorFlow)."""

    # More than models.EAGER_IMAGES: class_probabilities runs model.predict's graph, traced once
    # and faster per image than eager calls; a few images still go eagerly, untraced.
    batch_size = 512

    def __init__(self, path: Path):
        configure_tensorflow()
        from models import ModelFileError, load_classifier

        try:
            self.model = load_classifier(path)
        except ModelFileError as err:
            raise PipelineError(str(err)) from None
        self.input_size = self.model.input_shape[1]

    def __call__(self, images: np.ndarray, tta_flip: bool) -> np.ndarray:
        from models import class_probabilities

        return class_probabilities(self.model, images, tta_flip=tta_flip)


class LiteClassifier:
    """A TFLite file in LiteRT's interpreter (no TensorFlow), on every core."""

    batch_size = 64

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(str(path), num_threads=os.cpu_count())
        except ValueError as err:
            raise PipelineError(f"{path}: not a TFLite model, or damaged ({err})") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.input_size = int(self.input["shape_signature"][1])
        self.batch = None

    def __call__(self, images: np.ndarray, tta_flip: bool) -> np.ndarray:
        probs = self.run(images)
        if tta_flip:  # the mean in float32, as the Keras model's Average layer takes it
            probs = (probs + self.run(images[:, :, ::-1])) / 2
        return probs.astype(np.float64)

    def run(self, images: np.ndarray) -> np.ndarray:
        if len(images) != self.batch:
            self.interpreter.resize_tensor_input(self.input["index"], images.shape)
            with quiet_start_up():  # LiteRT announces its XNNPACK delegate on stderr
                self.interpreter.allocate_tensors()
            self.batch = len(images)
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(images))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)


def model_file(given: Path | None) -> Path:
    """--model, or the TFLite export while it is the export of data/model/model.keras."""
    if given is not None:
        return given
    if TFLITE_MODEL.is_file() and EXPORT_INFO.is_file() and MODEL.is_file():
        if read_json(EXPORT_INFO).get("model_sha256") == file_sha256(MODEL):
            return TFLITE_MODEL
        print(f"inception-predict: {TFLITE_MODEL} is the export of another {MODEL}; using the "
              f".keras model (`dvc repro export` brings the export up to date)", file=sys.stderr)
    return MODEL


def classifier_class(path: Path) -> type[KerasClassifier | LiteClassifier]:
    return LiteClassifier if path.suffix.lower() == ".tflite" else KerasClassifier


def load_model(path: Path, input_size: int) -> KerasClassifier | LiteClassifier:
    for needed in (path, CLASSES):
        if not needed.exists():
            raise PipelineError(f"{needed}: missing (the pipeline writes it: `dvc repro`)")
    classifier = classifier_class(path)(path)
    if classifier.input_size != input_size:
        raise PipelineError(f"{path} takes {classifier.input_size}px inputs, params.yaml "
                            f"gives {input_size}px: retrain it (`dvc repro`)")
    return classifier


def predictions(args: argparse.Namespace, params: dict
                ) -> Iterator[tuple[Path, Box, np.ndarray, list[str]]]:
    """(image, region, class probabilities, class names) for every crop, batch by batch. The
    model loads after the first batch is prepared: bad input named on the command line fails
    before the slow part."""
    path = model_file(args.model)
    classifier = None
    for items, inputs in batches(prepared_crops(args, params), classifier_class(path).batch_size):
        if classifier is None:
            classifier = load_model(path, params["resize"]["size"])
            classes = read_json(CLASSES)
        probs = classifier(inputs, params["evaluate"]["tta_flip"])
        if probs.shape[1] != len(classes):
            raise PipelineError(f"{path} has {probs.shape[1]} classes, {CLASSES} "
                                f"{len(classes)}: retrain it (`dvc repro`)")
        for (image, region), p in zip(items, probs, strict=True):
            yield image, region, p, classes
    if classifier is None:
        raise PipelineError(f"no image found in {', '.join(map(str, args.images))}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.top_k < 1:
        raise PipelineError(f"--top-k {args.top_k}: must be at least 1")
    if args.box and args.annotation:
        raise PipelineError("give --box or --annotation, not both")
    kind = ONE_IMAGE.get(args.annotation.suffix.lower()) if args.annotation else None
    if kind and (len(args.images) > 1 or args.images[0].is_dir()):
        raise PipelineError(f"--annotation {args.annotation}: {kind} describes one image, "
                            f"{'a folder' if len(args.images) == 1 else len(args.images)} given")
    configure_decoders()
    results = ({"image": str(image), "box": list(region), "top": top_classes(p, classes,
                                                                              args.top_k)}
               for image, region, p, classes in predictions(args, load_params()))
    if args.csv:
        write_rows(args.csv, results)
    elif args.json:
        print(json.dumps(list(results), ensure_ascii=False))
    else:
        for result in results:
            print(f"{result['image']} [box {','.join(map(str, result['box']))}]")
            for top in result["top"]:
                print(f"  {top['probability']:.4f}  {top['class']}")


def write_rows(path: Path, results: Iterator[dict]) -> None:
    """The CSV: a row per class listed, rank 1 the most probable; written as the batches come,
    renamed into place at the end."""
    boxes = images = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        last = None
        for result in results:
            boxes += 1
            images += result["image"] != last
            last = result["image"]
            box = ",".join(map(str, result["box"]))
            writer.writerows({"image": result["image"], "box": box, "rank": rank,
                              "class": top["class"], "probability": f"{top['probability']:.6f}"}
                             for rank, top in enumerate(result["top"], start=1))
    print(f"inception-predict: {boxes} boxes of {images} images -> {path}")


def cli() -> None:
    """The ``inception-predict`` console script."""
    run(main)


if __name__ == "__main__":
    cli()
