"""Where the train stage's first epoch spends its extra seconds, and what changes them.

    python bench/first_epoch.py [--reps 2] [--variants default,drop_remainder,...]

Each variant runs in its own cold process, interleaved rep by rep: the train stage's fit
(verbose=0, its callbacks' work left out) of IR-v2 at 75x75 with 51 classes, augmentation on,
Adam, binary cross-entropy, on random images: TRAIN training images (5 full batches of 64 and a
partial one of 44, as a real split ends) and VAL validation images, 2 epochs. Printed per
variant: building + compiling the model; the first step (tracing the training step and its
first run); the median of the later full steps; the last, partial step of each epoch (a retrace
for the new batch shape would show there); each validation pass (the first one traces the
validation step); each epoch; and the overhead, epoch 1 - epoch 2.

Variants:
- default: as the train stage fits;
- keras_adam: Keras' own Adam, whose update is about 22 graph ops per weight, where the train
  stage's FusedAdam has one;
- drop_remainder: the partial batch left out, so every batch has one shape;
- steps_per_execution: Keras runs 3 steps per call of the traced function;
- trace_first: the training and validation steps traced before fit, on one batch each
  (``train_on_batch`` + ``test_on_batch``, their updates undone), timed on their own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from fit_timing import TIMED_FIT

ROOT = Path(__file__).resolve().parents[1]
SIZE, CLASSES, BATCH, TRAIN, VAL = 75, 51, 64, 5 * 64 + 44, 64 + 20
VARIANTS = ("default", "keras_adam", "drop_remainder", "steps_per_execution", "trace_first")

FIT = """
import sys, time
start = time.perf_counter()
from inception_pipeline.runtime import configure_tensorflow
configure_tensorflow()
import keras, numpy as np
from inception_pipeline.batches import Batches
from inception_pipeline.training import compile_model, make_loss, make_optimizer
from models import AUX_LOSS_WEIGHT, build_classifier
SIZE, CLASSES, BATCH, TRAIN, VAL = {constants}
VARIANT = {variant!r}
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (TRAIN + VAL, SIZE, SIZE, 3), dtype=np.uint8)
labels = rng.integers(0, CLASSES, TRAIN + VAL)
model = build_classifier("inception_resnet_v2", SIZE, CLASSES, weights=None, bn_momentum=0.9,
                         augment=True, seed=0)
train_rows = np.arange(TRAIN - (TRAIN % BATCH if VARIANT == "drop_remainder" else 0))
train = Batches(images, labels, train_rows, CLASSES, BATCH, shuffle_seed=0,
                output_names=model.output_names)
val = Batches(images, labels, np.arange(TRAIN, TRAIN + VAL), CLASSES, BATCH,
              output_names=model.output_names)
optimizer = (keras.optimizers.Adam(1e-3) if VARIANT == "keras_adam"
             else make_optimizer("adam", 1e-3, "constant", len(train), 2))
compile_model(model, optimizer, make_loss("binary"), AUX_LOSS_WEIGHT)
if VARIANT == "steps_per_execution":
    model.steps_per_execution = 3  # read when fit makes the traced function
times = {{"build + compile": time.perf_counter() - start}}
if VARIANT == "trace_first":
    weights = [v.numpy() for v in model.variables]
    optimizer_state = [v.numpy() for v in model.optimizer.variables]
    x, y = train[0]
    start = time.perf_counter()
    model.train_on_batch(x, y)
    times["trace + run train step"] = time.perf_counter() - start
    x, y = val[0]
    start = time.perf_counter()
    model.test_on_batch(x, y)
    times["trace + run validation step"] = time.perf_counter() - start
    for v, value in zip(model.variables, weights):
        v.assign(value)
    for v, value in zip(model.optimizer.variables, optimizer_state):
        v.assign(value)

{timed_fit}
partial = len(train_rows) % BATCH != 0
full = steps[0][1:len(steps[0]) - partial] + steps[1][:len(steps[1]) - partial]
times.update({{"first step": steps[0][0], "later full steps (median)": float(np.median(full)),
              "last step, epoch 1": steps[0][-1], "last step, epoch 2": steps[1][-1],
              "validation 1": vals[0], "validation 2": vals[1], "epoch 1": epochs[0],
              "epoch 2": epochs[1], "overhead": epochs[0] - epochs[1]}})
print(repr(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    variants = args.variants.split(",")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    results: dict[str, list[dict]] = {v: [] for v in variants}
    print(f"load {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs", flush=True)
    for rep in range(args.reps):
        for variant in variants:
            code = FIT.format(constants=(SIZE, CLASSES, BATCH, TRAIN, VAL), variant=variant,
                              timed_fit=TIMED_FIT)
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  text=True, check=False)
            if done.returncode:
                sys.exit(f"{variant}: exit {done.returncode}: {done.stderr.strip()[-800:]}")
            results[variant].append(eval(done.stdout.strip().splitlines()[-1]))
            print(f"rep {rep + 1} {variant} (load {os.getloadavg()[0]:.1f}): " + ", ".join(
                f"{k} {v:.1f}" for k, v in results[variant][-1].items()), flush=True)
    print(f"medians of {args.reps}, seconds:")
    names = list(dict.fromkeys(k for runs in results.values() for k in runs[0]))
    print("| | " + " | ".join(variants) + " |\n|---|" + "---:|" * len(variants))
    for name in names:
        print(f"| {name} | " + " | ".join(
            f"{statistics.median(r[name] for r in results[v]):.1f}"
            if name in results[v][0] else "" for v in variants) + " |")


if __name__ == "__main__":
    main()
