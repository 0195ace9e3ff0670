"""train.strategy=mirrored over two logical CPU devices, and multi_worker with two worker
processes on localhost, against one device.

These tests run the real train stage (`python -m stages.train`) on a tiny packed dataset; the
one-device run is shared. The fast tests at the end check the multi-worker pieces in-process.

They train with plain SGD, which moves the weights in proportion to the gradient; Adam divides
the gradient by its own running scale and would not notice a replica-count bug that scales it.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import copy_project

# One test process for the whole module under `pytest -n`: its module fixtures train or
# evaluate a tiny run, which two processes would each pay for.
pytestmark = pytest.mark.xdist_group("distribute")

ROOT = Path(__file__).resolve().parents[1]
DATA_STAGES = ("sample", "crop", "resize", "pack", "split")
# Splits the one physical CPU into two logical devices before the stage imports TensorFlow.
TWO_LOGICAL_CPUS = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from inception_pipeline.errors import run
from stages.train import main
run(main)
"""
# Seconds for one subprocess; the two workers together get as long.
TIMEOUT = 900
# One thread per pool: two workers with a pool per core each starve each other on 2 cores.
# Mirrored runs so too, to round as the workers do: two steps amplify the difference 2
# threads make in one step's rounding to 1e-3 on the validation loss.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
# One epoch (three steps) of SGD under MirroredStrategy over two logical CPUs against one
# device, with fit (the mirrored path) and with fit_multi_worker (the multi_worker path), on a
# network without BatchNormalization, so that the replicas' gradients sum to one device's
# exactly: prints, for each, the largest relative difference of a weight's update. The
# "_regularised" runs train two epochs with weight decay, the weights' moving average (the
# final weights are the average; the validation between the epochs swaps it in and out),
# balanced class weights and, under fit, MixUp and CutMix (the multi-worker loop mixes within
# each replica's share, unlike one device).
TWO_REPLICA_UPDATES = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import json
import keras
import numpy as np
from inception_pipeline.distributed import fit_multi_worker
from inception_pipeline.batches import Batches, LabelMixing, balanced_class_weights
from inception_pipeline.training import (
    EmaWeights, compile_model, loss_weights, make_loss, make_optimizer)

rng = np.random.default_rng(0)
images = rng.integers(0, 256, (14, 8, 8, 3), dtype=np.uint8)
labels = rng.integers(0, 3, 14)

def updates(strategy, loop, regularised=False):
    keras.utils.set_random_seed(0)
    epochs = 2 if regularised else 1
    with strategy.scope():
        inputs = keras.Input((8, 8, 3), dtype="uint8")
        x = keras.layers.Conv2D(4, 3, activation="relu")(keras.ops.cast(inputs, "float32") / 255)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
        model = keras.Model(inputs, outputs)
        compile_model(model, make_optimizer("sgd", 0.5, "constant", 3, epochs,
                                            weight_decay=0.1 * regularised,
                                            ema=0.9 * regularised), make_loss("binary"), 0.3)
    options = {"class_weights": balanced_class_weights(labels[:10], 3),
               "mixing": LabelMixing(0.0 if loop else 0.4, 0.0 if loop else 1.0)
               } if regularised else {}
    # batches of 4, 4 and 2 rows: 2 + 2 and 1 + 1 per replica
    train = Batches(images, labels, np.arange(10), 3, 4, shuffle_seed=1, **options)
    val = Batches(images, labels, np.arange(10, 14), 3, 4)
    callbacks = [EmaWeights()] if regularised else []
    before = [w.numpy() for w in model.trainable_weights]
    if loop:
        fit_multi_worker(model, strategy, train, val, epochs,
                         make_loss("binary", reduction=None),
                         loss_weights(model.output_names, 0.3), callbacks)
    else:
        model.fit(train, validation_data=val, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=callbacks)
    return [w.numpy() - b for w, b in zip(model.trainable_weights, before)]

two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one = tf.distribute.get_strategy()
print(json.dumps({
    f"{path}{'_regularised' * regularised}": max(
        float(np.linalg.norm(a - b) / np.linalg.norm(b))
        for a, b in zip(updates(two, loop, regularised), updates(one, loop, regularised),
                        strict=True))
    for path, loop in (("mirrored", False), ("multi_worker", True))
    for regularised in (False, True)}))
"""


def stage(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``python ARGS`` in ``project`` with this checkout's code (and ``env``); its output."""
    done = subprocess.run([sys.executable, *args], cwd=project, text=True, timeout=TIMEOUT,
                          env={**os.environ, **(env or {})},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert done.returncode == 0, done.stdout
    return done.stdout


def set_strategy(project: Path, strategy: str) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["strategy"] = strategy
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))


