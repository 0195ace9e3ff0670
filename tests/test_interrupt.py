"""Kill -9 during crop, resize, pack or split, then rerun: outputs byte-identical to an
uninterrupted run, and the temporary names of atomic writes never taken for outputs."""

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pathspec
import pytest
import yaml
from PIL import Image

from inception_pipeline.io import atomic_dir, atomic_path
from inception_pipeline.synthetic import Object, voc_xml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("crop", "resize", "pack", "split")
KILL_AT = (0.3, 0.6, 0.9)  # fractions of the stage's uninterrupted wall time
# inception_pipeline/io.py's temporary names
TEMPORARY = re.compile(r"(^|/)\.[^/]+\.\d+(\.old)?\.tmp")


def write_dataset(raw: Path, classes: int = 3, per_class: int = 80) -> None:
    """Noise photos, each with one or two VOC boxes: enough that each stage runs for about a
    second on one worker."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (raw / f"class {c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(raw / f"class {c}" / f"{i}.jpg", quality=80)
            boxes = [Object(f"class {c}", (10, 10, 70, 90)), Object(f"class {c}", (80, 5, 150, 60))]
            (raw / f"class {c}" / f"{i}.xml").write_bytes(
                voc_xml(f"{i}.jpg", f"class {c}", (160, 120), boxes[: 1 + i % 2]))


def stage_outputs() -> dict[str, list[str]]:
    """Each data stage's outputs (files or folders), as dvc.yaml declares them."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: [next(iter(o)) if isinstance(o, dict) else o
                   for o in stages[name].get("outs", []) + stages[name].get("metrics", [])]
            for name in STAGES}


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (the project folder), by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def within(tree: dict[str, str], out: str) -> dict[str, str]:
    """The part of a snapshot that is output ``out`` (a file, or a folder's files)."""
    return {path: digest for path, digest in tree.items()
            if path == out or path.startswith(out + "/")}


def start(root: Path, stage: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run(root: Path, stage: str) -> float:
    """Run ``stage`` to completion; its wall time in seconds."""
    began = time.monotonic()
    process = start(root, stage)
    try:
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()  # a no-op once it has exited
    assert process.returncode == 0, stderr.decode()
    return time.monotonic() - began


def kill_once_writing(root: Path, stage: str, timeout: float = 300) -> None:
    """Run ``stage`` and kill it -9 as soon as one of its temporary names appears (it is
    writing an output), whatever the machine's speed; if it finishes first, so be it."""
    process = start(root, stage)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if any(TEMPORARY.search(p.relative_to(root).as_posix()) for p in root.rglob("*")):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        process.kill()  # a no-op once it has exited
        process.wait(timeout=60)


def project(root: Path, raw: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(dir=str(raw), workers=1)
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    return root


def test_killed_stages_leave_no_partial_output_and_rerun_identically(tmp_path):
    write_dataset(tmp_path / "raw")
    reference = project(tmp_path / "reference", tmp_path / "raw")
    took = {stage: run(reference, stage) for stage in STAGES}
    expected = snapshot(reference)
    outputs = stage_outputs()

    def check_outputs_whole(root: Path, when: str) -> None:
        """Every output is absent or exactly the uninterrupted run's, never part of it."""
        files = snapshot(root)
        for out in (o for stage in STAGES for o in outputs[stage]):
            got, whole = within(files, out), within(expected, out)
            ok = got in ({}, whole)
            assert ok, f"{out} {when}: {len(got)} files, not 0 nor the {len(whole)} expected"

    work = project(tmp_path / "work", tmp_path / "raw")
    leftovers = set()
    for stage in STAGES:
        # Kills timed as fractions of the uninterrupted run land anywhere, but where depends on
        # the machine's load; the last one lands while an output is being written, on any load.
        for fraction in KILL_AT:
            process = start(work, stage)
            time.sleep(took[stage] * fraction)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            check_outputs_whole(work, f"after killing {stage} at {fraction:.0%}")
            leftovers |= {p for p in snapshot(work) if TEMPORARY.search(p)}
        kill_once_writing(work, stage)
        check_outputs_whole(work, f"after killing {stage} while it wrote")
        leftovers |= {p for p in snapshot(work) if TEMPORARY.search(p)}
        run(work, stage)
    assert leftovers, "no kill landed while a stage was writing: the test proved nothing"
    assert snapshot(work) == expected  # byte-identical, and every leftover cleaned away

    # Killed while replacing a complete output: the previous version or the new one, whole.
    process = start(work, "crop")
    time.sleep(took["crop"] * 0.95)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    check_outputs_whole(work, "after killing a rerun of crop")
    run(work, "crop")
    assert snapshot(work) == expected


@pytest.mark.parametrize("ignore_file", [".gitignore", ".dvcignore"])
def test_temporary_names_are_ignored_and_leftovers_removed(in_tmp, ignore_file):
    """A killed run's temporaries are removed by the next write of the same output; until
    then git and DVC ignore them. Other hidden files are left alone."""
    leftover_dir = in_tmp / "data" / ".crops.999999.tmp"
    leftover_old = in_tmp / "data" / ".crops.999999.old.tmp"
    leftover_file = in_tmp / "metrics" / ".data.999999.tmp.json"
    unrelated = [in_tmp / "data" / ".crops-notes", in_tmp / "metrics" / ".data.json.bak"]
    for folder in (leftover_dir / "a", leftover_old):
        folder.mkdir(parents=True)
    (leftover_dir / "a" / "x.png").write_bytes(b"partial")
    leftover_file.parent.mkdir()
    for path in (leftover_file, *unrelated):
        path.write_text("left")

    with atomic_dir("data/crops") as tmp_dir, atomic_path("metrics/data.json") as tmp_file:
        tmp_file.write_text("{}")
        names = [tmp_dir.as_posix(), tmp_file.as_posix(), (tmp_dir / "a.png").as_posix()]
    assert sorted(os.listdir("data")) == [".crops-notes", "crops"]
    assert sorted(os.listdir("metrics")) == [".data.json.bak", "data.json"]

    spec = pathspec.GitIgnoreSpec.from_lines(
        (ROOT / ignore_file).read_text(encoding="utf-8").splitlines())
    for name in names + [p.relative_to(in_tmp).as_posix()
                         for p in (leftover_dir, leftover_old, leftover_file)]:
        assert TEMPORARY.search(name) and spec.match_file(name), name
    assert not any(spec.match_file(p.relative_to(in_tmp).as_posix()) for p in unrelated)
    assert not spec.match_file("data/crops/a.png")
