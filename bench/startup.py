"""Fixed start-up costs, old code against new, each in a cold process, interleaved rep by rep.

    python bench/startup.py setup DIR                  # models, params, classes, one image
    python bench/startup.py predict DIR [--reps 3]     # one-image inception-predict
    python bench/startup.py predict-lite DIR [--reps 5]  # the same, new on the TFLite export
    python bench/startup.py train DIR [--reps 2]       # first-epoch overhead of a short fit
    python bench/startup.py first-step DIR [--reps 2]  # the first training step, split up

"old" is the code at --old-ref (default dfcf72f: grappler on, the optimizer built in the first
traced step, the compiled model saved), extracted with `git archive` into DIR/old and put
first on PYTHONPATH; "new" is this checkout. ``setup`` builds the default network (IR-v2,
75x75, 51 classes, augmentation on), compiles it as the train stage does (Adam, binary
cross-entropy), runs one training step so that Adam's variables exist, and saves it twice:
``model.save`` of the compiled model (old) and ``save_classifier`` (new); then it puts the
lean file at data/model/model.keras and runs this checkout's export stage there.

``predict``: the wall time of `python -m inception_pipeline.predict image.jpg` (old on the
compiled file, new on the lean one), then the same steps timed inside one process: importing
TensorFlow, loading the model, the first call of ``class_probabilities`` on one image, a
second call. ``predict-lite``: the wall time of `python -m inception_pipeline.predict
image.jpg` with no --model (old: data/model/model.keras in Keras; new: the export's TFLite file
in LiteRT), then new's steps timed inside another cold process: importing the predict module
(no TensorFlow), checking that the export is the model's (sha256 of the .keras file), loading
the TFLite file, the first call on one image (tensors allocated), a second call.

``train``: the train stage's fit (verbose=0) on random images, TRAIN images and VAL validation
images in batches of 64 (the last batch of each partial, as in the default run), 2 epochs; it
prints the first step, the median of the later steps, each epoch and each validation pass. The
first-epoch overhead is epoch 1 minus epoch 2. ``first-step``: Keras' ``train_step`` of the same
model under ``tf.function``, traced alone (Python builds the graph), then its first call (graph
optimisation by grappler where it is on, oneDNN primitives and buffers created, one step run)
and the median of 3 later calls (one step run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

from fit_timing import TIMED_FIT

ROOT = Path(__file__).resolve().parents[1]
SIZE, CLASSES, BATCH, TRAIN, VAL = 75, 51, 64, 5 * 64 + 44, 64 + 20


def setup(folder: Path, old_ref: str) -> None:
    from PIL import Image

    from inception_pipeline.runtime import configure_tensorflow

    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", old_ref], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder / "old", filter="data")
    (folder / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (folder / "data/packed").mkdir(parents=True, exist_ok=True)
    (folder / "data/packed/classes.json").write_text(json.dumps([f"c{i}" for i in range(CLASSES)]))
    rng = __import__("numpy").random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype="uint8")).save(folder / "image.jpg")

    configure_tensorflow()
    import keras
    import numpy as np

    from inception_pipeline.training import compile_model, make_loss, make_optimizer
    from models import AUX_LOSS_WEIGHT, build_classifier, save_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier("inception_resnet_v2", SIZE, CLASSES, weights=None, bn_momentum=0.9,
                             augment=True, seed=0)
    compile_model(model, make_optimizer("adam", 1e-3, "none", 31, 4), make_loss("binary"),
                  AUX_LOSS_WEIGHT)
    model.run_eagerly = True  # one step, only so that the optimizer's variables exist
    model.train_on_batch(rng.integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8),
                         np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, 8)])
    model.save(folder / "compiled.keras")
    save_classifier(model, folder / "lean.keras")
    for name in ("compiled.keras", "lean.keras"):
        print(f"{name}: {(folder / name).stat().st_size / 1e6:.1f} MB")
    (folder / "data/model").mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "lean.keras", folder / "data/model/model.keras")
    subprocess.run([sys.executable, "-m", "stages.export"], cwd=folder, check=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT)))


PHASES = """
import sys, time
start = time.perf_counter()
from inception_pipeline.runtime import configure_tensorflow
configure_tensorflow()
import keras, numpy as np, tensorflow
from models import class_probabilities, load_classifier
times = {"import": time.perf_counter() - start}
start = time.perf_counter()
model = load_classifier(sys.argv[1])
times["load"] = time.perf_counter() - start
image = np.random.default_rng(0).integers(0, 256, (1, 75, 75, 3), dtype=np.uint8)
for call in ("first call", "second call"):
    start = time.perf_counter()
    class_probabilities(model, image)
    times[call] = time.perf_counter() - start
