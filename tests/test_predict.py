"""predict and export: on the source images and their boxes predict gives what evaluate recorded
for the test crops, because it prepares them with the training's own crop, resize and pack
steps; the exported SavedModel, TFLite and ONNX files give what the Keras model gives."""

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from inception_pipeline import predict
from inception_pipeline.annotations import Box, parse_voc, to_pixels
from inception_pipeline.errors import run
from inception_pipeline.io import read_csv
from inception_pipeline.layout import (
    CROPS_DIR,
    IMAGES,
    ITEMS,
    MANIFEST,
    MODEL,
    ONNX_MODEL,
    PREDICTIONS,
    SAVED_MODEL,
    SPLIT_INDICES,
    TFLITE_MODEL,
)
from inception_pipeline.params import load_params
from inception_pipeline.runtime import START_UP_NOISE
from inception_pipeline.synthetic import Object, voc_xml
from stages import crop, evaluate, pack, resize, sample, split

# One test process for the whole module under `pytest -n`: its module fixtures train or
# evaluate a tiny run, which two processes would each pay for.
pytestmark = pytest.mark.xdist_group("predict")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path("data/sample")
BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
# The most a class probability of an export may differ from the Keras model's (float32). The
# TFLite file runs LiteRT's XNNPACK kernels, which sum in another order than TensorFlow's oneDNN
# ones; on the test crops here it differed by at most 2.4e-7 (AMD EPYC), within the same bound.
TOLERANCE = 1e-5


def rotate_behind_exif(path: Path) -> None:
    """Store ``path`` rotated, with an EXIF orientation that turns it back for a viewer, so that
    its VOC boxes hold only when the orientation is applied."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.open(path).transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)


def enlarge_to_camera_size(path: Path, factor: int = 16) -> None:
    """Blow the scene ``path`` up ``factor`` times (about 3,000 px a side) with its VOC boxes and
    store it behind EXIF orientation 6, so that crop decodes it reduced and shrinks its crops
    to crop.max_side."""
    xml = path.with_suffix(".xml")
    image = Image.open(path)
    big = image.resize((image.width * factor, image.height * factor), Image.Resampling.BICUBIC)
    objects = [Object(label, tuple(v * factor for v in box))
               for label, box in parse_voc(xml.read_bytes())]
    xml.write_bytes(voc_xml(path.name, path.parent.name, big.size, objects))
    exif = Image.Exif()
    exif[0x0112] = 6
    big.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)


def write_csv_annotations(data_dir: Path) -> Path:
    """annotations.csv with every box of the VOC XMLs (0-based edges, as the CSV has them)."""
    rows = [f"{xml.with_suffix('.jpg').relative_to(data_dir).as_posix()},{','.join(map(str, box))}"
            for xml in sorted(data_dir.rglob("*.xml"))
            for _, box in parse_voc(xml.read_bytes())]
    path = data_dir / "annotations.csv"
    path.write_text("path,xmin,ymin,xmax,ymax\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def voc_boxes(image: Path) -> list[Box]:
    return predict.Annotation(image.with_suffix(".xml")).boxes(image)


def write_coco_annotations(data_dir: Path) -> Path:
    """annotations.json with every box of the VOC XMLs, as COCO's [x, y, width, height]."""
    images = sorted(data_dir.rglob("*.jpg"))
    document = {
        "images": [{"id": i, "file_name": image.relative_to(data_dir).as_posix()}
                   for i, image in enumerate(images)],
        "annotations": [{"image_id": i, "category_id": 0, "bbox": [x0, y0, x1 - x0, y1 - y0]}
                        for i, image in enumerate(images)
                        for x0, y0, x1, y1 in voc_boxes(image)],
        "categories": [{"id": 0, "name": "any"}]}
    path = data_dir / "annotations.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def write_yolo_labels(image: Path) -> Path:
    """A YOLO .txt beside ``image`` with its VOC boxes, normalised by the picture as shown."""
    photo = predict.load_image(image, 10**9)
    width, height = photo.width, photo.height
    path = image.with_suffix(".txt")
    path.write_text("".join(f"0 {(x0 + x1) / 2 / width} {(y0 + y1) / 2 / height} "
                            f"{(x1 - x0) / width} {(y1 - y0) / height}\n"
                            for x0, y0, x1, y1 in voc_boxes(image)))
    return path


