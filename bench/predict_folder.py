"""A folder of crops through `inception-predict --csv` against the evaluate stage, per image.

    python bench/predict_folder.py setup DIR [--images 2000]   # DIR/crops/*.jpg, the model
    python bench/predict_folder.py run DIR [--reps 2]

``setup`` writes IMAGES random 75x75 JPEG crops into DIR/crops (in 20 sub-folders), the
default network (IR-v2, 75x75, 51 classes, untrained: the time does not depend on the weights)
as DIR/data/model/model.keras with DIR/data/packed/classes.json, and runs the export stage in
DIR, so that predict finds its TFLite file. ``run`` alternates, rep by rep, in fresh processes:

- evaluate: the evaluate stage's steps on the same crops as decoded arrays (``NpyRows`` of an
  images.npy, ``Batches`` of evaluate.batch_size 128, ``class_probabilities`` with its progress
  callback), timed from the call to its return, without importing TensorFlow or loading the
  model;
- predict: `python -m inception_pipeline.predict DIR/crops --csv out.csv` (the TFLite export),
  wall time of the whole command: start-up, finding, decoding and resizing the files, the
  model in its classifier's batches, the CSV;
- predict-keras: the same with `--model data/model/model.keras`.

It prints seconds and images per second for each, and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE, CLASSES = 75, 51

EVALUATE = """
import sys, time
import numpy as np
from inception_pipeline.runtime import configure_tensorflow
configure_tensorflow()
from inception_pipeline.batches import Batches, NpyRows
from inception_pipeline.progress import PredictionProgress
from models import class_probabilities, load_classifier
model = load_classifier("data/model/model.keras")
images = NpyRows("crops.npy")
test = np.arange(images.shape[0])
labels = np.zeros(len(test), dtype=np.int64)
batches = Batches(images, labels, test, 51, 128)
start = time.perf_counter()
class_probabilities(model, batches, callbacks=[PredictionProgress("bench", len(test), 128)])
print(time.perf_counter() - start)
"""


def setup(folder: Path, count: int) -> None:
    import json

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = []
    for i in range(count):
        # Smooth random pictures (noise blown up), so that JPEG sizes are those of photos' crops.
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        crop = Image.fromarray(small).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        path = folder / "crops" / f"{i % 20:02d}" / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        crop.save(path, quality=90)
        arrays.append(np.asarray(Image.open(path).convert("RGB")))
    np.save(folder / "crops.npy", np.stack(arrays))
    (folder / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    for sub in ("data/packed", "data/model"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "data/packed/classes.json").write_text(json.dumps([f"c{i}" for i in range(CLASSES)]))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", MAKE_MODEL], cwd=folder, env=env, check=True)
    subprocess.run([sys.executable, "-m", "stages.export"], cwd=folder, env=env, check=True)


MAKE_MODEL = """
from inception_pipeline.runtime import configure_tensorflow
configure_tensorflow()
import keras
from models import build_classifier, save_classifier
keras.utils.set_random_seed(0)
model = build_classifier("inception_resnet_v2", 75, 51, weights=None, bn_momentum=0.9,
                         augment=True, seed=0)
save_classifier(model, "data/model/model.keras")
"""


def timed(folder: Path, args: list[str]) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        sys.exit(f"{args[:2]}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - start, done.stdout


def run(folder: Path, reps: int) -> None:
    count = sum(1 for _ in (folder / "crops").rglob("*.jpg"))
    contenders = {
        # its last line: the seconds (the progress callback's lines come before it)
        "evaluate (model calls only)": lambda: float(
            timed(folder, ["-c", EVALUATE])[1].split()[-1]),
        "predict, TFLite (whole command)": lambda: timed(folder, [
            "-m", "inception_pipeline.predict", "crops", "--csv", "out.csv"])[0],
        "predict, .keras (whole command)": lambda: timed(folder, [
            "-m", "inception_pipeline.predict", "crops", "--csv", "out.csv", "--model",
            "data/model/model.keras"])[0],
    }
    results = {name: [] for name in contenders}
    for rep in range(reps):
        for name, contender in contenders.items():
            seconds = contender()
            results[name].append(seconds)
            print(f"rep {rep + 1} {name}: {seconds:.1f} s, {count / seconds:.1f} images/s, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"medians of {reps}, {count} crops:")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"  {name:34} {median:7.1f} s  {count / median:6.1f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("setup", "run"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.what}: load {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs", flush=True)
    if args.what == "setup":
        setup(args.folder.resolve(), args.images)
    else:
        run(args.folder.resolve(), args.reps)


if __name__ == "__main__":
    main()
