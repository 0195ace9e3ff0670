"""Datasets larger than RAM: resize, pack, train and evaluate run in a memory cgroup
whose limit is smaller than the images array they write or read.

Page cache charged to a cgroup is reclaimable, so a file larger than the limit can be streamed
or memory-mapped; anonymous memory beyond the limit gets the process OOM-killed. Each test has
a negative control showing its limit bites: the study's whole-array ``np.load`` is killed
under it. Limits sit above the stages' peaks, measured once here without a limit (the cgroup's
total_rss sampled every 0.2 s).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from inception_pipeline.crop_store import MANIFEST_FIELDS, SHARD_NAME, ShardWriter
from inception_pipeline.io import read_csv, read_json, save_npy, write_csv, write_json
from inception_pipeline.layout import MANIFEST
from stages.pack import ITEM_FIELDS
from tests.conftest import copy_project

ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20
SIZE = 75                   # resize.size: 75 x 75 x 3 = 16,875 bytes a row
CLASSES = 51
PACK_ROWS = 20_000          # 337.5 MB written by resize and by pack
PACK_LIMIT = 128 * MiB      # resize (one worker) peaked at 99 MiB of RSS, libraries included
TRAIN_ROWS = 120_000        # 2,025 MB read by train and evaluate
TRAIN_LIMIT = 1280 * MiB    # train (googlenet) peaked at 958 MiB of anonymous memory
SUBSET = 32                 # rows in each of train, val and test, spread from first to last


def image(i: int) -> np.ndarray:
    """Row ``i`` of the dataset (RGB): its index in two channels, a ramp in the third."""
    pixels = np.empty((SIZE, SIZE, 3), np.uint8)
    pixels[..., 0], pixels[..., 1] = i % 256, i // 256 % 256
    pixels[..., 2] = np.arange(SIZE, dtype=np.uint8) + i % 101
    return pixels


def label(i: int) -> str:
    return f"class{i % CLASSES:02d}"


# Said by every skip: where the test can run.
HOW_TO_RUN = ("it needs a memory cgroup it can create and limit: run it as root with cgroup v1, "
              "or on cgroup v2 where memory can be delegated to a new cgroup beside this "
              "process's (e.g. a VM or host, or `docker run --privileged --cgroupns=host`)")


class MemoryCgroup:
    """A memory cgroup made for the test (cgroup v1 or v2) with a settable limit."""

    def __init__(self, path: Path, limit_file: str, oom_file: str):
        self.path, self.limit_file, self.oom_file = path, limit_file, oom_file

    def limit(self, nbytes: int) -> None:
        (self.path / self.limit_file).write_text(str(nbytes))

    def oom_kills(self) -> int:
        """The kernel's count of OOM kills in the cgroup (v1: memory.oom_control, v2:
        memory.events)."""
        for line in (self.path / self.oom_file).read_text().splitlines():
            key, value = line.split()
            if key == "oom_kill":
                return int(value)
        raise AssertionError(f"{self.path / self.oom_file}: no oom_kill line")

    def run(self, root: Path, *argv: str) -> subprocess.CompletedProcess:
        """Run ``argv`` from ``root`` inside the cgroup (the shell moves itself in, then execs)."""
        return subprocess.run(
            ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv],
            cwd=root, capture_output=True,
            text=True, check=False, timeout=900)

    def run_killed(self, root: Path, *argv: str) -> subprocess.CompletedProcess:
        """Run ``argv``, which must be OOM-killed in the cgroup (the limit bites)."""
        kills = self.oom_kills()
        done = self.run(root, *argv)
        assert done.returncode == -9 and self.oom_kills() > kills, done
        return done


def memory_cgroup_parent() -> tuple[Path, str, str, bool] | str:
    """(folder to make the test's cgroup in, limit file, OOM counter file, whether the test
    enabled the memory controller for that folder's children), or why there is none."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if "memory" in line.split(":")[1].split(",")]
    if v1:
        return (Path("/sys/fs/cgroup/memory" + v1[0]), "memory.limit_in_bytes",
                "memory.oom_control", False)
    v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    mount = Path("/sys/fs/cgroup")
    if not v2 or not (mount / "cgroup.controllers").exists():
        return f"no memory cgroup: neither a v1 memory hierarchy nor cgroup v2 at {mount}"
    # A v2 cgroup has memory.max only if its parent lists memory in cgroup.subtree_control, and
    # only a cgroup without processes of its own (or the root) may: so this process's own cgroup
    # rarely can, and the test's goes beside it, under the nearest ancestor that can.
    own = mount / v2[0].strip("/")
    refused = []
    for folder in (own, *own.parents[:len(own.relative_to(mount).parts)]):
        if "memory" in (folder / "cgroup.subtree_control").read_text().split():
            return folder, "memory.max", "memory.events", False
        if "memory" in (folder / "cgroup.controllers").read_text().split():
            try:
                (folder / "cgroup.subtree_control").write_text("+memory")
            except OSError as err:
                refused.append(f"{folder}: {err.strerror}")
                continue
            return folder, "memory.max", "memory.events", True
    return ("cannot enable the memory controller for a cgroup's children ("
            + "; ".join(refused or ["no cgroup offers it"]) + ")")


@pytest.fixture(scope="module")
def memory_cgroup():
    """The test's own memory cgroup, removed afterwards, with the memory controller disabled
    again where the test enabled it."""
    found = memory_cgroup_parent()
    if isinstance(found, str):
        pytest.skip(f"{found}; {HOW_TO_RUN}")
    parent, limit_file, oom_file, enabled = found
    path = parent / f"test_larger_than_ram.{os.getpid()}"
    try:
        try:
            path.mkdir()
        except OSError as err:
            pytest.skip(f"cannot create a memory cgroup under {parent} ({err.strerror}); "
                        f"{HOW_TO_RUN}")
        if not (path / limit_file).exists():
            path.rmdir()
            pytest.skip(f"{path} has no {limit_file}: the memory controller is not enabled "
                        f"there; {HOW_TO_RUN}")
        yield MemoryCgroup(path, limit_file, oom_file)
        for _ in range(50):  # a killed process can take a moment to leave the cgroup
            if not (path / "cgroup.procs").read_text().strip():
                break
            time.sleep(0.1)
        path.rmdir()
    finally:
        if enabled:
            (parent / "cgroup.subtree_control").write_text("-memory")


@pytest.fixture
def project(tmp_path):
    """A scratch project folder with this project's params.yaml. Its data (gigabytes) is
    removed afterwards rather than kept among pytest's temporary folders."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["workers"] = 1
    params["train"].update(model="googlenet", epochs=1, warmup_epochs=0, batch_size=8)
    copy_project(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    yield tmp_path
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


def write_crops(root: Path, rows: int) -> None:
    """data/crops as the crop stage leaves it: the crops' pixels in shards, and their manifest
    (crop_store.MANIFEST_FIELDS). Each crop is already SIZE x SIZE, so resize keeps its bytes."""
    crops = root / "data" / "crops"
    crops.mkdir(parents=True)
    manifest = []
    with ShardWriter(crops, SHARD_NAME) as shards:
        for i in range(rows):
            shard, offset = shards.write(image(i))
            manifest.append({"crop": f"{label(i)}/{i}.jpg-0", "source": f"{label(i)}/{i}.jpg",
                             "xmin": 0, "ymin": 0, "xmax": SIZE, "ymax": SIZE, "label": label(i),
                             "source_sha256": f"{i:064x}", "shard": shard, "offset": offset,
                             "height": SIZE, "width": SIZE})
    write_csv(crops / MANIFEST, MANIFEST_FIELDS, manifest)


def write_packed(root: Path, rows: int) -> None:
    """data/packed as the pack stage leaves it, written directly (resize and pack are tested
    on fewer rows, under their own smaller limit)."""
    packed = root / "data" / "packed"
    packed.mkdir(parents=True)
    images = np.lib.format.open_memmap(packed / "images.npy", mode="w+", dtype=np.uint8,
                                       shape=(rows, SIZE, SIZE, 3))
    for start in range(0, rows, 4096):
        index = np.arange(start, min(start + 4096, rows))[:, None, None]
        chunk = images[start:start + len(index)]
        chunk[..., 0], chunk[..., 1] = index % 256, index // 256 % 256
        chunk[..., 2] = np.arange(SIZE, dtype=np.uint8) + index % 101
    images.flush()
    del images
    save_npy(packed / "labels.npy", np.arange(rows, dtype=np.int32) % CLASSES)
    write_json(packed / "classes.json", [label(i) for i in range(CLASSES)])
    write_csv(packed / "items.csv", ITEM_FIELDS,
              ({"index": i, "crop": f"{label(i)}/{i}.jpg-0", "source": f"{label(i)}/{i}.jpg",
                "label": label(i), "source_sha256": f"{i:064x}"} for i in range(rows)))


def test_resize_and_pack_stream_an_array_larger_than_their_memory_limit(project, memory_cgroup):
    write_crops(project, PACK_ROWS)
    memory_cgroup.limit(PACK_LIMIT)
    for stage in ("resize", "pack"):
        done = memory_cgroup.run(project, sys.executable, "-m", f"stages.{stage}")
        assert done.returncode == 0, f"{stage} under {PACK_LIMIT // MiB} MiB:\n{done.stderr}"

    images = np.load(project / "data/packed/images.npy", mmap_mode="r")
    assert images.shape == (PACK_ROWS, SIZE, SIZE, 3) and images.nbytes > 2.5 * PACK_LIMIT
    for i in np.linspace(0, PACK_ROWS - 1, 200).astype(int):
        assert np.array_equal(images[i], image(i)), f"row {i}"
    labels = np.load(project / "data/packed/labels.npy")
    assert np.array_equal(labels, np.arange(PACK_ROWS) % CLASSES)

    memory_cgroup.run_killed(project, sys.executable, "-c",
                             "import numpy as np; np.load('data/packed/images.npy')")


@pytest.mark.timeout(1800)  # 155 s to 497 s on 2 cores, as other jobs loaded them
def test_train_and_evaluate_read_rows_across_an_array_larger_than_their_memory_limit(
        project, memory_cgroup):
    write_packed(project, TRAIN_ROWS)
    split = np.linspace(0, TRAIN_ROWS - 1, 3 * SUBSET).astype(np.int64)
    for k, name in enumerate(("train", "val", "test")):
        save_npy(project / "data/split" / f"{name}.npy", split[k::3])
    assert (project / "data/packed/images.npy").stat().st_size > 1.5 * TRAIN_LIMIT
    memory_cgroup.limit(TRAIN_LIMIT)

    for stage in ("train", "evaluate"):
        done = memory_cgroup.run(project, sys.executable, "-m", f"stages.{stage}")
        assert done.returncode == 0, f"{stage} under {TRAIN_LIMIT // MiB} MiB:\n{done.stderr}"
    assert read_json(project / "metrics/evaluate.json")["test_images"] == SUBSET
    predicted = [int(row["index"]) for row in read_csv(project / "plots/predictions.csv")]
    assert predicted == split[2::3].tolist()  # the last one is the array's last row

    memory_cgroup.run_killed(project, sys.executable, "-c",
                             "import numpy as np; np.load('data/packed/images.npy')")
