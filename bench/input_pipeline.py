"""The train and evaluate stages' input (batches read from images.npy) against in-RAM arrays.

    python bench/input_pipeline.py train [NETWORK] [STEPS] [REPEATS]     # default googlenet 16 5
    python bench/input_pipeline.py evaluate [NETWORK] [IMAGES] [REPEATS] # default IR-v2 1024 5
    python bench/input_pipeline.py memory IMAGES [stage|study|pipeline|pipeline-mmap]
    python bench/input_pipeline.py readers IMAGES

``train``: one model, compiled as the train stage compiles it; one epoch of STEPS batches of 64
through the stage's input (``Batches`` over ``NpyRows``, fit(shuffle=False)) against a bare
``model.fit(x, y, batch_size=64)`` on the same images loaded into RAM, interleaved, REPEATS
times each after a warm-up of each. Also times reading the batches alone.
``evaluate``: the evaluate stage's ``class_probabilities`` over ``Batches`` of 128 against a
bare ``model.predict(x, batch_size=128)`` on the same images in RAM, interleaved likewise.
``memory``: a scratch project under /tmp with IMAGES synthetic 75x75 images packed and split
70/15/15; ``stage`` runs ``python -m stages.train`` there (googlenet, 1 epoch, other params as
params.yaml), ``study`` loads the whole array as the study did (np.load, then
``model.fit(x[train], y[train])``, 5 steps: the load, not the steps, is what grows);
``pipeline`` runs the train stage's input (``Batches`` over ``NpyRows`` through fit, one epoch
and its validation) with a stand-in model (pooling and one dense layer) in place of the
network, where a full epoch of a real network is too slow; ``pipeline-mmap`` the same over
np.load's memory map, as the stage read before. Each prints peak RssAnon, RssFile and VmHWM
sampled from /proc every 0.1 s.
``readers``: this process's RssAnon and RssFile after one shuffled epoch of ``Batches`` (no
model) over IMAGES synthetic images, read through ``NpyRows`` and through np.load's memory map.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inception_pipeline.runtime import configure_tensorflow  # noqa: E402

configure_tensorflow()  # oneDNN on, as the pipeline runs; before TensorFlow is imported

SIZE, CLASSES = 75, 51


def synthetic_images(path: Path, count: int, seed: int = 0) -> np.ndarray:
    """Random uint8 images saved as ``path`` (written in chunks); their labels."""
    rng = np.random.default_rng(seed)
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8,
                                       shape=(count, SIZE, SIZE, 3))
    for start in range(0, count, 1000):
        images[start:start + 1000] = rng.integers(0, 256, images[start:start + 1000].shape,
                                                  dtype=np.uint8)
    images.flush()
    del images
    return rng.integers(0, CLASSES, count).astype(np.int32)


def compiled_model(network: str):
    import keras

    from inception_pipeline.training import compile_model, make_loss
    from models import AUX_LOSS_WEIGHT, build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier(network, SIZE, CLASSES, weights=None, bn_momentum=0.9,
                             augment=True, seed=0)
    compile_model(model, keras.optimizers.Adam(1e-3), make_loss("binary"), AUX_LOSS_WEIGHT)
    return model


def interleaved(variants: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each variant, run in alternating order after one warm-up each."""
    for name, run in variants.items():
        start = time.perf_counter()
        run()
        print(f"  warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)
    times = {name: [] for name in variants}
    for r in range(repeats):
        for name in (list(variants) if r % 2 == 0 else list(reversed(variants))):
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    return {name: float(np.median(t)) for name, t in times.items()}


def train(network: str = "googlenet", steps: int = 16, repeats: int = 5) -> None:
    import tensorflow as tf

    from inception_pipeline.batches import Batches, NpyRows

    tf.config.experimental.enable_op_determinism()  # as the train stage runs
    model = compiled_model(network)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        labels = synthetic_images(path, steps * 64)
        batches = Batches(NpyRows(path), labels, np.arange(len(labels)), CLASSES, 64,
                          shuffle_seed=0, output_names=model.output_names)
        x = np.load(path)
        one_hot = np.eye(CLASSES, dtype=np.float32)[labels]
        y = one_hot if len(model.outputs) == 1 else {n: one_hot for n in model.output_names}

        start = time.perf_counter()
        for i in range(len(batches)):
            batches[i]
        read = (time.perf_counter() - start) / len(batches)
        medians = interleaved({
            "stage input": lambda: model.fit(batches, epochs=1, verbose=0, shuffle=False),
            "in-RAM fit": lambda: model.fit(x, y, batch_size=64, epochs=1, verbose=0),
        }, repeats)
    images = steps * 64
    print(f"{network}, {steps} batches of 64 per epoch, {repeats} epochs each:")
    print(f"  reading a batch alone: {read * 1000:.1f} ms")
    for name, seconds in medians.items():
        print(f"  {name}: median {seconds:.2f} s per epoch, {images / seconds:.1f} images/s")
    print(f"  throughput ratio stage/in-RAM: "
          f"{medians['in-RAM fit'] / medians['stage input']:.3f}")


def evaluate(network: str = "inception_resnet_v2", count: int = 1024, repeats: int = 5) -> None:
    from inception_pipeline.batches import Batches, NpyRows
    from models import class_probabilities

    model = compiled_model(network)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        labels = synthetic_images(path, count)
        indices = np.sort(np.random.default_rng(1).permutation(count))
        batches = Batches(NpyRows(path), labels, indices, CLASSES, 128)
        x = np.load(path)
        medians = interleaved({
            "stage input": lambda: class_probabilities(model, batches),
            "in-RAM predict": lambda: model.predict(x, batch_size=128, verbose=0),
        }, repeats)
    print(f"{network}, {count} images, batch 128, {repeats} passes each:")
    for name, seconds in medians.items():
        print(f"  {name}: median {seconds:.2f} s, {count / seconds:.1f} images/s")
    print(f"  throughput ratio stage/in-RAM: "
          f"{medians['in-RAM predict'] / medians['stage input']:.3f}")


def scratch_project(count: int) -> Path:
    """A copy of the code with ``count`` synthetic images packed and split 70/15/15."""
    project = Path(tempfile.mkdtemp(prefix=f"bench-memory-{count}-"))
    for folder in ("stages", "models"):
        shutil.copytree(ROOT / folder, project / folder)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(model="googlenet", epochs=1)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    packed, split = project / "data/packed", project / "data/split"
    packed.mkdir(parents=True)
    split.mkdir(parents=True)
    np.save(packed / "labels.npy", synthetic_images(packed / "images.npy", count))
    (packed / "classes.json").write_text(json.dumps([f"class{i:02d}" for i in range(CLASSES)]))
    order = np.random.default_rng(0).permutation(count)
    cut = [int(count * 0.7), int(count * 0.85)]
    for name, part in zip(("train", "val", "test"), np.split(order, cut), strict=True):
        np.save(split / f"{name}.npy", np.sort(part))
    return project


STUDY = """
import numpy as np, keras, sys
sys.path.insert(0, {root!r})
sys.argv = ["bench"]
from bench.input_pipeline import compiled_model, CLASSES
x = np.load("data/packed/images.npy")
labels = np.load("data/packed/labels.npy")
train = np.load("data/split/train.npy")
one_hot = np.eye(CLASSES, dtype=np.float32)[labels[train]]
model = compiled_model("googlenet")
model.fit(x[train], {{n: one_hot for n in model.output_names}}, batch_size=64, epochs=1,
          steps_per_epoch=5, verbose=2)
"""


PIPELINE = """
import numpy as np, keras, sys
sys.path.insert(0, {root!r})
from inception_pipeline.batches import Batches, NpyRows
images = {reader}("data/packed/images.npy")
labels = np.load("data/packed/labels.npy")
train, val = (np.load(f"data/split/{{name}}.npy") for name in ("train", "val"))
model = keras.Sequential([keras.Input((75, 75, 3), dtype="uint8"), keras.layers.Rescaling(1 / 255),
                          keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(51, activation="softmax")])
model.compile("adam", "binary_crossentropy")
model.fit(Batches(images, labels, train, 51, 64, shuffle_seed=0),
          validation_data=Batches(images, labels, val, 51, 64), epochs=1, shuffle=False,
          verbose=2)
"""


def memory(count: int, variant: str) -> None:
    project = scratch_project(count)
    scripts = {"study": STUDY.format(root=str(ROOT)),
               "pipeline": PIPELINE.format(root=str(ROOT), reader="NpyRows"),
               "pipeline-mmap": PIPELINE.format(root=str(ROOT),
                                                reader='(lambda path: np.load(path, "r"))')}
    command = ([sys.executable, "-m", "stages.train"] if variant == "stage"
               else [sys.executable, "-c", scripts[variant]])
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=project)
    peaks = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except FileNotFoundError:
            break
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in peaks:
                peaks[key] = max(peaks[key], int(value.split()[0]))
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    shutil.rmtree(project)
    if process.wait():
        sys.exit(f"{variant} failed with exit code {process.returncode}")
    print(f"memory {variant}, {count} images ({count * SIZE * SIZE * 3 / 2**20:.0f} MiB): "
          + ", ".join(f"peak {k} {v / 1024:.0f} MiB" for k, v in peaks.items())
          + f"; {seconds:.0f} s")


def rss_mib() -> str:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return ", ".join(f"{key} {int(status[key].split()[0]) / 1024:.0f} MiB"
                     for key in ("RssAnon", "RssFile"))


def readers(count: int) -> None:
    from inception_pipeline.batches import Batches, NpyRows

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"
        labels = synthetic_images(path, count)
        print(f"{count} images ({count * SIZE * SIZE * 3 / 2**20:.0f} MiB); before: {rss_mib()}")
        for name, images in (("NpyRows", NpyRows(path)), ("memory map", np.load(path, "r"))):
            batches = Batches(images, labels, np.arange(count), CLASSES, 64, shuffle_seed=0)
            for i in range(len(batches)):
                batches[i]
            print(f"  after an epoch through {name}: {rss_mib()}", flush=True)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode in ("train", "evaluate"):
        {"train": train, "evaluate": evaluate}[mode](*args[:1], *(int(a) for a in args[1:]))
    elif mode == "readers":
        readers(int(args[0]))
    else:
        memory(int(args[0]), args[1] if len(args) > 1 else "stage")
