import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from stages import crop
from stages.crop import AnnotationError, clip_box, crop_name, expand_box, parse_csv_row, parse_voc
from stages.errors import PipelineError
from stages.io import read_csv
from stages.sample import Object, voc_xml


def test_voc_boxes_become_zero_based_edges():
    xml = voc_xml("a.jpg", "cat", (50, 40), [Object("cat", (0, 0, 10, 10)),
                                             Object("cat", (5, 6, 20, 30))])
    assert parse_voc(xml) == [("cat", (0, 0, 10, 10)), ("cat", (5, 6, 20, 30))]


@pytest.mark.parametrize("xml, reason", [
    (b"<annotation><object>", "malformed XML"),
    ((b"<annotation><object><name>a</name><bndbox><xmin>one</xmin><ymin>1</ymin>"
      b"<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>"), "xmin='one' is not a number"),
    (b"<annotation><object><name>a</name></object></annotation>", "object without bndbox"),
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><annotation>&e;</annotation>',
     "malformed XML (EntitiesForbidden"),
])
def test_bad_voc_is_an_annotation_error(xml, reason):
    with pytest.raises(AnnotationError, match=reason.replace("(", r"\(")):
        parse_voc(xml)


def test_csv_row_label_is_optional():
    assert parse_csv_row({"path": "a/b.jpg", "xmin": "1", "ymin": "2", "xmax": "3.4",
                          "ymax": "5"}) == (None, (1, 2, 3, 5))
    row = {"xmin": "1", "ymin": "2", "xmax": "3", "ymax": "5", "label": "a"}
    assert parse_csv_row(row)[0] == "a"


def test_clip_box():
    assert clip_box((10, 10, 20, 20), 100, 100) == ((10, 10, 20, 20), False)
    assert clip_box((-5, 90, 20, 120), 100, 100) == ((0, 90, 20, 100), True)
    for box, reason in [((20, 10, 10, 20), "inverted"), ((10, 10, 10, 20), "zero-area"),
                        ((150, 150, 160, 160), "outside")]:
        with pytest.raises(AnnotationError, match=reason):
            clip_box(box, 100, 100)


def test_expand_box_stays_inside_the_image():
    assert expand_box((10, 10, 30, 50), 0.1, 100, 100) == (8, 6, 32, 54)
    assert expand_box((0, 0, 100, 100), 0.5, 100, 100) == (0, 0, 100, 100)


def test_crop_name_flattens_subfolders():
    assert crop_name("cat/2024/x.jpg", 1) == "cat/2024__x.jpg-1"
    assert crop_name("고양이 사진/x y.png", 0) == "고양이 사진/x y.png-0"


def write_image(path, size=(60, 40), colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def write_params(root, **overrides):
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["data"]["dir"] = "raw"
    params["data"]["workers"] = 1
    for key, value in overrides.items():
        group, name = key.split("__")
        params[group][name] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))