def voc_box(item: dict) -> Box:
    """The VOC box (before the margin) that ``item``, a manifest or items.csv row, came from."""
    return voc_boxes(SAMPLE / item["source"])[int(item["crop"].rsplit("-", 1)[1])]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny run: 3 classes, crop margin 0.1, 65x65, an untrained GoogLeNet, evaluated."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["sample"].update(classes=3, images_per_class=8)
    params["data"]["workers"] = 1
    params["crop"]["margin"] = 0.1
    params["resize"]["size"] = 65
    params["split"]["test"] = 0.3
    params["train"]["model"] = "googlenet"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("predict"))
        Path("params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
        sample.main()
        rotate_behind_exif(next(SAMPLE.glob("*/00000.jpg")))
        enlarge_to_camera_size(next(SAMPLE.glob("*/00001.jpg")))
        write_csv_annotations(SAMPLE)
        for stage in (crop, resize, pack, split):
            stage.main()

        import keras

        from models import build_classifier

        keras.utils.set_random_seed(0)  # the same weights whichever tests ran before
        model = build_classifier("googlenet", 65, 3, weights=None, bn_momentum=0.9,
                                 augment=False, seed=0)
        # Untrained, every crop scores about 1/3 per class, mostly for the same class. A sharper
        # head, centred on these crops, spreads the predictions over classes and confidences,
        # so that matching them means something.
        head = model.get_layer("predictions")
        features = keras.Model(model.inputs, head.input).predict(
            np.load(IMAGES), verbose=0)
        kernel = head.get_weights()[0] * 100
        head.set_weights([kernel, -(features @ kernel).mean(axis=0)])
        MODEL.parent.mkdir(parents=True)
        model.save(MODEL)
        evaluate.main()
        # As dvc runs it, in its own process: the test of quiet start-up reads its stderr.
        yield subprocess.run([sys.executable, "-m", "stages.export"], check=True, text=True,
                             capture_output=True, timeout=1200,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_model_inputs_are_the_packed_arrays_byte_for_byte(evaluated):
    """Every crop (one photo EXIF-rotated, one camera-sized), prepared from its source image and
    the image's VOC boxes."""
    params = load_params()
    images = np.load(IMAGES)
    manifest = {row["crop"]: row for row in read_csv(CROPS_DIR / MANIFEST)}
    assert any(max(int(row["height"]), int(row["width"])) == params["crop"]["max_side"]
               for row in manifest.values())  # the camera-sized photo's crops were shrunk
    items_of: dict[str, list[dict]] = {}
    for item in read_csv(ITEMS):
        items_of.setdefault(item["source"], []).append(item)
    for source, items in items_of.items():
        path = SAMPLE / source
        image = predict.load_image(path, params["crop"]["max_pixels"])
        boxes = predict.Annotation(path.with_suffix(".xml")).boxes(path)
        arrays, regions = predict.model_inputs(path, image, boxes, params["crop"],
                                               params["resize"])
        for item in items:
            index = int(item["crop"].rsplit("-", 1)[1])
            assert regions[index] == tuple(int(manifest[item["crop"]][k]) for k in BOX_FIELDS)
            array = arrays[index]
            assert array.dtype == np.uint8 and np.array_equal(array, images[int(item["index"])])


def recorded_predictions() -> dict[tuple[Path, Box], tuple[str, float]]:
    """(source image, region cropped) -> (class, confidence) that evaluate recorded for every
    test crop."""
    manifest = {row["crop"]: row for row in read_csv(CROPS_DIR / MANIFEST)}
    return {(SAMPLE / manifest[row["crop"]]["source"],
             tuple(int(manifest[row["crop"]][k]) for k in BOX_FIELDS)):
            (row["predicted"], float(row["confidence"])) for row in read_csv(PREDICTIONS)}


def predicted(argv: list[str], capsys) -> dict[tuple[Path, Box], tuple[str, float]]:
    """The same from inception-predict --json, probabilities unrounded."""
    predict.main(["--json", *argv])
    return {(Path(r["image"]), tuple(r["box"])):
            (r["top"][0]["class"], r["top"][0]["probability"])
            for r in json.loads(capsys.readouterr().out)}


def assert_agree(got: dict, recorded: dict, tolerance: float | None) -> None:
    """Same crops, same top class, and a confidence that rounds to evaluate's 4 decimals
    (tolerance None: the Keras model, which evaluate ran) or lies within ``tolerance`` of it
    (plus evaluate's rounding)."""
    assert got.keys() == recorded.keys()
    for key, (top, confidence) in got.items():
        assert top == recorded[key][0], key
        if tolerance is None:
            assert round(confidence, 4) == recorded[key][1], key
        else:
            assert abs(confidence - recorded[key][1]) <= 5e-5 + tolerance, key


@pytest.mark.parametrize("write_annotations, model", [
    (write_csv_annotations, []), (write_coco_annotations, []),
    (write_csv_annotations, ["--model", str(MODEL)])], ids=["csv", "coco", "csv-keras"])
def test_predict_gives_the_predictions_evaluate_recorded(evaluated, capsys, write_annotations,
                                                         model):
    """By default with the TFLite export (the fast start), or with the .keras file."""
    assert predict.model_file(None) == TFLITE_MODEL
    recorded = recorded_predictions()
    sources = sorted({image for image, _ in recorded})
    got = predicted(["--annotation", str(write_annotations(SAMPLE)), *map(str, sources),
                     *model], capsys)
    assert len({top for top, _ in got.values()}) > 1
    assert_agree(got, recorded, None if model else TOLERANCE)


def test_a_dataset_folder_with_its_annotations_to_csv(evaluated, tmp_path):
    """The whole sample folder, its VOC boxes found beside each image as crop finds them: every
    crop of the dataset, and for the test crops evaluate's predictions."""
    out = tmp_path / "predictions.csv"
    predict.main([str(SAMPLE), "--annotation", str(SAMPLE), "--csv", str(out), "--top-k", "2"])
    rows = read_csv(out)
    assert list(rows[0]) == predict.CSV_FIELDS
    assert [row["rank"] for row in rows] == ["1", "2"] * (len(rows) // 2)
    top = {(Path(row["image"]), tuple(map(int, row["box"].split(",")))):
           (row["class"], float(row["probability"])) for row in rows if row["rank"] == "1"}
    manifest = read_csv(CROPS_DIR / MANIFEST)
    assert set(top) == {(SAMPLE / row["source"], tuple(int(row[k]) for k in BOX_FIELDS))
                        for row in manifest}
    recorded = recorded_predictions()
    assert_agree({key: top[key] for key in recorded}, recorded, TOLERANCE)


def test_files_in_a_folder_that_are_not_images_are_skipped(evaluated, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    image = next(SAMPLE.glob("*/00002.jpg"))
    (folder / "nested" / "a.jpg").write_bytes(image.read_bytes())
    (folder / "notes.md").write_text("not an image\n")
    (folder / "a.xml").write_text("<annotation/>\n")  # an annotation: not even looked at
    predict.main([str(folder)])
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{folder / 'nested' / 'a.jpg'} [box 0,0,%d,%d]" % Image.open(
        image).size
    assert err == (f"inception-predict: skipped {folder / 'notes.md'}: unreadable image "
                   f"(UnidentifiedImageError)\n")


def test_a_stale_export_is_not_used(evaluated, monkeypatch, capsys):
    """An export of another model.keras (retrained, the export not rerun) gives way to it."""
    monkeypatch.setattr(predict, "file_sha256", lambda path: "another model")
    assert predict.model_file(None) == MODEL
    assert "is the export of another" in capsys.readouterr().err
    assert predict.model_file(Path("x.tflite")) == Path("x.tflite")


@pytest.fixture(scope="module")
def keras_on_test_crops(evaluated) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test crops and the Keras model's class probabilities (float32) for them, alone and
    averaged with the mirror images' (evaluate.tta_flip)."""
    from models import class_probabilities, load_classifier

    crops = np.load(IMAGES)[np.load(SPLIT_INDICES["test"])]
    model = load_classifier(MODEL)
    return crops, *(class_probabilities(model, crops, tta_flip=flip).astype(np.float32)
                    for flip in (False, True))


def test_the_saved_model_gives_the_keras_models_probabilities(keras_on_test_crops):
    import tensorflow as tf

    crops, expected, _ = keras_on_test_crops
    serve = tf.saved_model.load(str(SAVED_MODEL)).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"] == tf.TensorSpec(
        (None, 65, 65, 3), tf.uint8, name="images")
    got = serve(images=tf.constant(crops))["predictions"].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_the_tflite_file_gives_the_keras_models_probabilities(keras_on_test_crops):
    """Alone, and as predict averages it with the mirror images (evaluate.tta_flip)."""
    crops, expected, expected_flipped = keras_on_test_crops
    lite = predict.LiteClassifier(TFLITE_MODEL)
    got = lite(crops, tta_flip=False)
    print(f"TFLite against Keras, max abs difference: {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(lite(crops, tta_flip=True), expected_flipped, rtol=0,
                               atol=TOLERANCE)
    assert np.abs(expected_flipped - expected).max() > 100 * TOLERANCE  # the mirror counts


def test_the_onnx_file_gives_the_keras_models_probabilities(keras_on_test_crops):
    import onnxruntime

    crops, expected, _ = keras_on_test_crops
    session = onnxruntime.InferenceSession(str(ONNX_MODEL), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape[1:]) for i in session.get_inputs()] == [
        ("images", "tensor(uint8)", [65, 65, 3])]
    got, = session.run(["predictions"], {"images": crops})
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_no_tensorflow_start_up_line_reaches_the_terminal(evaluated):
    """The export stage (which runs TensorFlow's converters) and the predict CLI on the .keras
    file write nothing to stderr; INCEPTION_TF_LOG=1 brings TensorFlow's log back."""
    assert evaluated.stderr == ""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    image = str(next(SAMPLE.glob("*/00003.jpg")))
    done = subprocess.run([sys.executable, "-m", "inception_pipeline.predict", image,
                           "--model", str(MODEL)], check=True, capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.stderr == "" and done.stdout.startswith(image)
    done = subprocess.run([sys.executable, "-c", "from inception_pipeline.runtime import "
                           "configure_tensorflow; configure_tensorflow()"], check=True,
                          capture_output=True, timeout=600, env=dict(env, INCEPTION_TF_LOG="1"))
    assert all(noise in done.stderr for noise in START_UP_NOISE[:2])


def test_a_truncated_tflite_file_is_one_line(evaluated, tmp_path, capsys):
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(TFLITE_MODEL.read_bytes()[:100_000])
    with pytest.raises(SystemExit) as exit_:
        run(partial(predict.main, [str(next(SAMPLE.glob("*/00003.jpg"))), "--model", str(cut)]))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"error: {cut}: not a TFLite model, or damaged (The "
                                       f"model is not a valid Flatbuffer buffer)\n")


def test_yolo_boxes_are_fractions_of_the_picture_as_shown(evaluated):
    """Every sample image, the one stored rotated behind its EXIF orientation too."""
    for image in sorted(SAMPLE.glob("*/*.jpg")):
        shown = predict.load_image(image, 10**9)
        boxes = predict.Annotation(write_yolo_labels(image)).boxes(image)
        assert [to_pixels(box, shown.width, shown.height) for box in boxes] == voc_boxes(image)


def test_predict_with_a_yolo_label_file(evaluated, capsys):
    recorded = recorded_predictions()
    image = min(image for image, _ in recorded)
    got = predicted([str(image), "--annotation", str(write_yolo_labels(image))], capsys)
    assert_agree(got, {key: top for key, top in recorded.items() if key[0] == image}, TOLERANCE)


def test_a_few_images_predicted_eagerly_score_as_the_graph_does_bit_for_bit(evaluated):
    """inception-predict calls the model eagerly for up to EAGER_IMAGES images; evaluate, through
    model.predict, runs a graph. With grappler off (configure_tensorflow, which evaluate called)
    both run the same kernels: same numbers, to the last bit."""
    from models import EAGER_IMAGES, class_probabilities, load_classifier

    model = load_classifier(MODEL)
    images = np.load(IMAGES)[:EAGER_IMAGES]
    graph = model.predict(images, batch_size=len(images), verbose=0)
    graph = graph[model.output_names.index("predictions")]
    np.testing.assert_array_equal(class_probabilities(model, images), graph.astype(np.float64))


def test_box_option_and_text_output(evaluated, capsys):
    row = read_csv(PREDICTIONS)[0]
    crop_row = next(r for r in read_csv(CROPS_DIR / MANIFEST) if r["crop"] == row["crop"])
    source = SAMPLE / crop_row["source"]
    predict.main([str(source), "--box", ",".join(map(str, voc_box(crop_row))), "--top-k", "2"])
    lines = capsys.readouterr().out.splitlines()
    region = ",".join(crop_row[k] for k in BOX_FIELDS)
    assert lines[0] == f"{source} [box {region}]"
    assert lines[1].split() == [f"{float(row['confidence']):.4f}", row["predicted"]]
    assert len(lines) == 3


@pytest.fixture
def picture(in_tmp, default_params):
    """A 100x80 picture and valid params in an empty folder, without a model."""
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(default_params, allow_unicode=True))
    Image.new("RGB", (100, 80), "white").save(in_tmp / "picture.png")
    (in_tmp / "notes.txt").write_text("not an image\n")
    return in_tmp


