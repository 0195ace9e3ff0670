"""Bad input for the data stages: every test builds the defective file it is about.

One dataset holding every file-level defect is cropped once (then resized and packed); each
defect has its own test on that run's outcome, and one test checks that every file is
accounted for. Image modes, bombs and huge images are tested on images.Photo directly, memory
in a subprocess.
"""

import csv
import io
import json
import os
import struct
import subprocess
import sys
import unicodedata
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from inception_pipeline.annotations import AnnotationError
from inception_pipeline.crop_store import load_crop
from inception_pipeline.errors import PipelineError
from inception_pipeline.images import Photo
from inception_pipeline.io import save_npy, write_csv, write_json
from inception_pipeline.layout import SPLITS
from inception_pipeline.sources import read_csv_boxes
from inception_pipeline.splitting import content_groups
from inception_pipeline.synthetic import Object, voc_xml
from stages import crop, pack, resize, split
from stages.pack import ITEM_FIELDS
from tests.test_crop import write_image, write_params

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE, TEAL = (220, 20, 20), (20, 20, 220), (20, 160, 160)
KOREAN = "고양이"  # "cat"


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A 69-byte PNG whose header declares ``width`` x ``height`` RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A tiny JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (8, 8)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def rotated_jpeg() -> bytes:
    """A picture displayed 40 wide x 60 high, top half red, bottom half blue, stored lying on its
    side (60 x 40) with EXIF orientation 6 (a viewer turns it 90 degrees clockwise)."""
    shown = Image.new("RGB", (40, 60), BLUE)
    ImageDraw.Draw(shown).rectangle((0, 0, 39, 29), fill=RED)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(shown.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95,
                  exif=exif.tobytes())


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "ha">'
                  + b"".join(b'<!ENTITY l%d "&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;">'
                             % (i, *[i - 1] * 10) for i in range(1, 10))
                  + b"]><annotation><object><name>&l9;</name></object></annotation>")
EXTERNAL_ENTITY = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   b"<annotation><object><name>&x;</name></object></annotation>")

# path -> (reason, a fragment of the detail): every file-level defect of the dataset below.
REJECTED = {
    "truncated.jpg": ("cat/truncated.jpg", "unreadable image", "truncated"),
    "zero-byte file": ("cat/empty.jpg", "unreadable image", "not an image format"),
    "text file": ("cat/notes.txt", "unreadable image", "not an image format"),
    "Thumbs.db": ("cat/Thumbs.db", "unreadable image", "not an image format"),
    "bomb PNG": ("cat/bomb.png", "image too large", "50000x50000"),
    "bomb JPEG": ("cat/bomb.jpg", "image too large", "60000x60000"),
    "malformed XML": ("cat/malformed.jpg", "bad annotation", "malformed XML (ParseError"),
    "external entity": ("cat/xxe.jpg", "bad annotation", "EntitiesForbidden"),
    "billion laughs": ("cat/laughs.jpg", "bad annotation", "EntitiesForbidden"),
    "XML without image": ("cat/orphan.xml", "unused annotation", "no image beside it"),
    "symlink out of the root": ("cat/link.jpg", "outside data root", "symlink to"),
    "symlinked class folder": ("linked", "outside data root", "symlink to"),
    "XML symlinked out": ("cat/xml_link.jpg", "outside data root", "its annotation links"),
    "label mismatch": ("cat/mislabelled.jpg", "label mismatch", "labelled 'dog' in folder 'cat'"),
}


