"""The export stage's steps one after another in one process, with the time each took and the
process's peak memory after it.

    python bench/export.py DIR     # DIR/data/model/model.keras; writes into a temporary folder

DIR is a project folder holding a model, such as bench/startup.py's or
bench/predict_folder.py's after their ``setup``. Peak memory is ``ru_maxrss`` (the largest
resident set so far), so each step's figure includes the steps before it.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    os.chdir(args.folder)
    print(f"load {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs", flush=True)
    start = time.perf_counter()

    def done(step: str) -> None:
        nonlocal start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB
        print(f"{step:24} {time.perf_counter() - start:6.1f} s   peak RSS {peak:5.2f} GB",
              flush=True)
        start = time.perf_counter()

    from inception_pipeline.runtime import configure_tensorflow

    configure_tensorflow()
    from inception_pipeline.export import (
        inference_model,
        tflite_bytes,
        write_onnx,
        write_saved_model,
    )
    from models import load_classifier

    done("import TensorFlow")
    model = inference_model(load_classifier("data/model/model.keras"))
    done("load the model")
    with tempfile.TemporaryDirectory() as scratch:
        write_saved_model(model, Path(scratch) / "saved_model")
        done("SavedModel")
        (Path(scratch) / "model.tflite").write_bytes(tflite_bytes(Path(scratch) / "saved_model"))
        done("TFLite")
        write_onnx(model, Path(scratch) / "model.onnx")
        done("ONNX")


if __name__ == "__main__":
    main()
