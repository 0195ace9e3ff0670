"""train: the chosen network without its top, plus a softmax head, fitted on the train split.

Batches are gathered from the memory-mapped images.npy, so memory does not grow with the
dataset; augmentation runs inside the model, on the fly. Per-epoch curves go through DVCLive.
Whatever the loss, the logged ``accuracy`` is categorical top-1 accuracy (argmax), and the
element-wise ``binary_accuracy`` that old Keras reported as "accuracy" for binary cross-entropy
is logged beside it under its own name: with 51 one-hot classes a model that predicts nothing
scores 50/51 = 98% on it, which is what made binary cross-entropy "converge much faster".
"""

from __future__ import annotations

from pathlib import Path

from stages.errors import run
from stages.io import atomic_path, load_npy, read_json
from stages.pack import OUT_DIR as PACKED_DIR
from stages.params import load_params
from stages.split import OUT_DIR as SPLIT_DIR

MODEL_PATH = Path("data/model/model.keras")
LIVE_DIR = Path("metrics/train")


def main() -> None:
    params = load_params()
    cfg, model_cfg = params["train"], params["model"]

    import keras
    import tensorflow as tf
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from models import AUX_LOSS_WEIGHT, build_classifier
    from stages.training import (Batches, EpochTimer, MainHeadLogNames, compile_model, make_loss,
                                 make_optimizer)

    keras.utils.set_random_seed(cfg["seed"])
    tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(cfg["precision"])

    images = load_npy(PACKED_DIR / "images.npy", mmap=True)
    labels = load_npy(PACKED_DIR / "labels.npy")
    classes = read_json(PACKED_DIR / "classes.json")
    train_idx, val_idx = (load_npy(SPLIT_DIR / f"{name}.npy") for name in ("train", "val"))

    model = build_classifier(cfg["model"], images.shape[1], len(classes),
                             weights=None if cfg["weights"] == "none" else cfg["weights"],
                             bn_momentum=model_cfg["bn_momentum"], augment=cfg["augment"],
                             seed=cfg["seed"], dropout=model_cfg["dropout"],
                             residual_scale=model_cfg["residual_scale"])
    train_batches = Batches(images, labels, train_idx, len(classes), cfg["batch_size"],
                            shuffle_seed=cfg["seed"], output_names=model.output_names)
    val_batches = Batches(images, labels, val_idx, len(classes), cfg["batch_size"],
                          output_names=model.output_names)
    optimizer = make_optimizer(cfg["optimizer"], cfg["lr"], cfg["lr_schedule"],
                               len(train_batches), cfg["epochs"])
    compile_model(model, optimizer, make_loss(cfg["loss"], cfg["label_smoothing"]),
                  AUX_LOSS_WEIGHT)
    print(f"train: {cfg['model']} ({model.count_params():,} parameters) on {len(train_idx)} "
          f"images, validating on {len(val_idx)}, {len(classes)} classes")

    live = Live(str(LIVE_DIR), dvcyaml=False, save_dvc_exp=False, report=None)
    model.fit(train_batches, validation_data=val_batches, epochs=cfg["epochs"], verbose=2,
              callbacks=[EpochTimer(), MainHeadLogNames(), DVCLiveCallback(live=live)])
    with atomic_path(MODEL_PATH) as tmp:
        model.save(tmp)
    print(f"train: saved {MODEL_PATH}; curves in {LIVE_DIR}/")


if __name__ == "__main__":
    run(main)
