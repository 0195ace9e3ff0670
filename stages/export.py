"""export: the trained classifier as a TensorFlow SavedModel, a TFLite file and an ONNX file
(inception_pipeline/export.py says what each takes and gives), and export.json, which records
the sha256 of the .keras file they came from: inception-predict runs the TFLite file only while
it is the model's.

The ONNX conversion runs in a process of its own beside the other two: each is mostly one
thread of graph rewriting, and on 2 cores the stage takes about the time of the longest.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from inception_pipeline.errors import PipelineError, run
from inception_pipeline.io import atomic_dir, atomic_path, write_json
from inception_pipeline.layout import EXPORT_INFO, MODEL, ONNX_MODEL, SAVED_MODEL, TFLITE_MODEL
from inception_pipeline.runtime import configure_tensorflow


def main() -> None:
    configure_tensorflow()

    from inception_pipeline.export import (
        file_sha256,
        inference_model,
        tflite_bytes,
        write_onnx_of,
        write_saved_model,
    )
    from models import ModelFileError, load_classifier

    try:
        model = inference_model(load_classifier(MODEL))
    except ModelFileError as err:
        raise PipelineError(str(err)) from None
    # "spawn": a forked child would inherit this process's TensorFlow runtime and its threads.
    # The pool is left (the child waited for) before the ONNX file is renamed or removed.
    with (atomic_path(ONNX_MODEL) as onnx_tmp,
          ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as onnx):
        onnx_written = onnx.submit(write_onnx_of, MODEL, onnx_tmp)
        with atomic_dir(SAVED_MODEL) as tmp:
            write_saved_model(model, tmp)
        with atomic_path(TFLITE_MODEL) as tmp:
            tmp.write_bytes(tflite_bytes(SAVED_MODEL))
        onnx_written.result()  # its error, if any, is raised here
    write_json(EXPORT_INFO, {"model": MODEL.as_posix(), "model_sha256": file_sha256(MODEL),
                             "input": list(model.input_shape[1:]),
                             "classes": model.output_shape[-1]})
    print(f"export: {SAVED_MODEL}/, {TFLITE_MODEL} and {ONNX_MODEL}: uint8 "
          f"{'x'.join(map(str, model.input_shape[1:]))} images in, "
          f"{model.output_shape[-1]} class probabilities out")


if __name__ == "__main__":
    run(main)
