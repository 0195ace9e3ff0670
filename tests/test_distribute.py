"""train.strategy=mirrored over two logical CPU devices against one device.

The test runs the real train stage (`python -m stages.train`) on a tiny packed dataset.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA_STAGES = ("sample", "crop", "resize", "pack", "split")
# Splits the one physical CPU into two logical devices before the stage imports TensorFlow.
TWO_LOGICAL_CPUS = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from stages.errors import run
from stages.train import main
run(main)
"""


def stage(project: Path, *args: str) -> str:
    """Run ``python ARGS`` in ``project`` with this checkout's code; its output."""
    done = subprocess.run([sys.executable, *args], cwd=project, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert done.returncode == 0, done.stdout
    return done.stdout


def set_strategy(project: Path, strategy: str) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["strategy"] = strategy
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """A project folder holding a tiny packed and split dataset, ready to train."""
    project = tmp_path_factory.mktemp("packed")
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["sample"].update(classes=3, images_per_class=6)
    params["data"]["workers"] = 1
    params["resize"]["size"] = 32
    params["train"].update(model="resnet50", epochs=2, batch_size=8, augment=False)
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    for name in DATA_STAGES:
        stage(project, "-m", f"stages.{name}")
    return project


def copy_of(packed: Path, path: Path) -> Path:
    shutil.copytree(packed, path)
    return path


def final_metrics(project: Path) -> dict:
    return json.loads((project / "metrics/train/metrics.json").read_text())


def test_mirrored_over_two_devices_matches_one_device(packed, tmp_path):
    """Same global batch, same data order: the two replicas' summed gradients are the one
    device's gradient, so the run matches up to float summation order and per-replica batch
    statistics (BatchNormalization normalises each half-batch of 4 separately)."""
    single = copy_of(packed, tmp_path / "single")
    stage(single, "-m", "stages.train")
    mirrored = copy_of(packed, tmp_path / "mirrored")
    set_strategy(mirrored, "mirrored")
    output = stage(mirrored, "-c", TWO_LOGICAL_CPUS)
    assert "2 replica(s)" in output
    one, two = final_metrics(single), final_metrics(mirrored)
    assert two["step"] == one["step"] == 1
    assert two["train"]["loss"] == pytest.approx(one["train"]["loss"], rel=0.25)
    assert two["eval"]["loss"] == pytest.approx(one["eval"]["loss"], rel=0.25)
