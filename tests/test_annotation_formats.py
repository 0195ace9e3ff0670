"""COCO JSON and YOLO annotations: the parsers, and crop on tiny datasets holding
every hostile case, each file accounted for. Predicting with them is in test_predict.py."""

import json
import re

import pytest

from inception_pipeline.annotations import (
    AnnotationError,
    Normalised,
    Problem,
    parse_class_list,
    parse_coco,
    parse_yolo,
    parse_yolo_yaml,
)
from inception_pipeline.errors import PipelineError
from inception_pipeline.io import read_csv
from inception_pipeline.sources import sidecar_paths
from stages import crop
from tests.test_crop import write_image, write_params

BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def coco(images, annotations, categories=((1, "cat"), (2, "dog"))) -> bytes:
    return json.dumps({
        "images": [{"id": i, "file_name": name, "width": 60, "height": 40} for i, name in images],
        "annotations": [{"id": n, "image_id": image, "category_id": category, "bbox": bbox}
                        for n, (image, category, bbox) in enumerate(annotations)],
        "categories": [{"id": i, "name": name} for i, name in categories]}).encode()


def test_coco_bbox_edges_are_rounded_to_pixel_edges():
    parsed = parse_coco(coco([(1, "images\\a.jpg"), (2, "./b.jpg"), (3, "c.jpg")], [
        (1, 1, [10, 5, 20, 20]),
        (1, 2, [10.4, 5.6, 20.2, 20.5]),   # edges 10.4, 5.6, 30.6, 26.1
        (1, 9, [0, 0, 5, 5]),
        (2, 1, [0, 0, "5", 5]),
        (2, 1, [0, 0, 5]),
        (7, 1, [0, 0, 5, 5])]))
    assert parsed.classes == {1: "cat", 2: "dog"}
    assert parsed.images == {
        "images/a.jpg": [("cat", (10, 5, 30, 25)), ("dog", (10, 6, 31, 26)),
                         Problem("unknown class",
                                 "annotations[2]: category_id 9 is not in categories")],
        "b.jpg": [Problem("bad box", "annotations[3]: bbox [0, 0, '5', 5] is not four numbers "
                                     "[x, y, width, height]"),
                  Problem("bad box", "annotations[4]: bbox [0, 0, 5] is not four numbers "
                                     "[x, y, width, height]")],
        "c.jpg": []}
    assert parsed.orphans == ["annotations[5]: image_id 7 is not in images"]


@pytest.mark.parametrize("document, message", [
    (b"{", "malformed JSON (Expecting property name"),
    (b"\xff{}", "not UTF-8 text (byte 0)"),
    (b"[]", "expected a JSON object with images, annotations and categories"),
    (b'{"images": [], "annotations": []}', "categories: missing or not a list"),
    (coco([(1, "")], []), "images[0]: expected an object with an integer or string id and a "
                          "non-empty file_name"),
    (coco([(1, "a.jpg"), (1, "b.jpg")], []), "images[1]: id 1 repeats an earlier one's"),
    (coco([], [], categories=[(True, "cat")]), "categories[0]: expected an object"),
    (b'{"images": [], "categories": [], "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1]}]}',
     "annotations[0]: expected an object with image_id, category_id and bbox"),
])
def test_a_file_that_is_not_coco_is_an_annotation_error(document, message):
    with pytest.raises(AnnotationError, match=re.escape(message)):
        parse_coco(document)


def test_yolo_lines_become_normalised_boxes_and_problems():
    text = ("0 0.5 0.5 0.5 0.5\n"
            "\n"
            "1 0.95 0.5 0.2 0.2\n"
            "7 0.5 0.5 0.1 0.1\n"
            "0 0.5 0.5 0.1\n"
            "x 0.5 0.5 0.1 0.1\n"
            "0 0.5 nan 0.1 0.1\n")
    assert parse_yolo(text.encode(), {0: "cat", 1: "dog"}) == [
        ("cat", Normalised(0.5, 0.5, 0.5, 0.5)),
        ("dog", Normalised(0.95, 0.5, 0.2, 0.2)),
        Problem("unknown class", "line 4: class 7 is not in the class list (2 names)"),
        Problem("bad box", "line 5: 4 fields, expected 5 (class cx cy w h)"),
        Problem("bad box", "line 6: class='x' is not an integer"),
        Problem("bad box", "line 7: cy='nan' is not a finite number")]
    # Predicting needs no class names: any class index, no label.
    assert parse_yolo(b"7 0.5 0.5 0.1 0.1", None) == [(None, Normalised(0.5, 0.5, 0.1, 0.1))]


