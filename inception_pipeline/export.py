"""The trained classifier in serving formats: a TensorFlow SavedModel (TF Serving), a TFLite
file (LiteRT: phones, and inception-predict's fast start) and an ONNX file (ONNX Runtime).

Each takes a batch of uint8 RGB images, named ``images``, (N, size, size, 3) at the model's
resize.size, and gives the main head's softmax, named ``predictions``, (N, classes): the pixel
scaling is a layer inside the model, so a server feeds the crops as they are. GoogLeNet's
auxiliary heads are training aids and are left out; so is the augmentation, which is traced
with ``training=False``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from unittest import mock

INPUT, OUTPUT = "images", "predictions"
SIGNATURE = "serving_default"  # the SavedModel signature TF Serving calls by default
ONNX_OPSET = 17
CATCH_ERRORS = "TF2ONNX_CATCH_ERRORS"  # tf2onnx.constants.ENV_TF2ONNX_CATCH_ERRORS


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def inference_model(model):
    """The classifier with one input and its main head as the only output."""
    import keras

    return keras.Model(model.inputs[0], model.outputs[model.output_names.index(OUTPUT)],
                       name=model.name)


def serving_function(model):
    """A tf.function: uint8 images (any batch size) -> {"predictions": class probabilities}."""
    import tensorflow as tf

    size = model.input_shape[1]
    spec = tf.TensorSpec((None, size, size, 3), tf.uint8, name=INPUT)
    return tf.function(lambda images: {OUTPUT: model(images, training=False)},
                       input_signature=[spec])


def write_saved_model(model, path: Path) -> None:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    function = serving_function(model)
    archive.add_endpoint(SIGNATURE, function, input_signature=function.input_signature)
    archive.write_out(str(path), verbose=False)


def tflite_bytes(saved_model: Path) -> bytes:
    """The SavedModel converted to TFLite, float32 as trained (no quantisation)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()


def write_onnx(model, path: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # its INFO lines: every pass it runs
    function = serving_function(model)
    with tf.device("/cpu:0"), _one_graph_through_tf2onnx_passes():
        tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                      opset=ONNX_OPSET, output_path=str(path))


def write_onnx_of(model_file: Path, path: Path) -> None:
    """``write_onnx`` of the classifier in ``model_file``, for a process of its own: the export
    stage runs it beside the SavedModel and TFLite conversions (BENCHMARKS.md)."""
    from inception_pipeline.runtime import configure_tensorflow

    configure_tensorflow()
    from models import load_classifier

    write_onnx(inference_model(load_classifier(model_file)), path)


def _one_graph_through_tf2onnx_passes():
    """TF2ONNX_CATCH_ERRORS set for the duration of a block: otherwise tf2onnx deep-copies the
    whole graph, weights included, before each of its optimizer passes, so as to skip a pass
    that raises. None does on these networks, and the copies took half of the conversion's
    time (BENCHMARKS.md)."""
    return mock.patch.dict(os.environ, {CATCH_ERRORS: "FALSE"})