print(repr(times))
"""

PHASES_LITE = """
import time
start = time.perf_counter()
import numpy as np
from inception_pipeline import predict
times = {"import": time.perf_counter() - start}
start = time.perf_counter()
path = predict.model_file(None)
times["export is the model's"] = time.perf_counter() - start
assert path.suffix == ".tflite", path
start = time.perf_counter()
classifier = predict.LiteClassifier(path)
times["load"] = time.perf_counter() - start
image = np.random.default_rng(0).integers(0, 256, (1, 75, 75, 3), dtype=np.uint8)
for call in ("first call", "second call"):
    start = time.perf_counter()
    classifier(image, tta_flip=False)
    times[call] = time.perf_counter() - start
print(repr(times))
"""

FIT = """
import sys, time
from inception_pipeline.runtime import configure_tensorflow
configure_tensorflow()
import keras, numpy as np
from inception_pipeline.batches import Batches
from inception_pipeline.training import compile_model, make_loss, make_optimizer
from models import AUX_LOSS_WEIGHT, build_classifier
SIZE, CLASSES, BATCH, TRAIN, VAL = {constants}
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (TRAIN + VAL, SIZE, SIZE, 3), dtype=np.uint8)
labels = rng.integers(0, CLASSES, TRAIN + VAL)
model = build_classifier("inception_resnet_v2", SIZE, CLASSES, weights=None, bn_momentum=0.9,
                         augment=True, seed=0)
train = Batches(images, labels, np.arange(TRAIN), CLASSES, BATCH, shuffle_seed=0,
                output_names=model.output_names)
val = Batches(images, labels, np.arange(TRAIN, TRAIN + VAL), CLASSES, BATCH,
              output_names=model.output_names)
compile_model(model, make_optimizer("adam", 1e-3, "none", len(train), 2), make_loss("binary"),
              AUX_LOSS_WEIGHT)

{timed_fit}
later = steps[0][1:] + steps[1][1:]
print(repr({{"first step": steps[0][0], "later steps (median)": float(np.median(later)),
            "epoch 1": epochs[0], "epoch 2": epochs[1], "validation 1": vals[0],
            "validation 2": vals[1], "overhead": epochs[0] - epochs[1]}}))
"""

FIRST_STEP = """
import time
from inception_pipeline.runtime import configure_tensorflow
configure_tensorflow()
import keras, numpy as np, tensorflow as tf
from inception_pipeline.training import compile_model, make_loss, make_optimizer
from models import AUX_LOSS_WEIGHT, build_classifier
SIZE, CLASSES, BATCH, TRAIN, VAL = {constants}
keras.utils.set_random_seed(0)
model = build_classifier("inception_resnet_v2", SIZE, CLASSES, weights=None, bn_momentum=0.9,
                         augment=True, seed=0)
compile_model(model, make_optimizer("adam", 1e-3, "none", 31, 2), make_loss("binary"),
              AUX_LOSS_WEIGHT)
model.optimizer.build(model.trainable_variables)
rng = np.random.default_rng(0)
x = tf.constant(rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8))
y = tf.constant(np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, BATCH)])
start = time.perf_counter()
step = tf.function(model.train_step).get_concrete_function(
    (tf.TensorSpec((None, SIZE, SIZE, 3), tf.uint8), tf.TensorSpec((None, CLASSES))))