def build_defects(raw: Path, outside: Path) -> None:
    """A dataset holding every file-level defect above, plus files that must pass."""
    cat = raw / "cat"
    jpeg = encode(Image.new("RGB", (60, 40), RED), "JPEG")
    write_image(cat / "good.jpg")
    (cat / "good.xml").write_bytes(voc_xml("good.jpg", "cat", (60, 40),
                                           [Object("cat", (10, 5, 30, 25))]))
    whole = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                                     dtype=np.uint8)), "JPEG")
    (cat / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (cat / "empty.jpg").write_bytes(b"")
    (cat / "notes.txt").write_text("shot on a rainy day\n")
    (cat / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    (cat / "png_named.jpg").write_bytes(encode(Image.new("RGB", (30, 20), BLUE), "PNG"))
    (cat / "jpeg_named.txt").write_bytes(jpeg)
    (cat / "rotated.jpg").write_bytes(rotated_jpeg())
    (cat / "rotated.xml").write_bytes(voc_xml("rotated.jpg", "cat", (40, 60),
                                              [Object("cat", (0, 0, 40, 30))]))
    (cat / "bomb.png").write_bytes(png_claiming(50_000, 50_000))
    (cat / "bomb.jpg").write_bytes(jpeg_claiming(60_000, 60_000))
    for stem, xml in [("malformed", b"<annotation><object>"), ("xxe", EXTERNAL_ENTITY),
                      ("laughs", BILLION_LAUGHS)]:
        (cat / f"{stem}.jpg").write_bytes(jpeg)
        (cat / f"{stem}.xml").write_bytes(xml)
    (cat / "boxes.jpg").write_bytes(jpeg)  # 60 x 40
    (cat / "boxes.xml").write_bytes(voc_xml("boxes.jpg", "cat", (60, 40), [
        Object("cat", (-10, -10, 20, 20)), Object("cat", (30, 30, 10, 10)),
        Object("cat", (5, 5, 5, 20)), Object("cat", (100, 100, 200, 200))]))
    (cat / "mislabelled.jpg").write_bytes(jpeg)
    (cat / "mislabelled.xml").write_bytes(voc_xml("mislabelled.jpg", "cat", (60, 40),
                                                  [Object("dog", (0, 0, 10, 10))]))
    (cat / "orphan.xml").write_bytes(voc_xml("gone.jpg", "cat", (60, 40), []))
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(jpeg)
    (outside / "secret.xml").write_bytes(voc_xml("x.jpg", "cat", (60, 40), []))
    (cat / "link.jpg").symlink_to(outside / "secret.jpg")
    (raw / "linked").symlink_to(outside, target_is_directory=True)
    (cat / "xml_link.jpg").write_bytes(jpeg)
    (cat / "xml_link.xml").symlink_to(outside / "secret.xml")
    copied = encode(Image.new("RGB", (30, 30), (90, 160, 90)), "JPEG")
    (cat / "dup.jpg").write_bytes(copied)  # the same content in another class folder
    (raw / "dog").mkdir()
    (raw / "dog" / "dup copy.jpg").write_bytes(copied)
    twins = encode(Image.new("RGB", (20, 20), BLUE), "PNG")  # the same content twice in one class
    (raw / "dog" / "a.png").write_bytes(twins)
    (raw / "dog" / "b.png").write_bytes(twins)
    korean = raw / unicodedata.normalize("NFD", KOREAN)  # as macOS writes it
    write_image(korean / "흰 고양이.jpg", colour=TEAL)
    (korean / "흰 고양이.xml").write_bytes(voc_xml("흰 고양이.jpg", KOREAN, (60, 40),
                                                 [Object(KOREAN, (0, 0, 20, 20))]))
    write_image(raw / "yin yang" / "a b.png")
    (raw / "loose.txt").write_text("not in a class folder")


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    """The defects dataset cropped (every reject allowed), resized and packed."""
    root = tmp_path_factory.mktemp("defects")
    build_defects(root / "raw", root / "outside")
    write_params(root, crop__max_rejected=1.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for stage in (crop, resize, pack):
            stage.main()

    def rows(path):
        with open(root / path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return {"root": root, "metrics": json.loads((root / "metrics/data.json").read_text()),
            "rejects": rows("metrics/rejects.csv"), "manifest": rows("data/crops/manifest.csv"),
            "duplicates": rows("metrics/duplicates.csv"), "items": rows("data/packed/items.csv")}


@pytest.mark.parametrize("path, reason, detail", REJECTED.values(), ids=REJECTED.keys())
def test_defective_file_is_rejected_with_its_reason(defects, path, reason, detail):
    lines = [r for r in defects["rejects"] if r["path"] == path]
    assert [r["reason"] for r in lines] == [reason]
    assert detail in lines[0]["detail"]
    assert path not in {r["source"] for r in defects["manifest"]}


def test_every_file_found_is_accepted_or_rejected(defects):
    raw = defects["root"] / "raw"
    entries = []
    for folder, dirs, files in os.walk(raw):
        names = files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]
        entries += [Path(folder, name).relative_to(raw).as_posix() for name in names]
    # A VOC XML beside an image is that image's input, not an item of its own.
    read_xml = {str(Path(e).with_suffix(".xml")) for e in entries if not e.endswith(".xml")}
    items = {e for e in entries if e not in read_xml}
    accepted = {row["source"] for row in defects["manifest"]}
    rejected = items - accepted
    metrics = defects["metrics"]
    assert metrics["files_found"] == metrics["files_accepted"] + metrics["files_rejected"]
    assert metrics["files_found"] == len(items) and accepted <= items
    assert (metrics["files_accepted"], metrics["files_rejected"]) == (len(accepted), len(rejected))
    assert rejected <= {r["path"] for r in defects["rejects"]}
    assert sum(metrics["rejects_by_reason"].values()) == len(defects["rejects"])


def test_extension_does_not_decide_the_format(defects):
    """A PNG named .jpg and a JPEG named .txt are decoded by content, and accepted."""
    crops = {row["source"]: row for row in defects["manifest"]}
    png = load_crop(crops["cat/png_named.jpg"], defects["root"] / "data/crops")
    assert png.shape == (20, 30, 3) and (png == BLUE).all()
    assert "cat/jpeg_named.txt" in crops


def test_boxes_refer_to_the_picture_as_a_viewer_shows_it(defects):
    crops = {row["source"]: row for row in defects["manifest"]}
    top = load_crop(crops["cat/rotated.jpg"], defects["root"] / "data/crops")
    assert top.shape == (30, 40, 3)  # the box (0, 0, 40, 30) of the upright 40 x 60 picture
    assert np.abs(top[:24].astype(int) - RED).max() < 40  # JPEG blurs the red/blue edge


def test_bad_boxes_are_rejected_one_by_one(defects):
    """Inverted, zero-area and wholly outside: rejected; partly outside (negative): clipped and
    kept, so the file is accepted."""
    lines = [(r["reason"], r["detail"]) for r in defects["rejects"] if r["path"] == "cat/boxes.jpg"]
    assert lines == [("bad box", "box 1: inverted box (30, 30, 10, 10)"),
                     ("bad box", "box 2: zero-area box (5, 5, 5, 20)"),
                     ("bad box", "box 3: box (100, 100, 200, 200) lies outside the 60x40 image")]
    kept = [row for row in defects["manifest"] if row["source"] == "cat/boxes.jpg"]
    assert [[int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for row in kept] == [
        [0, 0, 20, 20]]


def test_unicode_and_spaces_go_through_crop_resize_and_pack(defects):
    """A Korean folder written decomposed (NFD, as macOS does) matches its NFC label."""
    items = {row["source"]: row for row in defects["items"]}
    korean = items[f"{unicodedata.normalize('NFD', KOREAN)}/흰 고양이.jpg"]
    assert korean["label"] == KOREAN and len(korean["source_sha256"]) == 64
    assert items["yin yang/a b.png"]["label"] == "yin yang"
    classes = json.loads((defects["root"] / "data/packed/classes.json").read_text())
    assert classes == sorted(["cat", "dog", KOREAN, "yin yang"])
    images = np.load(defects["root"] / "data/packed/images.npy")
    assert images.shape == (len(items), 75, 75, 3)
    pixels = images[int(korean["index"])].astype(int)
    assert np.abs(pixels - TEAL).max() < 10  # through JPEG, crop and resize


def test_same_content_in_two_classes_is_flagged_and_grouped(defects):
    metrics = defects["metrics"]
    assert metrics["duplicate_sources_across_classes"] == 2
    # and, within one class, dog/a.png = dog/b.png and cat/jpeg_named.txt = cat/boxes.jpg
    assert metrics["duplicate_sources"] == 6
    assert [(r["source"], r["label"]) for r in defects["duplicates"]] == [
        ("cat/dup.jpg", "cat"), ("dog/dup copy.jpg", "dog")]
    groups = content_groups(defects["items"])
    by_source = {row["source"]: groups[int(row["index"])] for row in defects["items"]}
    assert by_source["cat/dup.jpg"] == by_source["dog/dup copy.jpg"]
    assert by_source["dog/a.png"] == by_source["dog/b.png"] != by_source["cat/dup.jpg"]


def test_csv_paths_leaving_the_root_are_rejected(tmp_path):
    raw = tmp_path / "raw"
    write_image(tmp_path / "outside.jpg")
    write_image(raw / "cat" / "in.jpg")
    (raw / "cat" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    (raw / "annotations.csv").write_text(
        "path,xmin,ymin,xmax,ymax\n"
        f"{tmp_path / 'outside.jpg'},0,0,5,5\n"  # absolute
        "cat/link.jpg,0,0,5,5\n"                 # a symlink that leaves the root
        "cat/in.jpg,0,0,5,5\n")
    boxes, rejects = read_csv_boxes(raw)
    assert list(boxes) == ["cat/in.jpg"]
    assert [(r["path"], r["reason"]) for r in rejects] == [
        ("annotations.csv line 2", "outside data root"),
        ("annotations.csv line 3", "outside data root")]


def sixteen_bit_rgb_png() -> bytes:
    bgr = np.array([[[0, 25700, 65535]] * 2] * 2, np.uint16)  # cv2 writes BGR
    return cv2.imencode(".png", bgr)[1].tobytes()


def decode_whole(data: bytes) -> np.ndarray:
    """The whole picture's pixels, as crop cuts them for a file without box."""
    photo = Photo(data, 10**6)
    whole = (0, 0, photo.width, photo.height)
    photo.load([whole], max_side=1000)
    return photo.cut(whole, max_side=1000)


def palette_image(transparent: bool) -> Image.Image:
    image = Image.new("P", (2, 2), 1)
    image.putpalette([0, 0, 0, 10, 200, 30])
    if transparent:
        image.info["transparency"] = 1
    return image


@pytest.mark.parametrize("data, expected, tolerance", [
    (encode(Image.new("L", (2, 2), 77), "PNG"), [77, 77, 77], 0),
    (encode(Image.new("LA", (2, 2), (77, 0)), "PNG"), [77, 77, 77], 0),
    (encode(Image.new("1", (2, 2), 1), "PNG"), [255, 255, 255], 0),
    (encode(Image.new("RGBA", (2, 2), (10, 200, 30, 0)), "PNG"), [10, 200, 30], 0),
    (encode(palette_image(transparent=False), "PNG"), [10, 200, 30], 0),
    (encode(palette_image(transparent=True), "PNG"), [10, 200, 30], 0),
    (sixteen_bit_rgb_png(), [255, 100, 0], 0),
    (encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95), [255, 0, 0], 8),
    (encode(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), "JPEG", quality=95), [0, 255, 255], 8),
    (encode(Image.new("CMYK", (8, 8), (0, 0, 0, 128)), "JPEG", quality=95), [127, 127, 127], 8),
], ids=["grey", "grey+alpha", "1-bit", "RGBA", "palette", "palette+transparency",
        "16-bit RGB", "CMYK red", "CMYK cyan", "CMYK grey"])
def test_modes_are_converted_to_rgb(data, expected, tolerance):
    """Alpha is dropped (colours kept as stored); CMYK converted without a colour profile."""
    image = decode_whole(data)
    assert image.shape[2] == 3
    assert np.abs(image.astype(int) - expected).max() <= tolerance


def test_16_bit_grey_is_scaled_not_clipped():
    values = np.array([[0, 1000, 25700, 32896, 65535]], np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    image = decode_whole(data)
    assert image[0, :, 0].tolist() == [0, 4, 100, 128, 255]
    assert (image == image[..., :1]).all()  # grey stays grey


@pytest.mark.parametrize("data", [png_claiming(50_000, 50_000), jpeg_claiming(60_000, 60_000)],
                         ids=["PNG", "JPEG"])
def test_decompression_bomb_is_refused_from_its_header(data):
    assert len(data) < 1000
    with pytest.raises(AnnotationError, match="exceeds crop.max_pixels=200000000"):
        Photo(data, 200_000_000)


def peak_rss_mb(code: str, **names) -> tuple[float, float]:
    """Run ``code`` in a fresh Python that has imported crop's code and configured the decoders
    as crop does; its peak RSS after the imports and at the end, in MB. (VmHWM, not ru_maxrss: Linux carries ru_maxrss over from
    the parent, pytest, across exec.)"""
    program = ("import re, inception_pipeline.cropping\n"
               "inception_pipeline.images.configure_decoders()\n"
               "def rss(): return int(re.search(r'VmHWM:\\s+(\\d+)', "
               "open('/proc/self/status').read())[1]) / 1024\n"
               + "".join(f"{name} = {value!r}\n" for name, value in names.items())
               + "base = rss()\n" + code + "\nprint(base, rss())")
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)
    base, peak = map(float, done.stdout.split())
    return base, peak


def test_bombs_allocate_nothing_big():
    """Decoding either would take 7.5 GB or more; the refusal costs a few MB."""
    base, peak = peak_rss_mb(
        "from inception_pipeline.annotations import AnnotationError\n"
        "from inception_pipeline.images import Photo\n"
        "for data in bombs:\n"
        "    try: Photo(data, 200_000_000)\n"
        "    except AnnotationError: pass\n"
        "    else: raise SystemExit('not refused')",
        bombs=[png_claiming(50_000, 50_000), jpeg_claiming(60_000, 60_000)])
    assert peak - base < 20


def test_huge_image_is_cropped_from_one_decoded_copy(tmp_path):
    """12,000 x 9,000 (a 108 MP phone photo): PIL cannot decode part of a JPEG, but crop holds
    only one decoded copy (412 MiB: PIL keeps RGB at 4 bytes a pixel), not two."""
    image = Image.new("RGB", (12_000, 9_000), BLUE)
    ImageDraw.Draw(image).rectangle((6_000, 4_000, 6_299, 4_299), fill=RED)
    (tmp_path / "cat").mkdir()
    image.save(tmp_path / "cat" / "huge.jpg", quality=90)
    del image
    decoded_mb = 12_000 * 9_000 * 4 / 2**20
    base, peak = peak_rss_mb(
        "from pathlib import Path\n"
        "from inception_pipeline.cropping import Job, crop_file\n"
        "outcome = crop_file(Job(data_dir=Path(root), real_root=root, source='cat/huge.jpg', "
        "annotations='csv', annotation_file=None, boxes=((None, (6000, 4000, 6300, 4300)),), "
        "classes=None, margin=0.0, no_box='whole', max_pixels=200_000_000, "
        "label_mismatch='reject', max_side=300))\n"
        "assert len(outcome.crops) == 1, outcome.rejects\n"
        "import numpy as np; np.save(Path(root) / 'crop.npy', outcome.pixels[0])",
        root=str(tmp_path))
    assert peak - base < 1.25 * decoded_mb, (base, peak)
    crop_pixels = np.load(tmp_path / "crop.npy").astype(int)
    assert crop_pixels.shape == (300, 300, 3)
    assert np.abs(crop_pixels[8:-8, 8:-8] - RED).max() < 40


def test_label_mismatch_policy_folder_keeps_the_box(in_tmp):
    write_image(in_tmp / "raw" / "cat" / "x.jpg")
    (in_tmp / "raw" / "cat" / "x.xml").write_bytes(voc_xml("x.jpg", "cat", (60, 40), [
        Object("dog", (0, 0, 10, 10)), Object("cat", (5, 5, 20, 20))]))
    write_params(in_tmp, crop__label_mismatch="folder")
    crop.main()
    metrics = json.loads((in_tmp / "metrics/data.json").read_text())
    assert (metrics["crops"], metrics["boxes_relabelled"], metrics["rejects_by_reason"]) == (
        2, 1, {})
    manifest = (in_tmp / "data/crops/manifest.csv").read_text(encoding="utf-8")
    assert "cat/x.jpg-0,cat/x.jpg,0,0,10,10,cat," in manifest


def test_too_many_rejects_stop_crop_but_leave_the_reasons(in_tmp):
    write_image(in_tmp / "raw" / "cat" / "good.jpg")
    for name in ("a.jpg", "b.jpg"):
        (in_tmp / "raw" / "cat" / name).write_bytes(b"")
    write_params(in_tmp)  # crop.max_rejected: 0.5
    with pytest.raises(PipelineError) as err:
        crop.main()
    assert str(err.value) == ("crop.max_rejected=0.5: 2 of 3 files rejected (66.7%); reasons "
                              "in metrics/rejects.csv and metrics/data.json")
    assert json.loads((in_tmp / "metrics/data.json").read_text())["files_rejected"] == 2
    assert len((in_tmp / "metrics/rejects.csv").read_text().splitlines()) == 3
    assert os.listdir(in_tmp / "data") == []  # no crops, and no temporary folder left


def write_packed(root: Path, labels: list[str], sources: list[str]) -> None:
    """A data/packed/ as pack writes it, for split; each source's content is its name."""
    classes = sorted(set(labels))
    packed = root / "data" / "packed"
    save_npy(packed / "labels.npy", np.array([classes.index(c) for c in labels], np.int32))
    write_json(packed / "classes.json", classes)
    write_csv(packed / "items.csv", ITEM_FIELDS, [
        {"index": i, "crop": f"{s}-{i}", "source": s, "label": c, "source_sha256": s}
        for i, (c, s) in enumerate(zip(labels, sources, strict=True))])


SMALL = {"labels": ["a"] * 6 + ["b"] * 5, "sources": [f"a{i}" for i in range(6)]
         + ["b0", "b0", "b0", "b1", "b1"]}  # b: 5 crops, but from 2 photos


def test_class_with_too_few_sources_is_an_error_naming_it(in_tmp, default_params):
    write_packed(in_tmp, **SMALL)
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(default_params))
    with pytest.raises(PipelineError, match=r"^class 'b' has 2 source image\(s\): stratified "
                                            r"train/val/test needs at least 3 per class"):
        split.main()


def test_class_with_too_few_sources_can_be_dropped(in_tmp, default_params, capsys):
    write_packed(in_tmp, **SMALL)
    default_params["split"]["too_few"] = "drop"
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(default_params))
    split.main()
    report = json.loads((in_tmp / "metrics/split.json").read_text())
    assert report["dropped_classes"] == {"b": 5}
    assert report["train"] + report["val"] + report["test"] == 6
    kept = np.concatenate([np.load(in_tmp / f"data/split/{n}.npy") for n in SPLITS])
    assert sorted(kept.tolist()) == list(range(6))
    assert "left out (split.too_few=drop): 'b' (5 crops)" in capsys.readouterr().out
