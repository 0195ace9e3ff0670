"""train: the chosen network without its top, plus a softmax head, fitted on the train split.

Batches are read from images.npy as they are needed, so memory does not grow with the
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
# Not a DVC output: DVC deletes a stage's outputs before rerunning it, and the checkpoint has to
# outlive a killed run. Deleted when training completes.
CHECKPOINT_DIR = Path(".checkpoints/train")
# What a run depends on, for its checkpoint's fingerprint (the same as the stage's deps).
SOURCE_ROOT = Path(__file__).resolve().parents[1]
CODE = [SOURCE_ROOT / "stages/train.py", SOURCE_ROOT / "stages/training.py",
        SOURCE_ROOT / "stages/distributed.py", *sorted((SOURCE_ROOT / "models").glob("*.py"))]
DATA = [PACKED_DIR / "images.npy", PACKED_DIR / "labels.npy", PACKED_DIR / "classes.json",
        SPLIT_DIR / "train.npy", SPLIT_DIR / "val.npy"]


def main() -> None:
    params = load_params()
    cfg, model_cfg = params["train"], params["model"]

    import keras
    import tensorflow as tf
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from models import AUX_LOSS_WEIGHT, build_classifier
    from stages.training import (
        Batches,
        EpochCheckpoint,
        EpochTimer,
        MainHeadLogNames,
        NpyRows,
        compile_model,
        distribution_strategy,
        make_loss,
        make_optimizer,
        run_fingerprint,
    )

    strategy = distribution_strategy(cfg["strategy"])
    keras.utils.set_random_seed(cfg["seed"])
    tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(cfg["precision"])

    images = NpyRows(PACKED_DIR / "images.npy")
    labels = load_npy(PACKED_DIR / "labels.npy")
    classes = read_json(PACKED_DIR / "classes.json")
    train_idx, val_idx = (load_npy(SPLIT_DIR / f"{name}.npy") for name in ("train", "val"))
    if cfg["strategy"] == "multi_worker":
        from stages.distributed import check_batch_size

        check_batch_size(cfg["batch_size"], len(train_idx), strategy.num_replicas_in_sync)

    with strategy.scope():  # variables mirrored on every replica; batch_size stays global
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
          f"images, validating on {len(val_idx)}, {len(classes)} classes, "
          f"{strategy.num_replicas_in_sync} replica(s)")
    if cfg["strategy"] == "multi_worker":
        fit_together(model, strategy, cfg, train_batches, val_batches)
        return

    checkpoint = EpochCheckpoint(CHECKPOINT_DIR, LIVE_DIR, run_fingerprint(
        {"train": cfg, "model": model_cfg}, CODE + DATA))
    with strategy.scope():  # restoring builds the optimizer's (mirrored) variables
        epochs_done = checkpoint.restore(model)
    if epochs_done:
        print(f"train: resuming after epoch {epochs_done} from {CHECKPOINT_DIR}/")
    train_batches.set_epoch(epochs_done)
    live = Live(str(LIVE_DIR), dvcyaml=False, save_dvc_exp=False, report=None,
                resume=epochs_done > 0)
    live.step = epochs_done  # DVCLive's own resume repeats step 0 after a single epoch
    # shuffle=False: Batches shuffles from (seed, epoch); Keras' own shuffle of the batch order
    # would draw from the global NumPy state, which a resumed run cannot restore.
    model.fit(train_batches, validation_data=val_batches, epochs=cfg["epochs"], verbose=2,
              initial_epoch=epochs_done, shuffle=False,
              callbacks=[EpochTimer(), MainHeadLogNames(), DVCLiveCallback(live=live),
                         checkpoint])  # the checkpoint after DVCLive: it saves the curves
    with atomic_path(MODEL_PATH) as tmp:
        model.save(tmp)
    checkpoint.discard()
    print(f"train: saved {MODEL_PATH}; curves in {LIVE_DIR}/")


def fit_together(model, strategy, cfg: dict, train_batches, val_batches) -> None:
    """train.strategy=multi_worker: every worker runs this, and only the chief writes files.

    No checkpoints: every worker would have to resume from the same one, on its own machine.
    """
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from models import AUX_LOSS_WEIGHT
    from stages.distributed import (
        fit_multi_worker,
        read_tf_config,
        save_model,
        wait_for_all_workers,
    )
    from stages.training import EpochTimer, MainHeadLogNames, loss_weights, make_loss

    task = read_tf_config()
    print(f"train: {task.type} {task.index} of {task.workers} tasks"
          f"{' (chief: writes the model and curves)' if task.is_chief else ''}; multi_worker "
          f"keeps no checkpoint, a stopped run starts again from epoch 1")
    callbacks = [EpochTimer(), MainHeadLogNames()]
    if task.is_chief:
        live = Live(str(LIVE_DIR), dvcyaml=False, save_dvc_exp=False, report=None)
        callbacks.append(DVCLiveCallback(live=live))
    fit_multi_worker(model, strategy, train_batches, val_batches, cfg["epochs"],
                     make_loss(cfg["loss"], cfg["label_smoothing"], reduction=None),
                     loss_weights(model.output_names, AUX_LOSS_WEIGHT), callbacks)
    save_model(model, MODEL_PATH, task.is_chief)
    wait_for_all_workers("train: saved")  # exit together (stages.distributed)
    if task.is_chief:
        print(f"train: saved {MODEL_PATH}; curves in {LIVE_DIR}/")


if __name__ == "__main__":
    run(main)