def test_normalised_boxes_round_each_edge():
    assert Normalised(0.5, 0.5, 0.5, 0.5).pixels(60, 40) == (15, 10, 45, 30)
    assert Normalised(0.95, 0.5, 0.2, 0.2).pixels(60, 40) == (51, 16, 63, 24)
    assert Normalised(0.123, 0.5, 0.1, 0.2).pixels(100, 50) == (7, 20, 17, 30)  # 7.3, 17.3


def test_yolo_class_names():
    assert parse_class_list(b"\xef\xbb\xbfcat\n dog \n\n") == {0: "cat", 1: "dog"}
    assert parse_yolo_yaml(b"path: .\nnames: [cat, '4']") == {0: "cat", 1: "4"}
    assert parse_yolo_yaml(b"names:\n  0: cat\n  2: 4\n") == {0: "cat", 2: "4"}


@pytest.mark.parametrize("parse, text, message", [
    (parse_class_list, b"cat\n\ndog\n", "line 2: empty, but class 1 needs a name"),
    (parse_class_list, b"\n", "no class names in it"),
    (parse_yolo_yaml, b"names: [cat", "malformed YAML (while parsing a flow sequence"),
    (parse_yolo_yaml, b"nc: 2\n", "names: missing, or not a list or mapping of class names"),
    (parse_yolo_yaml, b"names: [cat, yes]", "names: 1: True is not a class index and name"),
    (parse_yolo_yaml, b"names: {cat: 0}", "names: 'cat': 0 is not a class index and name"),
])
def test_bad_class_names_are_an_annotation_error(parse, text, message):
    with pytest.raises(AnnotationError, match=re.escape(message)) as err:
        parse(text)
    assert "\n" not in str(err.value)


def test_yolo_label_file_beside_the_image_or_in_labels():
    assert sidecar_paths("images/train/a.jpg", "yolo") == ["images/train/a.txt",
                                                          "labels/train/a.txt"]
    assert sidecar_paths("images/x/images/a.png", "yolo") == ["images/x/images/a.txt",
                                                             "images/x/labels/a.txt"]
    assert sidecar_paths("a.jpg", "yolo") == ["a.txt"]
    assert sidecar_paths("cat/a.jpg", "voc") == ["cat/a.xml"]
    assert sidecar_paths("cat/a.jpg", "coco") == []


def run_crop(root, **params):
    write_params(root, crop__max_rejected=1.0, **params)
    crop.main()
    metrics = json.loads((root / "metrics/data.json").read_text())
    assert metrics["files_found"] == metrics["files_accepted"] + metrics["files_rejected"]
    manifest = read_csv(root / "data/crops/manifest.csv")
    crops = {row["crop"]: (row["label"], tuple(int(row[k]) for k in BOX_FIELDS))
             for row in manifest}
    rejects = [(r["path"], r["reason"], r["detail"])
               for r in read_csv(root / "metrics/rejects.csv")]
    return metrics, crops, rejects


