import copy

import pytest
import yaml

from inception_pipeline.errors import PipelineError
from inception_pipeline.params import load_params, problems


def with_value(params, key, value):
    params = copy.deepcopy(params)
    group, name = key.split(".")
    params[group][name] = value
    return params


def test_shipped_params_are_valid(default_params):
    assert problems(default_params) == []


@pytest.mark.parametrize("key, value, expected", [
    ("train.model", "vgg16", "train.model='vgg16': allowed values: inception_resnet_v2"),
    ("train.loss", "hinge", "train.loss='hinge': allowed values: binary, binary_probabilities, categorical"),
    ("train.lr", "fast", "train.lr='fast': must be of type int or float"),
    ("train.augment", "yes", "train.augment='yes': must be of type bool"),
    ("train.epochs", 0, "train.epochs=0: must be at least 1"),
    ("train.batch_size", True, "train.batch_size=True: must be of type int"),
    ("resize.size", 74, "resize.size=74: inception_resnet_v2 accepts inputs of at least 75x75"),
    ("split.val", 0.5, "split.val + split.test: must leave at least half"),
    ("crop.max_side", 74, "crop.max_side=74: below resize.size=75, resize would enlarge"),
    ("train.weights", "missing.h5", "train.weights='missing.h5': no such weights file"),
    ("train.strategy", "horovod",
     "train.strategy='horovod': allowed values: default, mirrored, multi_worker"),
    ("train.weight_decay", -0.01, "train.weight_decay=-0.01: must be at least 0.0"),
    ("train.ema", 1.0, "train.ema=1.0: must be at most 0.9999"),
    ("train.ema", 0.3, "train.ema=0.3: 0 (off) or a decay from 0.5 to 0.9999"),
    ("train.scale_jitter", 0.8, "train.scale_jitter=0.8: must be at most 0.5"),
    ("train.color_jitter", "strong", "train.color_jitter='strong': must be of type int or float"),
    ("train.mixup", 2, "train.mixup=2: must be at most 1.0"),
    ("train.cutmix", -1, "train.cutmix=-1: must be at least 0.0"),
    ("train.random_erasing", 1.5, "train.random_erasing=1.5: must be at most 1.0"),
    ("train.class_weight", "inverse",
     "train.class_weight='inverse': allowed values: none, balanced"),
    ("evaluate.tta_flip", "yes", "evaluate.tta_flip='yes': must be of type bool"),
])
def test_bad_value_is_named(default_params, key, value, expected):
    found = problems(with_value(default_params, key, value))
    assert any(line.startswith(expected) for line in found), found


def test_resnet50_accepts_smaller_inputs(default_params):
    params = with_value(with_value(default_params, "train.model", "resnet50"), "resize.size", 32)
    assert problems(params) == []


def test_unknown_and_missing_keys(default_params):
    params = copy.deepcopy(default_params)
    params["train"]["lrr"] = params["train"].pop("lr")
    assert problems(params) == ["train.lrr: unknown key (known keys: see params.yaml)",
                                "train.lr: missing"]


def test_load_params_reports_every_bad_key_on_one_line(default_params, tmp_path):
    params = with_value(with_value(default_params, "train.loss", "x"), "train.epochs", -1)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError) as err:
        load_params(path)
    message = str(err.value)
    assert "\n" not in message
    assert "train.loss='x'" in message and "train.epochs=-1" in message