@pytest.mark.parametrize("argv, message", [
    (["missing.jpg"], "missing.jpg: cannot read (No such file or directory)"),
    (["notes.txt"], "notes.txt: unreadable image (UnidentifiedImageError)"),
    (["picture.png", "--box", "120,10,150,40"],
     "picture.png: box (120, 10, 150, 40) lies outside the 100x80 image"),
    (["picture.png", "--box", "10,10,50"], "--box '10,10,50': expected four integers x0,y0,x1,y1"),
    (["picture.png", "--box", "a,b,c,d"], "--box 'a,b,c,d': expected four integers x0,y0,x1,y1"),
    (["picture.png", "--top-k", "0"], "--top-k 0: must be at least 1"),
    (["picture.png"], "data/model/model.keras: missing (the pipeline writes it: `dvc repro`)"),
])
def test_bad_input_is_one_line_and_exit_status_2(picture, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        run(partial(predict.main, argv))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_command_line_reports_a_bad_file_in_one_line(picture):
    done = subprocess.run([sys.executable, "-m", "inception_pipeline.predict", "notes.txt"],
                          check=False, cwd=picture, capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: notes.txt: unreadable image (UnidentifiedImageError)\n"


@pytest.mark.parametrize("name, content, images, message", [
    ("boxes.json", b"{", ["picture.png"], "boxes.json: malformed JSON (Expecting property name "
                                          "enclosed in double quotes: line 1 column 2 (char 1))"),
    ("boxes.json", json.dumps({"images": [{"id": 1, "file_name": "picture.png"}],
                               "annotations": [{"image_id": 1, "category_id": 5,
                                                "bbox": [0, 0, 5, 5]}],
                               "categories": []}).encode(), ["picture.png"],
     "boxes.json, picture.png: box 0: unknown class: annotations[0]: category_id 5 is not in "
     "categories"),
    ("picture.txt", b"0 0.5 0.5 0.2\n", ["picture.png"],
     "picture.txt: box 0: bad box: line 1: 4 fields, expected 5 (class cx cy w h)"),
    ("picture.txt", b"0 0.5 0.5 0.2 0.2\n", ["picture.png", "picture.png"],
     "--annotation picture.txt: a YOLO .txt describes one image, 2 given"),
    ("picture.txt", b"3 1.5 1.5 0.2 0.2\n", ["picture.png"],
     "picture.png: box (140, 112, 160, 128) lies outside the 100x80 image"),
])
def test_bad_annotation_is_one_line(picture, capsys, name, content, images, message):
    (picture / name).write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        run(partial(predict.main, [*images, "--annotation", name]))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize("annotations, files", [
    ("yolo", {"images/a/x.png": None, "labels/a/x.txt": b"0 0.5 0.5 0.5 0.5\n"}),
    ("yolo", {"images/a/x.png": None, "images/a/x.txt": b"0 0.5 0.5 0.5 0.5\n"}),
    ("voc", {"cat/x.png": None, "cat/x.xml": voc_xml("x.png", "cat", (100, 80), [
        Object("cat", (25, 20, 75, 60))])}),
    ("csv", {"cat/x.png": None, "annotations.csv": b"path,xmin,ymin,xmax,ymax\n"
                                                   b"cat/x.png,25,20,75,60\n"}),
    ("coco", {"images/x.png": None, "annotations.json": json.dumps({
        "images": [{"id": 1, "file_name": "images/x.png"}], "categories": [{"id": 0, "name": "c"}],
        "annotations": [{"image_id": 1, "category_id": 0, "bbox": [25, 20, 50, 40]}]}).encode()}),
], ids=["yolo-labels", "yolo-beside", "voc", "csv", "coco"])
def test_a_dataset_folder_gives_each_image_its_boxes_as_crop_finds_them(tmp_path, annotations,
                                                                       files):
    """--annotation FOLDER with data.annotations: the same box (25, 20, 75, 60) of a 100x80
    image, wherever each format keeps it."""
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            Image.new("RGB", (100, 80)).save(path)
            image = path
        else:
            path.write_bytes(content)
    boxes = predict.read_annotation(tmp_path, annotations).boxes(image)
    assert [to_pixels(box, 100, 80) for box in boxes] == [(25, 20, 75, 60)]