def test_coco_dataset_every_file_accounted_for(in_tmp):
    raw = in_tmp / "raw"
    for name in ("images/a.jpg", "images/b.jpg", "images/e.jpg", "cat/c.jpg", "cat/d.jpg",
                 "top.jpg"):
        write_image(raw / name)  # 60 x 40
    (raw / "annotations.csv").write_text("path,xmin,ymin,xmax,ymax\n")  # another format's
    (raw / "annotations.json").write_bytes(coco(
        [(1, "images/a.jpg"), (2, "images/b.jpg"), (3, "cat/c.jpg"), (4, "images/e.jpg"),
         (5, "top.jpg"), (6, "images/gone.jpg"), (7, "../outside.jpg")],
        [(1, 1, [10, 5, 20, 20]),
         (1, 2, [50.4, 30.6, 30, 30]),  # (50, 31, 80, 61), clipped
         (1, 9, [0, 0, 5, 5]),
         (1, 1, [1, 2, 3]),
         (1, 1, [5, 5, 0, 10]),
         (1, 1, [100, 100, 10, 10]),
         (3, 2, [0, 0, 10, 10]),        # a dog in the cat folder
         (3, 1, [0, 0, 20, 20]),
         (4, 9, [0, 0, 10, 10]),        # its only box: the image is rejected, not taken whole
         (5, 2, [0, 0, 30, 30]),
         (999, 1, [0, 0, 1, 1])]))

    metrics, crops, rejects = run_crop(in_tmp, data__annotations="coco")

    # a, c, d (whole: not in the JSON, but in the class folder cat), top; b, e, annotations.csv
    assert (metrics["files_found"], metrics["files_accepted"]) == (7, 4)
    assert metrics["boxes_clipped"] == 1
    assert crops == {"images/a.jpg-0": ("cat", (10, 5, 30, 25)),
                     "images/a.jpg-1": ("dog", (50, 31, 60, 40)),
                     "cat/c.jpg-1": ("cat", (0, 0, 20, 20)),
                     "cat/d.jpg-0": ("cat", (0, 0, 60, 40)),
                     "top.jpg-0": ("dog", (0, 0, 30, 30))}
    assert sorted(rejects) == sorted([
        ("annotations.csv", "unused annotation", "data.annotations=coco"),
        ("annotations.json", "unknown image", "annotations[10]: image_id 999 is not in images"),
        ("annotations.json", "outside data root", "file_name '../outside.jpg'"),
        ("images/gone.jpg", "missing image", "named in annotations.json"),
        ("images/a.jpg", "unknown class",
         "box 2: annotations[2]: category_id 9 is not in categories"),
        ("images/a.jpg", "bad box",
         "box 3: annotations[3]: bbox [1, 2, 3] is not four numbers [x, y, width, height]"),
        ("images/a.jpg", "bad box", "box 4: zero-area box (5, 5, 5, 15)"),
        ("images/a.jpg", "bad box", "box 5: box (100, 100, 110, 110) lies outside the 60x40 image"),
        ("images/b.jpg", "no box",
         "crop.no_box=whole, but no class folder to label it"),
        ("cat/c.jpg", "label mismatch", "box 0 is labelled 'dog' in folder 'cat'"),
        ("images/e.jpg", "unknown class",
         "box 0: annotations[8]: category_id 9 is not in categories")])


