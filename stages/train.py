"""train: the chosen network without its top, plus a softmax head, fitted on the train split.

Batches are read from images.npy as they are needed, so memory does not grow with the
dataset; augmentation runs inside the model, on the fly, while MixUp, CutMix and class weights,
which act on the labels, are applied as the batches are formed (docs/pipeline.md,
"Regularisers"). Per-epoch curves go through DVCLive.
Whatever the loss, the logged ``accuracy`` is categorical top-1 accuracy (argmax), and the
element-wise ``binary_accuracy`` that old Keras reported as "accuracy" for binary cross-entropy
is logged beside it under its own name: with 51 one-hot classes a model that predicts nothing
scores 50/51 = 98% on it, which is what made binary cross-entropy "converge much faster".
"""

from __future__ import annotations

from inception_pipeline.errors import PipelineError, run
from inception_pipeline.io import atomic_path, load_npy, read_json
from inception_pipeline.layout import (
    CHECKPOINT_DIR,
    CLASSES,
    DVC_YAML,
    IMAGES,
    LABELS,
    MODEL,
    SPLIT_INDICES,
    TRAIN_LIVE_DIR,
)
from inception_pipeline.params import load_params
from inception_pipeline.runtime import configure_tensorflow, machine_precision


def main() -> None:
    params = load_params()
    cfg, model_cfg = params["train"], params["model"]
    configure_tensorflow()

    import keras
    import numpy as np
    import tensorflow as tf
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from inception_pipeline.batches import Batches, LabelMixing, NpyRows, balanced_class_weights
    from inception_pipeline.checkpoints import (
        EarlyStop,
        EpochCheckpoint,
        run_fingerprint,
        stage_dependencies,
    )
    from inception_pipeline.distributed import check_batch_size, distribution_strategy
    from inception_pipeline.progress import TrainingProgress
    from inception_pipeline.training import (
        EmaWeights,
        EpochTimer,
        MainHeadLogNames,
        compile_model,
        make_loss,
        make_optimizer,
    )
    from models import AUX_LOSS_WEIGHT, WeightsUnavailable, build_classifier, save_classifier

    strategy = distribution_strategy(cfg["strategy"])
    keras.utils.set_random_seed(cfg["seed"])
    tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(machine_precision(cfg["precision"]))

    images = NpyRows(IMAGES)
    labels = load_npy(LABELS)
    classes = read_json(CLASSES)
    train_idx, val_idx = (load_npy(SPLIT_INDICES[name]) for name in ("train", "val"))
    if cfg["strategy"] == "multi_worker":
        check_batch_size(cfg["batch_size"], len(train_idx), strategy.num_replicas_in_sync)

    class_prior = (np.bincount(labels[train_idx], minlength=len(classes)) / len(train_idx)
                   if model_cfg["head_bias"] == "prior" else None)
    with strategy.scope():  # variables mirrored on every replica; batch_size stays global
        try:
            model = build_classifier(cfg["model"], images.shape[1], len(classes),
                                     weights=None if cfg["weights"] == "none" else cfg["weights"],
                                     bn_momentum=model_cfg["bn_momentum"], augment=cfg["augment"],
                                     seed=cfg["seed"], dropout=model_cfg["dropout"],
                                     residual_scale=model_cfg["residual_scale"],
                                     class_prior=class_prior,
                                     bn_offset=model_cfg["bn_offset"],
                                     flip=cfg["flip"], scale_jitter=cfg["scale_jitter"],
                                     color_jitter=cfg["color_jitter"],
                                     random_erasing=cfg["random_erasing"])
        except WeightsUnavailable as err:
            raise PipelineError(str(err)) from None
        class_weights = (balanced_class_weights(labels[train_idx], len(classes))
                         if cfg["class_weight"] == "balanced" else None)
        train_batches = Batches(images, labels, train_idx, len(classes), cfg["batch_size"],
                                shuffle_seed=cfg["seed"], output_names=model.output_names,
                                mixing=LabelMixing(cfg["mixup"], cfg["cutmix"]),
                                class_weights=class_weights)
        val_batches = Batches(images, labels, val_idx, len(classes), cfg["batch_size"],
                              output_names=model.output_names)
        optimizer = make_optimizer(cfg["optimizer"], cfg["lr"], cfg["lr_schedule"],
                                   len(train_batches), cfg["epochs"], cfg["warmup_epochs"],
                                   weight_decay=cfg["weight_decay"], ema=cfg["ema"])
        compile_model(model, optimizer, make_loss(cfg["loss"], cfg["label_smoothing"]),
                      AUX_LOSS_WEIGHT)
    print(f"train: {cfg['model']} ({model.count_params():,} parameters) on {len(train_idx)} "
          f"images, validating on {len(val_idx)}, {len(classes)} classes, "
          f"{strategy.num_replicas_in_sync} replica(s)")
    if cfg["strategy"] == "multi_worker":
        fit_together(model, strategy, cfg, train_batches, val_batches)
        return

    # A checkpoint is resumed only by the run it belongs to: same params, same code and data.
    checkpoint = EpochCheckpoint(CHECKPOINT_DIR, TRAIN_LIVE_DIR, run_fingerprint(
        {"train": cfg, "model": model_cfg}, stage_dependencies(DVC_YAML, "train")))
    with strategy.scope():  # restoring builds the optimizer's (mirrored) variables
        epochs_done = checkpoint.restore(model)
    if epochs_done:
        print(f"train: resuming after epoch {epochs_done} from {CHECKPOINT_DIR}/")
    callbacks = [EpochTimer(), MainHeadLogNames()]
    if cfg["patience"]:
        early_stop = EarlyStop(CHECKPOINT_DIR, cfg["patience"])
        early_stop.restore(epochs_done)
        callbacks.append(early_stop)
    if cfg["ema"]:
        callbacks.append(EmaWeights())  # after EarlyStop: see EmaWeights
    train_batches.set_epoch(epochs_done)
    live = Live(str(TRAIN_LIVE_DIR), dvcyaml=False, save_dvc_exp=False, report=None,
                resume=epochs_done > 0)
    live.step = epochs_done  # DVCLive's own resume repeats step 0 after a single epoch
    # shuffle=False: Batches shuffles from (seed, epoch); Keras' own shuffle of the batch order
    # would draw from the global NumPy state, which a resumed run cannot restore.
    progress = TrainingProgress(len(train_idx), cfg["batch_size"], len(val_batches))
    model.fit(train_batches, validation_data=val_batches, epochs=cfg["epochs"], verbose=0,
              initial_epoch=epochs_done, shuffle=False,
              # the checkpoint after DVCLive: it saves the curves
              callbacks=[*callbacks, progress, DVCLiveCallback(live=live), checkpoint])
    if cfg["patience"]:
        live.summary["best_epoch"] = early_stop.best_epoch  # 1-based; its weights are kept
        live.make_summary()
        print(f"train: kept the weights of epoch {early_stop.best_epoch} (best validation "
              f"top-1 {max(early_stop.scores):.4f}) of {len(early_stop.scores)}")
    with atomic_path(MODEL) as tmp:
        save_classifier(model, tmp)  # no optimizer state: resume has its own checkpoints
    checkpoint.discard()
    print(f"train: saved {MODEL}; curves in {TRAIN_LIVE_DIR}/")