times = {{"trace": time.perf_counter() - start}}
start = time.perf_counter()
step(x, y)
times["first call"] = time.perf_counter() - start
later = []
for _ in range(3):
    start = time.perf_counter()
    step(x, y)
    later.append(time.perf_counter() - start)
times["later call (median)"] = float(np.median(later))
print(repr(times))
"""


def child(folder: Path, variant: str, args: list[str]) -> tuple[float, str]:
    """Wall seconds and stdout of a cold Python process running old or new code in ``folder``."""
    env = dict(os.environ, PYTHONPATH=str(folder / "old" if variant == "old" else ROOT))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{variant} {args[:2]}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return seconds, done.stdout


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def report(results: dict[str, list[dict]]) -> None:
    for name in results["old"][0]:
        old, new = (statistics.median(r[name] for r in results[v]) for v in ("old", "new"))
        print(f"  {name:22} old {old:6.1f} s   new {new:6.1f} s   new/old {new / old:.2f}")


def predict(folder: Path, reps: int) -> None:
    results = {"old": [], "new": []}
    for rep in range(reps):
        for variant, model in (("old", "compiled.keras"), ("new", "lean.keras")):
            wall, _ = child(folder, variant, ["-m", "inception_pipeline.predict", "image.jpg",
                                              "--model", model])
            _, out = child(folder, variant, ["-c", PHASES, model])
            phases = {"inception-predict (wall)": wall, **eval(out)}
            results[variant].append(phases)
            print(f"rep {rep + 1} {variant}: {load()}; " + ", ".join(
                f"{k} {v:.1f}" for k, v in phases.items()), flush=True)
    print(f"medians of {reps}:")
    report(results)


def predict_lite(folder: Path, reps: int) -> None:
    results = {"old": [], "new": []}
    for rep in range(reps):
        for variant in ("old", "new"):
            wall, _ = child(folder, variant, ["-m", "inception_pipeline.predict", "image.jpg"])
            phases = {"inception-predict (wall)": wall}
            if variant == "new":
                phases.update(eval(child(folder, variant, ["-c", PHASES_LITE])[1]))
            results[variant].append(phases)
            print(f"rep {rep + 1} {variant}: {load()}; " + ", ".join(
                f"{k} {v:.2f}" for k, v in phases.items()), flush=True)
    print(f"medians of {reps}:")
    for name in results["new"][0]:
        new = statistics.median(r[name] for r in results["new"])
        if name in results["old"][0]:
            old = statistics.median(r[name] for r in results["old"])
            print(f"  {name:24} old {old:6.2f} s   new {new:6.2f} s   new/old {new / old:.2f}")
        else:
            print(f"  {name:24}                new {new:6.2f} s")


def train(folder: Path, reps: int, template: str = FIT) -> None:
    code = template.format(constants=(SIZE, CLASSES, BATCH, TRAIN, VAL), timed_fit=TIMED_FIT)
    results = {"old": [], "new": []}
    for rep in range(reps):
        for variant in ("old", "new"):
            _, out = child(folder, variant, ["-c", code])
            results[variant].append(eval(out))
            print(f"rep {rep + 1} {variant}: {load()}; " + ", ".join(
                f"{k} {v:.1f}" for k, v in results[variant][-1].items()), flush=True)
    print(f"medians of {reps}:")
    report(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("setup", "predict", "predict-lite", "train",
                                         "first-step"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--reps", type=int)
    parser.add_argument("--old-ref", default="dfcf72f")
    args = parser.parse_args()
    print(f"{args.what}: {load()}, {os.cpu_count()} CPUs", flush=True)
    if args.what == "setup":
        setup(args.folder.resolve(), args.old_ref)
    elif args.what == "predict":
        predict(args.folder.resolve(), args.reps or 3)
    elif args.what == "predict-lite":
        predict_lite(args.folder.resolve(), args.reps or 5)
    else:
        train(args.folder.resolve(), args.reps or 2, FIT if args.what == "train" else FIRST_STEP)


if __name__ == "__main__":
    main()