def test_yolo_dataset_every_file_accounted_for(in_tmp):
    raw = in_tmp / "raw"
    for name in ("images/train/a.jpg", "images/train/b.jpg", "images/train/e.jpg",
                 "images/train/f.jpg", "flat/c.jpg", "cat/d.jpg"):
        write_image(raw / name)  # 60 x 40
    (raw / "data.yaml").write_text("path: .\ntrain: images/train\nnames:\n  0: cat\n  1: dog\n")
    (raw / "labels/train").mkdir(parents=True)
    (raw / "labels/train/a.txt").write_text(
        "0 0.5 0.5 0.5 0.5\n"     # (15, 10, 45, 30)
        "1 0.95 0.5 0.2 0.2\n"    # (51, 16, 63, 24), clipped
        "7 0.5 0.5 0.1 0.1\n"
        "0 0.5 0.5 0.1\n"
        "0 x 0.5 0.1 0.1\n"
        "0 1.5 1.5 0.2 0.2\n"
        "0 0.5 0.5 0 0.1\n")
    (raw / "labels/train/e.txt").write_bytes(b"0 0.5 0.5 \xff 0.1\n")
    (raw / "images/train/f.txt").write_text("1 0.5 0.5 0.5 0.5\n")  # beside: read first
    (raw / "labels/train/f.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (raw / "labels/train/orphan.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (raw / "flat/c.txt").write_text("1 0.5 0.5 1 1\n")
    (raw / "cat/d.txt").write_text("1 0.5 0.5 0.5 0.5\n")

    metrics, crops, rejects = run_crop(in_tmp, data__annotations="yolo")

    # a, c, f; b (no box), d (mismatch), e (bad annotation), orphan.txt, labels/train/f.txt
    assert (metrics["files_found"], metrics["files_accepted"]) == (8, 3)
    assert metrics["boxes_clipped"] == 1
    assert crops == {"images/train__a.jpg-0": ("cat", (15, 10, 45, 30)),
                     "images/train__a.jpg-1": ("dog", (51, 16, 60, 24)),
                     "images/train__f.jpg-0": ("dog", (15, 10, 45, 30)),
                     "flat/c.jpg-0": ("dog", (0, 0, 60, 40))}
    assert sorted(rejects) == sorted([
        ("labels/train/orphan.txt", "unused annotation", "no image has it as its label file"),
        ("labels/train/f.txt", "unused annotation", "no image has it as its label file"),
        ("images/train/a.jpg", "unknown class",
         "box 2: line 3: class 7 is not in the class list (2 names)"),
        ("images/train/a.jpg", "bad box", "box 3: line 4: 4 fields, expected 5 (class cx cy w h)"),
        ("images/train/a.jpg", "bad box", "box 4: line 5: cx='x' is not a number"),
        ("images/train/a.jpg", "bad box",
         "box 5: box (84, 56, 96, 64) lies outside the 60x40 image"),
        ("images/train/a.jpg", "bad box", "box 6: zero-area box (30, 18, 30, 22)"),
        ("images/train/b.jpg", "no box",
         "crop.no_box=whole, but no class folder to label it"),
        ("cat/d.jpg", "label mismatch", "box 0 is labelled 'dog' in folder 'cat'"),
        ("images/train/e.jpg", "bad annotation", "labels/train/e.txt: not UTF-8 text (byte 10)")])


def test_yolo_class_list_and_skipping_images_without_box(in_tmp):
    raw = in_tmp / "raw"
    write_image(raw / "a.jpg")
    write_image(raw / "b.jpg")
    (raw / "a.txt").write_text("1 0.25 0.25 0.5 0.5\n")
    (raw / "b.txt").write_text("")
    (raw / "classes.txt").write_text("cat\ndog\n")
    metrics, crops, rejects = run_crop(in_tmp, data__annotations="yolo", crop__no_box="skip")
    assert (metrics["files_found"], metrics["files_accepted"]) == (2, 1)
    assert crops == {"a.jpg-0": ("dog", (0, 0, 30, 20))}
    assert rejects == [("b.jpg", "no box", "crop.no_box=skip")]


@pytest.mark.parametrize("annotations, files, message", [
    ("coco", {}, "raw/annotations.json: cannot read (No such file or directory); "
                 "data.annotations=coco needs it"),
    ("coco", {"annotations.json": b'{"images": 1}'}, "raw/annotations.json: images: missing or "
                                                     "not a list"),
    ("yolo", {}, "raw/classes.txt: missing (data.annotations=yolo needs it, or data.yaml)"),
    ("yolo", {"classes.txt": b"cat\n", "data.yaml": b"names: [cat]"},
     "raw: both classes.txt and data.yaml name the classes; keep one"),
    ("yolo", {"data.yaml": b"names: [cat\n"}, "raw/data.yaml: malformed YAML (while parsing a flow "
                                              "sequence in \"<unicode string>\", line 1, column 8"),
    ("yolo", {"classes.txt": b"\xff"}, "raw/classes.txt: not UTF-8 text (byte 0)"),
])
def test_unusable_annotation_file_stops_crop_naming_it(in_tmp, annotations, files, message):
    write_image(in_tmp / "raw" / "images" / "a.jpg")
    for name, content in files.items():
        (in_tmp / "raw" / name).write_bytes(content)
    write_params(in_tmp, data__annotations=annotations)
    with pytest.raises(PipelineError) as err:
        crop.main()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_flat_folder_without_images_is_one_clear_error(in_tmp):
    (in_tmp / "raw").mkdir()
    (in_tmp / "raw" / "classes.txt").write_text("cat\n")
    write_params(in_tmp, data__annotations="yolo")
    with pytest.raises(PipelineError, match="^data.dir='raw': no files in it$"):
        crop.main()


def test_params_accept_the_new_formats(default_params):
    from inception_pipeline.params import problems
    for annotations in ("coco", "yolo"):
        default_params["data"]["annotations"] = annotations
        assert problems(default_params) == []
    default_params["data"]["annotations"] = "pascal"
    assert problems(default_params) == [
        "data.annotations='pascal': allowed values: voc, csv, coco, yolo"]
