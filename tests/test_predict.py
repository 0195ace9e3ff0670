"""predict: on the source images and their boxes it gives exactly what evaluate recorded for the
test crops, because it prepares them with the training's own crop, resize and pack steps."""

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from inception_pipeline import predict
from inception_pipeline.annotations import Box, parse_voc
from inception_pipeline.errors import run
from inception_pipeline.io import read_csv
from inception_pipeline.layout import CROPS_DIR, IMAGES, ITEMS, MANIFEST, MODEL, PREDICTIONS
from inception_pipeline.params import load_params
from stages import crop, evaluate, pack, resize, sample, split

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = Path("data/sample")
BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def rotate_behind_exif(path: Path) -> None:
    """Store ``path`` rotated, with an EXIF orientation that turns it back for a viewer, so that
    its VOC boxes hold only when the orientation is applied."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.open(path).transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)


def write_csv_annotations(data_dir: Path) -> Path:
    """annotations.csv with every box of the VOC XMLs (0-based edges, as the CSV has them)."""
    rows = [f"{xml.with_suffix('.jpg').relative_to(data_dir).as_posix()},{','.join(map(str, box))}"
            for xml in sorted(data_dir.rglob("*.xml"))
            for _, box in parse_voc(xml.read_bytes())]
    path = data_dir / "annotations.csv"
    path.write_text("path,xmin,ymin,xmax,ymax\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def voc_box(item: dict) -> Box:
    """The VOC box (before the margin) that ``item``, a manifest or items.csv row, came from."""
    source = SAMPLE / item["source"]
    index = int(item["crop"].rsplit("-", 1)[1])
    return predict.Annotation(source.with_suffix(".xml")).boxes(source)[index]


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
        yield


def test_model_inputs_are_the_packed_arrays_byte_for_byte(evaluated):
    """Every crop (one of them EXIF-rotated), prepared from its source image and VOC box."""
    params = load_params()
    margin, resize = params["crop"]["margin"], params["resize"]
    images = np.load(IMAGES)
    manifest = {row["crop"]: row for row in read_csv(CROPS_DIR / MANIFEST)}
    for item in read_csv(ITEMS):
        image = predict.load_image(SAMPLE / item["source"], params["crop"]["max_pixels"])
        array, region = predict.model_input(image, voc_box(item), margin, resize["size"],
                                            resize["mode"])
        assert region == tuple(int(manifest[item["crop"]][k]) for k in BOX_FIELDS)
        assert array.dtype == np.uint8 and np.array_equal(array, images[int(item["index"])])


def test_predict_gives_the_predictions_evaluate_recorded(evaluated, capsys):
    recorded = read_csv(PREDICTIONS)
    manifest = {row["crop"]: row for row in read_csv(CROPS_DIR / MANIFEST)}
    sources = sorted({manifest[row["crop"]]["source"] for row in recorded})
    predict.main(["--json", "--annotation", str(SAMPLE / "annotations.csv"),
                  *(str(SAMPLE / source) for source in sources)])
    results = json.loads(capsys.readouterr().out)
    top1 = {(Path(r["image"]), tuple(r["box"])): r["top"][0] for r in results}
    assert len({top["class"] for top in top1.values()}) > 1
    for row in recorded:
        crop_row = manifest[row["crop"]]
        top = top1[SAMPLE / crop_row["source"], tuple(int(crop_row[k]) for k in BOX_FIELDS)]
        assert (top["class"], round(top["probability"], 4)) == (row["predicted"],
                                                                 float(row["confidence"]))


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
