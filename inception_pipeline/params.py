"""params.yaml: its schema, and validation that runs before any stage does heavy work.

Every stage validates the whole file, so a bad value fails at once in whichever stage runs
first, with one line per bad key. Stages still declare in dvc.yaml only the keys they read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inception_pipeline.errors import PipelineError
from inception_pipeline.layout import PARAMS
from models import NETWORKS


@dataclass(frozen=True)
class Key:
    kind: type | tuple[type, ...]
    choices: tuple = ()
    min: float | None = None
    max: float | None = None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this key, or None."""
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            return f"must be of type {' or '.join(k.__name__ for k in kinds)}"
        if self.choices and value not in self.choices:
            return "allowed values: " + ", ".join(map(str, self.choices))
        if self.min is not None and value < self.min:
            return f"must be at least {self.min}"
        if self.max is not None and value > self.max:
            return f"must be at most {self.max}"
        return None


NUMBER = (int, float)
SCHEMA: dict[str, Key] = {
    "sample.seed": Key(int, min=0),
    "sample.difficulty": Key(str, choices=("easy", "hard")),
    "sample.classes": Key(int, min=2, max=51),
    "sample.images_per_class": Key(int, min=1),
    "data.dir": Key(str),
    "data.annotations": Key(str, choices=("voc", "csv", "coco", "yolo")),
    "data.workers": Key(int, min=0),
    "crop.margin": Key(NUMBER, min=0.0, max=1.0),
    "crop.no_box": Key(str, choices=("whole", "skip")),
    "crop.max_pixels": Key(int, min=1),
    "crop.label_mismatch": Key(str, choices=("reject", "folder")),
    "crop.max_rejected": Key(NUMBER, min=0.0, max=1.0),
    "crop.max_side": Key(int, min=16),
    "resize.size": Key(int, min=16, max=1024),
    "resize.mode": Key(str, choices=("stretch", "pad")),
    "split.seed": Key(int, min=0),
    "split.val": Key(NUMBER, min=0.01, max=0.5),
    "split.test": Key(NUMBER, min=0.01, max=0.5),
    "split.too_few": Key(str, choices=("error", "drop")),
    "model.bn_momentum": Key(NUMBER, min=0.0, max=0.999),
    "model.bn_offset": Key(NUMBER, min=0.0, max=10.0),
    "model.dropout": Key(NUMBER, min=0.0, max=0.9),
    "model.head_bias": Key(str, choices=("zeros", "prior")),
    "model.residual_scale": Key(NUMBER, min=0.01, max=1.0),
    "train.model": Key(str, choices=tuple(NETWORKS)),
    "train.weights": Key(str),
    "train.loss": Key(str, choices=("binary", "binary_probabilities", "categorical")),
    "train.optimizer": Key(str, choices=("adam", "rmsprop", "sgd")),
    "train.lr": Key(NUMBER, min=1e-7, max=1.0),
    "train.lr_schedule": Key(str, choices=("constant", "cosine", "exponential")),
    "train.warmup_epochs": Key(NUMBER, min=0.0),
    "train.label_smoothing": Key(NUMBER, min=0.0, max=0.5),
    "train.batch_size": Key(int, min=1, max=4096),
    "train.epochs": Key(int, min=1),
    "train.patience": Key(int, min=0),
    "train.augment": Key(bool),
    "train.seed": Key(int, min=0),
    "train.precision": Key(str, choices=("float32", "mixed_bfloat16", "mixed_float16", "auto")),
    "train.strategy": Key(str, choices=("default", "mirrored", "multi_worker")),
    "train.weight_decay": Key(NUMBER, min=0.0, max=1.0),
    "train.ema": Key(NUMBER, min=0.0, max=0.9999),
    "train.flip": Key(bool),
    "train.scale_jitter": Key(NUMBER, min=0.0, max=0.5),
    "train.color_jitter": Key(NUMBER, min=0.0, max=1.0),
    "train.mixup": Key(NUMBER, min=0.0, max=1.0),
    "train.cutmix": Key(NUMBER, min=0.0, max=1.0),
    "train.random_erasing": Key(NUMBER, min=0.0, max=1.0),
    "train.class_weight": Key(str, choices=("none", "balanced")),
    "evaluate.batch_size": Key(int, min=1, max=4096),
    "evaluate.tta_flip": Key(bool),
    "report.top_confusions": Key(int, min=1),
}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def problems(params: dict) -> list[str]:
    """Every problem with ``params``, one line each (empty when the params are valid)."""
    flat = _flatten(params)
    found = [f"{key}: unknown key (known keys: see params.yaml)" for key in flat
             if key not in SCHEMA]
    found += [f"{key}: missing" for key in SCHEMA if key not in flat]
    for key, spec in SCHEMA.items():
        if key in flat and (why := spec.problem(flat[key])):
            found.append(f"{key}={flat[key]!r}: {why}")
    if found:
        return found

    network = NETWORKS[flat["train.model"]]
    if flat["resize.size"] < network.min_input:
        found.append(f"resize.size={flat['resize.size']}: {flat['train.model']} accepts inputs "
                     f"of at least {network.min_input}x{network.min_input}")
    if flat["crop.max_side"] < flat["resize.size"]:
        found.append(f"crop.max_side={flat['crop.max_side']}: below resize.size="
                     f"{flat['resize.size']}, resize would enlarge shrunk crops; raise it")
    if flat["split.val"] + flat["split.test"] > 0.5:
        found.append("split.val + split.test: must leave at least half the data for training")
    if flat["train.warmup_epochs"] >= flat["train.epochs"]:
        found.append(f"train.warmup_epochs={flat['train.warmup_epochs']}: must be shorter than "
                     f"train.epochs={flat['train.epochs']}")
    if 0 < flat["train.ema"] < 0.5:
        found.append(f"train.ema={flat['train.ema']}: 0 (off) or a decay from 0.5 to 0.9999 "
                     f"(e.g. 0.999): below 0.5 the average is mostly the last step's weights")
    if flat["train.patience"] and flat["train.strategy"] == "multi_worker":
        found.append("train.patience: early stopping is not available with "
                     "train.strategy=multi_worker; set it to 0")
    weights = flat["train.weights"]
    if weights == "imagenet" and not network.imagenet:
        found.append(f"train.weights=imagenet: Keras publishes no ImageNet weights for "
                     f"{flat['train.model']}; use none or a path to a weights file")
    elif weights not in ("none", "imagenet") and not Path(weights).is_file():
        found.append(f"train.weights={weights!r}: no such weights file "
                     f"(allowed: none, imagenet, or a path to a weights file)")
    return found


def load_params(path: str | Path = PARAMS) -> dict:
    """Read and validate params.yaml; raise one PipelineError listing every bad key."""
    try:
        params = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise PipelineError(f"{path}: cannot read params ({err})") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping of stage groups")
    if found := problems(params):
        raise PipelineError(f"{path}: " + "; ".join(found))
    return params