def test_crop_stage_accounts_for_every_file(in_tmp):
    raw = in_tmp / "raw"
    write_image(raw / "cat" / "good.jpg")
    (raw / "cat" / "good.xml").write_bytes(voc_xml("good.jpg", "cat", (60, 40), [
        Object("cat", (10, 5, 30, 25)),      # kept
        Object("cat", (50, 30, 80, 60)),     # clipped to the image
        Object("dog", (0, 0, 5, 5)),         # label disagrees with the folder
    ]))
    write_image(raw / "cat" / "nobox.png")  # no XML: the whole image is the crop
    (raw / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (raw / "cat" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    write_image(raw / "고양이 2" / "흰색.jpg")
    (raw / "README.txt").write_text("loose file at the root")
    write_params(in_tmp)

    crop.main()

    metrics = json.loads((in_tmp / "metrics/data.json").read_text())
    assert metrics["files_found"] == 6 == metrics["files_accepted"] + metrics["files_rejected"]
    assert metrics["files_accepted"] == 3
    assert metrics["crops"] == 4 and metrics["boxes_clipped"] == 1
    assert metrics["rejects_by_reason"] == {"label mismatch": 1, "not in a class folder": 1,
                                            "unreadable image": 2}
    manifest = read_csv(in_tmp / "data/crops/manifest.csv")
    assert [(r["crop"], r["label"]) for r in manifest] == [
        ("cat/good.jpg-0", "cat"), ("cat/good.jpg-1", "cat"),
        ("cat/nobox.png-0", "cat"), ("고양이 2/흰색.jpg-0", "고양이 2")]
    assert [int(manifest[1][k]) for k in ("xmin", "ymin", "xmax", "ymax")] == [50, 30, 60, 40]
    crops = [crop.load_crop(row) for row in manifest]
    assert [c.shape for c in crops] == [(20, 20, 3), (10, 10, 3), (40, 60, 3), (40, 60, 3)]
    source = np.asarray(Image.open(raw / "cat" / "good.jpg"))
    assert np.array_equal(crops[0], source[5:25, 10:30])  # the box's pixels, in RGB
    assert {r["shard"] for r in manifest} == {"crops-000.bin"}
    assert sum(c.nbytes for c in crops) == (in_tmp / "data/crops/crops-000.bin").stat().st_size
    rejects = read_csv(in_tmp / "metrics/rejects.csv")
    assert {r["path"] for r in rejects} == {"README.txt", "cat/.DS_Store", "cat/broken.jpg",
                                            "cat/good.jpg"}


def test_tiff_bmp_gif_and_webp_photos_are_cropped(in_tmp):
    """Each format, written by Pillow into a class folder with its VOC box, gives its crop: the
    box's pixels as Pillow decodes the file (GIF's palette and WebP's lossy coding included)."""
    raw = in_tmp / "raw"
    gradient = np.zeros((40, 60, 3), np.uint8)
    gradient[..., 0], gradient[..., 1] = np.arange(60) * 4, np.arange(40)[:, None] * 6
    names = [f"photo.{suffix}" for suffix in ("tif", "bmp", "gif", "webp")]
    (raw / "cat").mkdir(parents=True)
    for name in names:
        Image.fromarray(gradient).save(raw / "cat" / name)
        (raw / "cat" / name).with_suffix(".xml").write_bytes(
            voc_xml(name, "cat", (60, 40), [Object("cat", (10, 5, 30, 25))]))
    write_params(in_tmp)

    crop.main()

    metrics = json.loads((in_tmp / "metrics/data.json").read_text())
    assert (metrics["files_accepted"], metrics["files_rejected"], metrics["crops"]) == (4, 0, 4)
    manifest = {row["crop"]: row for row in read_csv(in_tmp / "data/crops/manifest.csv")}
    assert sorted(manifest) == sorted(f"cat/{name}-0" for name in names)
    for name in names:
        decoded = np.asarray(Image.open(raw / "cat" / name).convert("RGB"))
        assert np.array_equal(crop.load_crop(manifest[f"cat/{name}-0"]), decoded[5:25, 10:30]), \
            name


def test_csv_annotations_and_skipping_images_without_box(in_tmp):
    raw = in_tmp / "raw"
    write_image(raw / "a" / "1.jpg")
    write_image(raw / "a" / "2.jpg")
    write_image(raw / "b" / "3.jpg")
    (raw / "annotations.csv").write_text(
        "path,xmin,ymin,xmax,ymax,label\n"
        "a/1.jpg,0,0,10,10,a\n"
        "b/3.jpg,5,5,1,1,b\n"          # inverted
        "b/3.jpg,x,0,10,10,b\n"        # not a number
        "../../etc/passwd,0,0,1,1,\n"  # outside the data root
        "a/9.jpg,0,0,1,1,a\n")         # no such image
    write_params(in_tmp, data__annotations="csv", crop__no_box="skip", crop__max_rejected=1.0)

    crop.main()

    metrics = json.loads((in_tmp / "metrics/data.json").read_text())
    assert (metrics["files_found"], metrics["files_accepted"], metrics["crops"]) == (3, 1, 1)
    assert metrics["rejects_by_reason"] == {"bad box": 2, "missing image": 1, "no box": 1,
                                            "outside data root": 1}


@pytest.mark.parametrize("setup, message", [
    (lambda raw: None, "data.dir='raw': no such folder"),
    (lambda raw: raw.mkdir(), "data.dir='raw': no class folders in it"),
    (lambda raw: (raw / "a").mkdir(parents=True), "data.dir='raw': no files in its class folders"),
])
def test_unusable_data_dir_is_one_clear_error(in_tmp, setup, message):
    setup(in_tmp / "raw")
    write_params(in_tmp)
    with pytest.raises(PipelineError, match=message):
        crop.main()


def test_a_folder_that_cannot_be_listed_is_rejected_not_skipped(tmp_path, monkeypatch):
    write_image(tmp_path / "cat" / "a.jpg")
    write_image(tmp_path / "locked" / "b.jpg")
    scandir = os.scandir

    def refuse_locked(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_locked)
    candidates, rejects = crop.find_files(tmp_path, voc=True)
    assert candidates == ["cat/a.jpg"]
    assert rejects == [{"path": "locked", "reason": "unreadable folder",
                        "detail": "Permission denied"}]