def fit_together(model, strategy, cfg: dict, train_batches, val_batches) -> None:
    """train.strategy=multi_worker: every worker runs this, and only the chief writes files.

    No checkpoints: every worker would have to resume from the same one, on its own machine.
    """
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    from inception_pipeline.distributed import (
        fit_multi_worker,
        read_tf_config,
        save_model,
        wait_for_all_workers,
    )
    from inception_pipeline.training import (
        EmaWeights,
        EpochTimer,
        MainHeadLogNames,
        loss_weights,
        make_loss,
    )
    from models import AUX_LOSS_WEIGHT

    task = read_tf_config()
    print(f"train: {task.type} {task.index} of {task.workers} tasks"
          f"{' (chief: writes the model and curves)' if task.is_chief else ''}; multi_worker "
          f"keeps no checkpoint, a stopped run starts again from epoch 1")
    callbacks = [EpochTimer(), MainHeadLogNames()] + ([EmaWeights()] if cfg["ema"] else [])
    if task.is_chief:
        live = Live(str(TRAIN_LIVE_DIR), dvcyaml=False, save_dvc_exp=False, report=None)
        callbacks.append(DVCLiveCallback(live=live))
    fit_multi_worker(model, strategy, train_batches, val_batches, cfg["epochs"],
                     make_loss(cfg["loss"], cfg["label_smoothing"], reduction=None),
                     loss_weights(model.output_names, AUX_LOSS_WEIGHT), callbacks)
    save_model(model, MODEL, task.is_chief)
    wait_for_all_workers("train: saved")  # exit together (inception_pipeline.distributed)
    if task.is_chief:
        print(f"train: saved {MODEL}; curves in {TRAIN_LIVE_DIR}/")


if __name__ == "__main__":
    run(main)
