"""Every path that loads a model answers a missing, truncated or foreign file with one line
naming the file and what is wrong, exit status 2: predict (.keras and .tflite), evaluate,
export, and resume from a checkpoint. The files are made here; none needs a trained model."""

import io
import zipfile
from functools import partial
from pathlib import Path

import pytest
import yaml
from PIL import Image

from inception_pipeline import predict
from inception_pipeline.errors import PipelineError, run
from inception_pipeline.layout import CLASSES, MODEL
from stages import evaluate, export
from tests.test_resume import fit, tiny_model


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


KERAS_LIKE = zip_of({"metadata.json": b"{}", "config.json": b"{}",
                     "model.weights.h5": b"\x89HDF\r\n\x1a\n" + bytes(2000)})
BAD_KERAS = {  # content (None: no file), what the error says after "PATH: "
    "missing": (None, "missing"),
    "empty": (b"", "empty"),
    "text": (b"<html>Not found</html>\n",
             "not a Keras model (a .keras file is a zip archive; this one starts b'<htm')"),
    "truncated": (KERAS_LIKE[:1500],
                  "truncated (a zip archive without its end: an interrupted download or copy?)"),
    "foreign zip": (zip_of({"notes.txt": b"hello"}), "a zip archive but not a Keras model (no "
                                                     "config.json or model.weights.h5 in it)"),
    "damaged": (KERAS_LIKE, "damaged or not a classifier of this project ("),
}


@pytest.fixture
def project(in_tmp, default_params):
    """Valid params, classes.json and a picture; data/model/ without a model yet."""
    default_params["resize"]["size"] = 75
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(default_params))
    CLASSES.parent.mkdir(parents=True)
    CLASSES.write_text('["a", "b"]')
    MODEL.parent.mkdir(parents=True)
    Image.new("RGB", (100, 80), "white").save(in_tmp / "picture.png")
    return in_tmp


def error_line(main, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        run(main)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("main", [
    partial(predict.main, ["picture.png", "--model", str(MODEL)]), evaluate.main, export.main],
    ids=["predict", "evaluate", "export"])
@pytest.mark.parametrize("case", sorted(BAD_KERAS))
def test_a_bad_keras_file_is_one_line(project, capsys, main, case):
    content, message = BAD_KERAS[case]
    if content is not None:
        MODEL.write_bytes(content)
    err = error_line(main, capsys)
    if case == "missing" and main.__module__ == predict.__name__:
        message += " (the pipeline writes it: `dvc repro`)"  # predict says where it comes from
    assert err.startswith(f"error: {MODEL}: {message}")


@pytest.mark.parametrize("content", [b"", b"<html>Not found</html>\n"], ids=["empty", "text"])
def test_a_bad_tflite_file_is_one_line(project, capsys, content):
    Path("model.tflite").write_bytes(content)
    err = error_line(partial(predict.main, ["picture.png", "--model", "model.tflite"]), capsys)
    assert err.startswith("error: model.tflite: not a TFLite model, or damaged (")


@pytest.mark.parametrize("name, damage", [
    ("state.npz", lambda data: data[:len(data) // 2]),
    ("state.npz", lambda data: b"not a zip file"),
    ("state.json", lambda data: data[:10])], ids=["weights-truncated", "weights-foreign",
                                                   "state-truncated"])
def test_resume_from_a_damaged_checkpoint_is_one_line(tmp_path, name, damage):
    from inception_pipeline.checkpoints import EpochCheckpoint

    fit(tmp_path, 4, stop_after=1)  # leaves epoch-0001
    path = tmp_path / "checkpoints" / "epoch-0001" / name
    path.write_bytes(damage(path.read_bytes()))
    checkpoint = EpochCheckpoint(tmp_path / "checkpoints", tmp_path / "live", "run")
    with pytest.raises(PipelineError) as error:
        checkpoint.restore(tiny_model())
    assert str(error.value).startswith(f"{path}: damaged checkpoint, cannot resume from it (")
    assert str(error.value).endswith(f"; delete {tmp_path / 'checkpoints'}/ to train from "
                                     f"epoch 1")
