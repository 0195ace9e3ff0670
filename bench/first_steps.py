"""What happens in a network's first training steps, and what changes it.

    python bench/first_steps.py NETWORK [--steps 124] [--lr 0.001] [--warmup-epochs 0]
        [--schedule constant] [--loss binary] [--optimizer adam|rmsprop|sgd]
        [--head-bias zeros|prior] [--clip-norm 0] [--bn-momentum 0.9] [--bn-offset 0]
        [--eval-every 31] [--seed 0] [--augment 1] [--out FILE.json]

Trains NETWORK on the project's packed demo data (run `dvc repro split` first) with the train
stage's own pieces (Batches, make_loss, make_optimizer, build_classifier), one step at a time,
and records per step the loss, the learning rate, the gradient norm of the first convolution,
of the whole backbone and of the softmax head, and the spread of the logits (standard deviation
of the log-probabilities). Every ``--eval-every`` steps it scores the validation split twice:
in inference mode (batch-norm moving statistics, as evaluate and predict use the model) and with
each batch normalised by its own statistics. A network that learns but whose moving statistics
lag shows a high batch-statistics top-1 and a low inference one.
"""

from __future__ import annotations

import argparse
import json
import time

from inception_pipeline.runtime import configure_tensorflow

configure_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from inception_pipeline.batches import Batches, NpyRows  # noqa: E402
from inception_pipeline.io import load_npy, read_json  # noqa: E402
from inception_pipeline.layout import CLASSES, IMAGES, LABELS, SPLIT_INDICES  # noqa: E402
from inception_pipeline.training import make_loss, make_optimizer  # noqa: E402
from models import NETWORKS, build_classifier  # noqa: E402
from models.layers import ImagePreprocessing  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("network", choices=sorted(NETWORKS))
    parser.add_argument("--steps", type=int, default=124)  # 4 epochs of the default run
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--warmup-epochs", type=float, default=0.0)
    parser.add_argument("--schedule", default="constant")
    parser.add_argument("--loss", default="binary")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "rmsprop", "sgd"))
    parser.add_argument("--head-bias", default="zeros", choices=("zeros", "prior"))
    parser.add_argument("--clip-norm", type=float, default=0.0)
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--bn-offset", type=float, default=0.0)
    parser.add_argument("--eval-every", type=int, default=31)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", type=int, default=1)
    parser.add_argument("--out")
    return parser.parse_args()


def validation_scores(model: keras.Model, batches: Batches) -> dict:
    """Top-1 and categorical cross-entropy on ``batches``, with moving and with batch
    statistics (the latter restores every moving statistic afterwards)."""
    preprocessing = next(layer for layer in model.layers if isinstance(layer, ImagePreprocessing))
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model)
                    and layer.name != "augmentation")
    head = model.get_layer("predictions")
    moving = [v for v in model.non_trainable_variables if "moving" in v.path]
    saved = [v.numpy() for v in moving]

    @tf.function(reduce_retracing=True)
    def forward(images, training: bool):
        features = backbone(preprocessing(images), training=training)
        return head(features[0] if isinstance(features, (list, tuple)) else features)

    scores = {}
    for mode, training in (("inference", False), ("batch_stats", True)):
        correct, loss, count = 0, 0.0, 0
        for i in range(len(batches)):
            images, one_hot = batches[i]
            probs = np.asarray(forward(images, training), dtype=np.float64)
            truth = one_hot.argmax(axis=1)
            correct += int((probs.argmax(axis=1) == truth).sum())
            loss += float(-np.log(np.clip(probs[np.arange(len(truth)), truth], 1e-7, 1)).sum())
            count += len(truth)
        scores[f"{mode}_top1"] = correct / count
        scores[f"{mode}_loss"] = loss / count
    for variable, value in zip(moving, saved, strict=True):
        variable.assign(value)
    return scores


def main() -> None:
    args = parse_args()
    keras.utils.set_random_seed(args.seed)
    images = NpyRows(IMAGES)
    labels = load_npy(LABELS)
    classes = read_json(CLASSES)
    train_idx, val_idx = load_npy(SPLIT_INDICES["train"]), load_npy(SPLIT_INDICES["val"])
    class_prior = (np.bincount(labels[train_idx], minlength=len(classes)) / len(train_idx)
                   if args.head_bias == "prior" else None)
    model = build_classifier(args.network, images.shape[1], len(classes), weights=None,
                             bn_momentum=args.bn_momentum, augment=bool(args.augment),
                             seed=args.seed, class_prior=class_prior,
                             bn_offset=args.bn_offset)
    train = Batches(images, labels, train_idx, len(classes), 64, shuffle_seed=args.seed)
    val = Batches(images, labels, val_idx, len(classes), 64)
    optimizer = make_optimizer(args.optimizer, args.lr, args.schedule, len(train),
                               max(1, round(args.steps / len(train))), args.warmup_epochs,
                               args.clip_norm)
    loss_fn = make_loss(args.loss)
    variables = model.trainable_variables
    backbone_vars = [v for v in variables if not v.path.startswith("predictions")]
    head_vars = [v for v in variables if v.path.startswith("predictions")]
    first_conv = next(v for v in variables if "kernel" in v.path)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            probs = probs[0] if isinstance(probs, (list, tuple)) else probs
            loss = loss_fn(y, probs)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        by_var = dict(zip([v.path for v in variables], grads, strict=True))
        log_probs = tf.math.log(tf.clip_by_value(probs, 1e-7, 1.0))
        return {"loss": loss,
                "grad_first_conv": tf.norm(by_var[first_conv.path]),
                "grad_backbone": tf.linalg.global_norm([by_var[v.path] for v in backbone_vars]),
                "grad_head": tf.linalg.global_norm([by_var[v.path] for v in head_vars]),
                "logit_spread": tf.reduce_mean(tf.math.reduce_std(log_probs, axis=1))}

    records, start, done = [], time.perf_counter(), 0
    while done < args.steps:
        for i in range(len(train)):
            if done == args.steps:
                break
            x, y = train[i]
            lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            record = {"step": done + 1, "lr": lr,
                      **{k: float(v) for k, v in step(x, y).items()}}
            done += 1
            if done % args.eval_every == 0 or done == args.steps:
                record |= validation_scores(model, val)
                record["seconds"] = round(time.perf_counter() - start, 1)
                print(json.dumps(record), flush=True)
            records.append(record)
        train.on_epoch_end()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "steps": records}, f, indent=1)


if __name__ == "__main__":
    main()
