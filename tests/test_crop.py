import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw, ImageOps

from inception_pipeline.annotations import AnnotationError, parse_csv_row, parse_voc
from inception_pipeline.crop_store import crop_name, load_crop
from inception_pipeline.errors import PipelineError
from inception_pipeline.images import (
    Photo,
    bounded_size,
    clip_box,
    cut_out_pays,
    decode_scale,
    expand_box,
)
from inception_pipeline.io import read_csv
from inception_pipeline.layout import CROPS_DIR
from inception_pipeline.sources import find_files
from inception_pipeline.synthetic import Object, voc_xml
from stages import crop


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
    assert crop_name("x.jpg", 2) == "x.jpg-2"  # coco and yolo take images at the top too


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
    crops = [load_crop(row, CROPS_DIR) for row in manifest]
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
        crop_pixels = load_crop(manifest[f"cat/{name}-0"], CROPS_DIR)
        assert np.array_equal(crop_pixels, decoded[5:25, 10:30]), name


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
    candidates, annotation_files, rejects = find_files(tmp_path, "voc")
    assert (candidates, annotation_files) == (["cat/a.jpg"], {})
    assert rejects == [{"path": "locked", "reason": "unreadable folder",
                        "detail": "Permission denied"}]


# Camera-sized photos: crops stored at most crop.max_side long, JPEGs decoded reduced.