def twin_halves(project: Path) -> int:
    """Make the second half of the training rows (sorted) a copy of the first; their count.

    With one batch of all of them per epoch, each of two replicas gets an identical half,
    whose BatchNormalization statistics are the whole batch's: the untrained network's loss
    is then one device's to float rounding (3e-5). Otherwise each replica normalises its half
    with its own statistics, and on this tiny set the losses differed by up to 25%.
    """
    train = np.sort(np.load(project / "data/split/train.npy"))
    assert len(train) % 2 == 0, len(train)
    first, second = np.split(train, 2)
    for name in ("images", "labels"):
        array = np.load(project / f"data/packed/{name}.npy")
        array[second] = array[first]
        np.save(project / f"data/packed/{name}.npy", array)
    return len(train)


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    """A project folder holding a tiny packed and split dataset, ready to train with plain
    SGD on one full batch per epoch (twin_halves)."""
    project = copy_project(tmp_path_factory.mktemp("packed"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["sample"].update(difficulty="easy", classes=3, images_per_class=6)  # an even train split
    params["data"]["workers"] = 1
    params["resize"]["size"] = 32
    # float32: the replicas are compared with one device to float32 rounding (auto may pick bf16)
    params["train"].update(model="resnet50", epochs=2, augment=False, flip=False, optimizer="sgd",
                           lr=0.001, precision="float32")
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    for name in DATA_STAGES:
        stage(project, "-m", f"stages.{name}")
    params["train"]["batch_size"] = twin_halves(project)
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    return project


def copy_of(packed: Path, path: Path) -> Path:
    shutil.copytree(packed, path)
    return path


def final_metrics(project: Path) -> dict:
    return json.loads((project / "metrics/train/metrics.json").read_text())


@pytest.fixture(scope="module")
def one_device(packed, tmp_path_factory) -> Path:
    """The tiny config trained on one device (train.strategy=default)."""
    single = copy_of(packed, tmp_path_factory.mktemp("one_device") / "single")
    stage(single, "-m", "stages.train")
    return single


@pytest.fixture(scope="module")
def mirrored_run(packed, tmp_path_factory) -> tuple[Path, str]:
    """The tiny config with train.strategy=mirrored over two logical CPUs: (folder, output)."""
    mirrored = copy_of(packed, tmp_path_factory.mktemp("mirrored") / "mirrored")
    set_strategy(mirrored, "mirrored")
    return mirrored, stage(mirrored, "-c", TWO_LOGICAL_CPUS, env=ONE_THREAD)


def first_loss(project: Path) -> float:
    """The first epoch's training loss: that of the untrained network (one step an epoch)."""
    lines = (project / "metrics/train/plots/metrics/train/loss.tsv").read_text().splitlines()
    return float(lines[1].split("\t")[1])


def test_two_replicas_sum_to_one_device_gradient():
    """Each replica's loss is its rows' share of the global batch's mean loss, so the
    replicas' gradients sum to one device's: one epoch of SGD moves every weight as on one
    device, to float rounding (about 1e-7), under fit and under fit_multi_worker. A gradient
    scaled by 2 (the replica count) moves them twice as far: a difference of 1."""
    differences = json.loads(stage(ROOT, "-c", TWO_REPLICA_UPDATES).splitlines()[-1])
    print(differences)
    assert differences == {f"{path}{variant}": pytest.approx(0, abs=1e-4)
                           for path in ("mirrored", "multi_worker")
                           for variant in ("", "_regularised")}


def test_mirrored_over_two_devices_matches_one_device(one_device, mirrored_run):
    """The stage's mirrored run reads the same batches: its untrained network's loss, which
    BatchNormalization computes per replica, is one device's (twin_halves).

    Only before training: ResNet50 on 32-pixel images normalises its last blocks' 1 x 1 maps
    over 7 distinct rows, and one SGD step at lr 1e-3 turns gradients that agree to rounding
    (a full batch's against twice a twin half's) into losses of 0.914 and 0.828. The steps
    themselves are test_two_replicas_sum_to_one_device_gradient's."""
    mirrored, output = mirrored_run
    assert "2 replica(s)" in output
    assert final_metrics(mirrored)["step"] == final_metrics(one_device)["step"] == 1
    assert first_loss(mirrored) == pytest.approx(first_loss(one_device), rel=1e-4)


@contextmanager
def reserved_loopback_ports(count: int):
    """``count`` free ports that no other process can take while this block runs.

    Each stays bound here, not listening, with SO_REUSEADDR: the workers' gRPC servers set
    SO_REUSEADDR too (TensorFlow turns SO_REUSEPORT off), and Linux lets such a socket bind
    a port whose other sockets all have it and none listens. Other processes cannot: the
    kernel skips bound ports when it picks a free one (bind to port 0, connect), and an
    explicit bind without SO_REUSEADDR fails. Closing the ports before the launch left a
    race of about 13 s, until the workers bound them.
    """
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
        yield [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run_together(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    """Wait for all ``processes``; once one fails, or ``timeout`` passes, kill the others.
    Their exit codes (-SIGKILL for a killed one)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            codes = [process.poll() for process in processes]
            if None not in codes or any(codes):
                break
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=60)
    return [process.returncode for process in processes]


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def epoch_lines(log: str) -> list[str]:
    """The per-epoch metric lines, without their timings."""
    return [line.split(" - ", 2)[2] for line in log.splitlines() if line.startswith("Epoch ")]


def test_multi_worker_two_local_processes_train_one_model_only_the_chief_writes(
        one_device, mirrored_run, packed, tmp_path):
    """Two `python -m stages.train` processes, TF_CONFIG naming two loopback ports.

    Both log the same numbers (the curves are summed over both workers); the chief alone
    writes the model and the curves, the other worker leaves its folder as it was. Each
    worker reads the half of every global batch that mirrored's replica of the same number
    gets, so the run is mirrored's (asserted to 1e-4; it is also fit_multi_worker's, whose
    steps test_two_replicas_sum_to_one_device_gradient checks against one device).
    """
    folders = [copy_of(packed, tmp_path / name) for name in ("chief", "worker")]
    for folder in folders:
        set_strategy(folder, "multi_worker")
    worker_files = files_under(folders[1])
    logs = [tmp_path / f"{name}.log" for name in ("chief", "worker")]
    env = {**os.environ, **ONE_THREAD}
    processes = []
    start = time.monotonic()
    with reserved_loopback_ports(2) as ports:
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        for index, (folder, log) in enumerate(zip(folders, logs, strict=True)):
            task = {"type": "worker", "index": index}
            with open(log, "w") as out:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "stages.train"], cwd=folder, stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}))
        codes = run_together(processes, TIMEOUT)
    outputs = [log.read_text() for log in logs]
    print(f"two workers: {time.monotonic() - start:.0f} s")
    assert codes == [0, 0], outputs
    assert all("2 replica(s)" in output for output in outputs)
    assert len(epoch_lines(outputs[0])) == 2
    assert epoch_lines(outputs[0]) == epoch_lines(outputs[1])

    chief, worker = folders
    assert (chief / "data/model/model.keras").is_file()
    assert files_under(worker) == worker_files  # no model, no metrics/train, no .checkpoints
    assert not (chief / ".checkpoints").exists()
    two, mirrored = final_metrics(chief), final_metrics(mirrored_run[0])
    assert two["step"] == mirrored["step"] == 1
    for split in ("train", "eval"):
        assert set(two[split]) == set(mirrored[split])
        for name, value in mirrored[split].items():
            if name != "epoch_seconds":
                assert two[split][name] == pytest.approx(value, rel=1e-4), (split, name)
    assert first_loss(chief) == pytest.approx(first_loss(one_device), rel=1e-4)


# Fast, in-process checks of the multi-worker pieces.

def test_replica_parts_make_up_each_global_batch():
    from inception_pipeline.batches import Batches

    images = np.arange(14 * 2 * 2 * 3, dtype=np.uint8).reshape(14, 2, 2, 3)
    labels = np.arange(14) % 3
    batches = Batches(images, labels, np.arange(14), 3, batch_size=8, shuffle_seed=0)
    for i in range(len(batches)):
        parts = [batches.replica_part(i, replica, 2) for replica in range(2)]
        assert [len(x) for x, _, _ in parts] == ([4, 4] if i == 0 else [3, 3])
        x, y = batches[i]  # what one device reads
        assert np.array_equal(np.concatenate([x for x, _, _ in parts]), x)
        assert np.array_equal(np.concatenate([y for _, y, _ in parts]), y)
        assert all((w == 1).all() for _, _, w in parts)  # no train.class_weight


@pytest.mark.parametrize("tf_config, expected", [
    (None, "train.strategy=multi_worker: set TF_CONFIG"),
    ("{not json", "TF_CONFIG: malformed"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG: malformed (KeyError"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
     "TF_CONFIG: task 'worker' 1 is not in the cluster (1 worker)"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: multi_worker takes at most one chief and workers"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: 'a' is not host:port"),
])
def test_tf_config_problems_are_one_line(monkeypatch, tf_config, expected):
    from inception_pipeline.distributed import read_tf_config
    from inception_pipeline.errors import PipelineError

    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(PipelineError) as err:
        read_tf_config()
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_tf_config_chief():
    from inception_pipeline.distributed import Task, read_tf_config

    two = {"worker": ["a:1", "b:2"]}
    assert read_tf_config(json.dumps({"cluster": two, "task": {"type": "worker", "index": 1}})
                          ) == Task("worker", 1, 2, False)
    assert read_tf_config(json.dumps({"cluster": two, "task": {"type": "worker", "index": 0}})
                          ).is_chief
    with_chief = {"chief": ["c:3"], **two}
    assert read_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "chief",
                                                                      "index": 0}})
                          ) == Task("chief", 0, 3, True)
    assert not read_tf_config(json.dumps({"cluster": with_chief,
                                          "task": {"type": "worker", "index": 0}})).is_chief


def test_batch_size_must_split_over_the_replicas():
    from inception_pipeline.distributed import check_batch_size
    from inception_pipeline.errors import PipelineError

    check_batch_size(8, 14, 2)  # batches of 8 and 6: 4 + 4, 3 + 3
    with pytest.raises(PipelineError, match=r"^train.batch_size=9: must be divisible by the 2"):
        check_batch_size(9, 14, 2)
    with pytest.raises(PipelineError, match=r"^train.batch_size=4: the last batch .* 1 row"):
        check_batch_size(4, 13, 2)


@pytest.mark.parametrize("aux_head, regularised", [(False, False), (True, False),
                                                   (False, True), (True, True)])
def test_multi_worker_loop_matches_fit_on_one_device(aux_head, regularised):
    """The loop under the default strategy against model.fit: same curves, same names (with
    an auxiliary head too, as GoogLeNet's). fit averages each output's own loss over batches,
    not images (a last batch of 3 counts as much as one of 4); the loop averages over images,
    so the auxiliary case uses full batches only, where the two agree. ``regularised``: with
    balanced class weights, MixUp and CutMix, weight decay and the weights' moving average
    (validated, and the final weights), as the train stage sets them up."""
    import keras
    import tensorflow as tf

    from inception_pipeline.batches import Batches, LabelMixing, balanced_class_weights
    from inception_pipeline.distributed import fit_multi_worker
    from inception_pipeline.training import (
        EmaWeights,
        MainHeadLogNames,
        compile_model,
        loss_weights,
        make_loss,
        make_optimizer,
    )

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 24)
    train_rows, val_rows = (16, 24) if aux_head else (15, 21)  # 4 x 4 | 3 x 4 + 3

    class Logs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append({k: v for k, v in logs.items() if k != "epoch_seconds"})

    def run(loop: bool) -> list[dict]:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 3), dtype="uint8")
        x = keras.layers.Conv2D(4, 3)(keras.ops.cast(inputs, "float32") / 255.0)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = [keras.layers.Dense(3, activation="softmax", name=name)(x)
                   for name in (["predictions", "aux1"] if aux_head else ["predictions"])]
        model = keras.Model(inputs, outputs if aux_head else outputs[0])
        compile_model(model, make_optimizer("adam", 0.01, "constant", 4, 3,
                                            weight_decay=0.1 if regularised else 0.0,
                                            ema=0.9 if regularised else 0.0),
                      make_loss("binary"), 0.3)
        regularisers = {"mixing": LabelMixing(0.4, 1.0),
                        "class_weights": balanced_class_weights(labels[:train_rows], 3)
                        } if regularised else {}
        train = Batches(images, labels, np.arange(train_rows), 3, 4, shuffle_seed=1,
                        output_names=model.output_names, **regularisers)
        val = Batches(images, labels, np.arange(train_rows, val_rows), 3, 4,
                      output_names=model.output_names)
        logs = Logs()
        callbacks = [MainHeadLogNames(), logs] + ([EmaWeights()] if regularised else [])
        if loop:
            fit_multi_worker(model, tf.distribute.get_strategy(), train, val, 3,
                             make_loss("binary", reduction=None),
                             loss_weights(model.output_names, 0.3), callbacks)
        else:
            model.fit(train, validation_data=val, epochs=3, shuffle=False, verbose=0,
                      callbacks=callbacks)
        return logs.epochs, [v.numpy() for v in model.trainable_variables]

    (fitted, fit_weights), (looped, loop_weights) = run(loop=False), run(loop=True)
    assert [sorted(epoch) for epoch in looped] == [sorted(epoch) for epoch in fitted]
    for a, b in zip(looped, fitted, strict=True):
        assert a == pytest.approx(b, rel=1e-5)
    for a, b in zip(loop_weights, fit_weights, strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
