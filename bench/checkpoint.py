"""How long the train stage's epoch checkpoint holds up training, against writing it in line.

    python bench/checkpoint.py [--reps 5] [--model inception_resnet_v2]

The network at 75x75 with 51 classes, compiled with the train stage's Adam, its optimizer state
built: the checkpoint the train stage writes after every epoch. Interleaved rep by rep, each
into a fresh folder on the project's disk:
- in line: ``model.save_weights`` of the model and its optimizer, the way the stage wrote its
  checkpoints before the write moved to a thread (it blocked training for the whole write);
- EpochCheckpoint: the stage's callback; training waits for its ``on_epoch_end`` (the
  variables copied to memory and a thread started), and the write goes on in the thread, timed
  apart.
Printed: the median seconds of each, and the size of the checkpoint file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--model", default="inception_resnet_v2")
    args = parser.parse_args()

    from inception_pipeline.runtime import configure_tensorflow

    configure_tensorflow()
    from inception_pipeline.checkpoints import STATE, EpochCheckpoint
    from inception_pipeline.training import compile_model, make_loss, make_optimizer
    from models import AUX_LOSS_WEIGHT, build_classifier

    model = build_classifier(args.model, 75, 51, weights=None, bn_momentum=0.99, augment=True,
                             seed=0)
    compile_model(model, make_optimizer("adam", 0.001, "cosine", 17, 16, 1),
                  make_loss("binary"), AUX_LOSS_WEIGHT)
    model.optimizer.build(model.trainable_variables)
    print(f"{args.model}: load {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs", flush=True)
    inline, blocking, thread = [], [], []
    with tempfile.TemporaryDirectory(dir=ROOT) as scratch:
        for rep in range(args.reps):
            folder = Path(scratch) / f"rep-{rep}"
            (folder / "live").mkdir(parents=True)
            start = time.perf_counter()
            model.save_weights(folder / "inline.weights.h5")
            inline.append(time.perf_counter() - start)

            checkpoint = EpochCheckpoint(folder / "checkpoints", folder / "live", "bench")
            checkpoint.set_model(model)
            start = time.perf_counter()
            checkpoint.on_epoch_end(rep)
            blocking.append(time.perf_counter() - start)
            checkpoint.wait()
            thread.append(time.perf_counter() - start)
            size = (folder / "checkpoints" / f"epoch-{rep + 1:04d}" / STATE).stat().st_size
            print(f"rep {rep}: in line {inline[-1]:.2f} s; EpochCheckpoint blocks "
                  f"{blocking[-1]:.2f} s, writes in {thread[-1]:.2f} s ({size / 1e6:.0f} MB)",
                  flush=True)
            shutil.rmtree(folder)
    print(f"median of {args.reps}: in line {statistics.median(inline):.2f} s; EpochCheckpoint "
          f"blocks {statistics.median(blocking):.2f} s "
          f"({statistics.median(blocking) / statistics.median(inline):.2f}x), "
          f"its thread writes in {statistics.median(thread):.2f} s")


if __name__ == "__main__":
    main()