def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients with sharp-edged rectangles: every region looks different."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    image = coarse.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        side = int(rng.integers(width // 40, width // 8))
        colour = tuple(map(int, rng.integers(0, 255, 3)))
        draw.rectangle((x, y, x + side, y + side // 2), fill=colour)
    return image


# What a camera stores for an upright picture with each EXIF orientation: the inverse transpose.
STORED = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
          6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_270}


def camera_jpeg(upright: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = upright if STORED[orientation] is None else upright.transpose(STORED[orientation])
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def full_decode(data: bytes) -> Image.Image:
    """The reference: the whole photo decoded, then turned upright."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data)))


def shrunk(image: Image.Image, region, size) -> np.ndarray:
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS, box=region))


def difference(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    diff = np.abs(a.astype(int) - b.astype(int))
    return diff.mean(), diff.max()


@pytest.mark.parametrize("width, height, max_side, expected", [
    (1000, 500, 299, (299, 150)),   # 149.5 rounds up
    (500, 1000, 299, (150, 299)),
    (1000, 1000, 299, (299, 299)),
    (299, 120, 299, (299, 120)),    # not longer than max_side: unchanged
    (20, 30, 299, (20, 30)),
    (5000, 10, 299, (299, 1)),      # never 0
    (897, 448, 299, (299, 149)),    # 149.33 rounds down
])
def test_bounded_size_keeps_the_aspect_ratio(width, height, max_side, expected):
    assert bounded_size(width, height, max_side) == expected


@pytest.mark.parametrize("longest, scale", [(2392, 8), (2391, 4), (1196, 4), (1195, 2), (598, 2),
                                            (597, 1), (100, 1)])
def test_each_cut_out_region_is_decoded_at_its_own_scale(longest, scale):
    photo = Photo(camera_jpeg(Image.new("RGB", (4000, 3000), "grey"), 1), 10**8)
    box, small = (400, 800, 400 + longest, 850), (0, 0, 100, 100)
    photo.load([box, small], max_side=299)  # small: the photo is cut, not decoded at full size
    part = photo.parts[box]
    assert part.scale == scale and photo.parts[small].scale == 1
    # The box and 8 pixels of the reduced decode around it, widened to the 16 x 16 MCU grid.
    (left, top), (width, height), context = part.origin, part.image.size, 8 * scale
    assert left % 16 == 0 and box[0] - context - 16 < left <= box[0] - context
    assert top % 16 == 0 and box[1] - context - 16 < top <= box[1] - context
    assert (width, height) == (-(-(box[2] + context - left) // scale),
                               -(-(box[3] + context - top) // scale))


@pytest.mark.parametrize("regions, scale, cut", [
    ([(0, 0, 597, 10)], 1, True),      # full size for a small box: cut out
    ([(0, 0, 500, 399)], 1, True),     # just under a fifth of the 2500 x 400 photo
    ([(0, 0, 500, 400)], 1, False),    # a fifth
    ([(0, 0, 100, 100), (0, 0, 1000, 400)], 1, False),
    ([(0, 0, 600, 10)], 2, False),     # reduced: the whole decode is cheaper
    ([(0, 0, 2400, 10)], 8, False),
])
def test_a_jpeg_is_cut_out_only_where_it_would_be_decoded_at_full_size(regions, scale, cut):
    assert decode_scale(regions, 299) == scale
    assert cut_out_pays(regions, scale, 2500 * 400) == cut
    assert not cut_out_pays(regions, scale, 2500 * 400 - 1)  # under a megapixel: never
    photo = Photo(camera_jpeg(Image.new("RGB", (2500, 400), "grey"), 1), 10**8)
    photo.load(regions, max_side=299)
    assert bool(photo.parts) == cut and photo.scale == scale


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("kind", ["4:2:0", "4:4:4", "progressive", "greyscale"])
def test_a_region_decode_cuts_nearly_what_a_whole_decode_at_its_scale_cuts(kind, scale):
    """Close to the crop of PIL's decode of the whole photo at the same reduction, also where
    the box is not on the block grid and where it touches the photo's edge (where the region's
    edge is nearer, chroma upsampling and Lanczos see other pixels: BENCHMARKS.md)."""
    image = picture(2503, 1901, seed=scale)
    buffer = io.BytesIO()
    options = {"4:4:4": {"subsampling": 0}, "progressive": {"progressive": True}}.get(kind, {})
    (image.convert("L") if kind == "greyscale" else image).save(buffer, "JPEG", quality=90,
                                                                **options)
    data = buffer.getvalue()
    whole = Image.open(io.BytesIO(data))
    whole.draft("RGB", (2503 // scale, 1901 // scale))
    whole = whole.convert("RGB")
    assert whole.size == (-(-2503 // scale), -(-1901 // scale))
    tiny = (5, 1700, 105, 1800)  # makes the photo cut out
    small = (37, 21, 37 + 299 * scale, 21 + 20 * scale)  # pixel for pixel at scale 1
    large = (max(0, 2503 - 597 * scale), 1901 - 15 * scale, 2503, 1901)  # shrunk up to 2x
    photo = Photo(data, 10**8)
    photo.load([tiny, small, large], max_side=299)
    for box in small, large:
        assert photo.parts[box].scale == scale
        size = bounded_size(box[2] - box[0], box[3] - box[1], 299)
        expected = (whole.crop(box) if size == (box[2] - box[0], box[3] - box[1]) else
                    whole.resize(size, Image.Resampling.LANCZOS,
                                 box=tuple(v / scale for v in box)))
        mean, largest = difference(photo.cut(box, 299), np.asarray(expected))
        assert mean < 0.5, (box, mean, largest)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_cuts_the_upright_pixels(orientation):
    """Regions are in the upright frame; the photo stays stored as it is (1603 x 1149: not a
    multiple of the DCT block) and only the cut-out part is turned upright."""
    upright = picture(1603, 1149, seed=orientation)
    data = camera_jpeg(upright, orientation)
    reference = full_decode(data)
    assert reference.size == (1603, 1149)
    small, large = (101, 57, 351, 300), (3, 10, 1003, 745)
    photo = Photo(data, 10**8)
    assert (photo.width, photo.height) == (1603, 1149)
    photo.load([small], max_side=299)  # under max_side: cut out at full size, pixel for pixel
    assert [part.scale for part in photo.parts.values()] == [1]
    assert np.array_equal(photo.cut(small, 299), np.asarray(reference.crop(small)))

    photo = Photo(data, 10**8)
    photo.load([large], max_side=120)  # 1000 / 120: decoded whole at 1/8
    assert photo.scale == 8 and not photo.parts
    cut = photo.cut(large, 120)
    assert cut.shape == (88, 120, 3)  # 735 * 120 / 1000 = 88.2
    mean, _ = difference(cut, shrunk(reference, large, (120, 88)))
    assert mean < 3, mean


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """A 12 MP phone photo held upright: 3000 x 4000 shown, stored 4000 x 3000 with EXIF
    orientation 6, cropped by the stage under several names, each with its own boxes."""
    root = tmp_path_factory.mktemp("camera")
    upright = picture(3000, 4000)
    data = camera_jpeg(upright, 6)
    raw = root / "raw" / "cam"
    raw.mkdir(parents=True)
    boxes = {
        "edge": [(1800, 2600, 3000, 4000)],                   # at the corner, 1/4 is enough
        "outside": [(2500, -300, 3400, 700)],                 # clipped to 500 x 700: 1/2
        "mixed": [(100, 100, 1300, 1300), (1500, 2000, 1700, 2250)],  # a small box: full size
        "bad": [(5000, 5000, 5100, 5100), (0, 0, 2400, 2400)],
        "truncated": [(0, 0, 2400, 2400)],
    }
    for name in boxes:
        (raw / f"{name}.jpg").write_bytes(data)
    (raw / "truncated.jpg").write_bytes(data[: len(data) * 3 // 5])
    (raw / "whole.jpg").write_bytes(data)  # no box: the whole photo, decoded at 1/8
    (root / "raw" / "annotations.csv").write_text("path,xmin,ymin,xmax,ymax\n" + "".join(
        f"cam/{name}.jpg,{','.join(map(str, box))}\n" for name, bs in boxes.items() for box in bs))
    write_params(root, data__annotations="csv", crop__max_rejected=1.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        crop.main()
        crops = {row["crop"]: (row, load_crop(row, CROPS_DIR))
                 for row in read_csv(CROPS_DIR / "manifest.csv")}
        metrics = json.loads(Path("metrics/data.json").read_text())
        rejects = read_csv(Path("metrics/rejects.csv"))
    return full_decode(data), crops, metrics, rejects


def test_camera_crops_are_bounded_and_close_to_a_full_size_decode(camera):
    reference, crops, _, _ = camera
    expected = {"cam/edge.jpg-0": (299, 256), "cam/outside.jpg-0": (299, 214),
                "cam/mixed.jpg-0": (299, 299), "cam/bad.jpg-1": (299, 299),
                "cam/whole.jpg-0": (299, 224)}
    for name, (height, width) in expected.items():
        row, pixels = crops[name]
        assert pixels.shape == (height, width, 3), name
        region = tuple(int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        mean, _ = difference(pixels, shrunk(reference, region, (width, height)))
        assert mean < 3, (name, mean)


def test_a_box_smaller_than_max_side_is_cut_from_the_full_size_decode(camera):
    reference, crops, _, _ = camera
    _, pixels = crops["cam/mixed.jpg-1"]
    assert np.array_equal(pixels, np.asarray(reference.crop((1500, 2000, 1700, 2250))))


def test_camera_photo_rejects(camera):
    _, crops, metrics, rejects = camera
    assert "cam/truncated.jpg-0" not in crops
    assert [(r["path"], r["reason"]) for r in rejects] == [
        ("cam/bad.jpg", "bad box"), ("cam/truncated.jpg", "unreadable image")]
    assert "truncated" in rejects[1]["detail"]
    assert crops["cam/outside.jpg-0"][0]["ymin"] == "0" and metrics["boxes_clipped"] == 1


def test_header_check_counts_the_full_size_of_a_jpeg_decoded_reduced():
    data = camera_jpeg(Image.new("RGB", (3000, 4000), "grey"), 6)
    with pytest.raises(AnnotationError, match="4000x3000 pixels exceeds crop.max_pixels=11999999"):
        Photo(data, 11_999_999)
    photo = Photo(data, 12_000_000)
    photo.load([(0, 0, 3000, 4000)], max_side=299)
    assert photo.scale == 8 and photo.cut((0, 0, 3000, 4000), 299).shape == (299, 224, 3)


def test_a_truncated_jpeg_fails_on_load_when_cut_out_too():
    data = camera_jpeg(picture(1600, 1200), 1)
    photo = Photo(data[: len(data) * 3 // 5], 10**8)
    with pytest.raises(OSError, match="truncated"):
        photo.load([(1400, 1000, 1500, 1100)], max_side=299)
    whole = Photo(data, 10**8)
    whole.load([(1400, 1000, 1500, 1100)], max_side=299)
    assert list(whole.parts) == [(1400, 1000, 1500, 1100)]
