"""The export stage's steps one after another in one process, with the time each took and the
process's peak memory after it.

    python bench/export.py DIR     # DIR/data/model/model.keras; writes into a temporary folder
    python bench/export.py DIR --stage-against REF --reps 3

DIR is a project folder holding a model, such as bench/startup.py's or
bench/predict_folder.py's after their ``setup``. Peak memory is ``ru_maxrss`` (the largest
resident set so far), so each step's figure includes the steps before it.

With ``--stage-against REF`` (a checkout of another commit), the whole stage instead:
``python -m stages.export`` in DIR with this code and with REF's, alternating, each timed
end to end with its start-up; peak memory is the summed RSS of the stage's processes.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from data_stages import measure

ROOT = Path(__file__).resolve().parent.parent


def stage_against(folder: Path, ref: Path, reps: int) -> None:
    """The export stage with this code and with ``ref``'s, alternating, medians of ``reps``."""
    runs: dict[str, list[tuple[float, int, float]]] = {"this code": [], str(ref): []}
    for rep in range(reps):
        for name, code in (("this code", ROOT), (str(ref), ref)):
            env = {**os.environ, "PYTHONPATH": str(code)}
            runs[name].append(measure([sys.executable, "-m", "stages.export"], folder, env))
            wall, peak, cpu = runs[name][-1]
            print(f"rep {rep}  {name:20} {wall:6.1f} s wall  {cpu:6.1f} CPU s  "
                  f"peak {peak / 1e9:5.2f} GB  load {os.getloadavg()[0]:.1f}", flush=True)
    for name, figures in runs.items():
        wall, peak, cpu = (statistics.median(column) for column in zip(*figures, strict=True))
        print(f"median  {name:20} {wall:6.1f} s wall  {cpu:6.1f} CPU s  peak {peak / 1e9:5.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--stage-against", type=Path, metavar="REF",
                        help="time the whole stage against REF's instead of each step")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if args.stage_against:
        stage_against(args.folder.resolve(), args.stage_against.resolve(), args.reps)
        return
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
