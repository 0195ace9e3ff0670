"""The data stages (crop + resize + pack) against the study's loop and the decode limit.

    python bench/data_stages.py DATA_DIR [--reps 3] [--scratch DIR]

DATA_DIR is a dataset in the crop stage's layout with VOC XMLs (e.g. a sample stage's
data/sample with more images_per_class). Three contenders run on the same files, interleaved
rep by rep (study, ours, decode, study, ours, decode, ...), each as its own process tree:

- study: one process, for each image: parse its VOC XML with ElementTree, cv2.imread, crop every
  box, cv2.resize to 75x75, append to a list; then np.array and np.save (the study's way).
- ours: ``python -m stages.crop``, ``stages.resize``, ``stages.pack`` one after the other in a
  scratch copy of the project (data.dir = DATA_DIR, data.workers = 0: all cores), timed end to
  end; ``stages.split`` is timed after them for the per-stage table, outside the comparison.
- decode: cv2.imdecode of the same JPEGs over as many processes as ours uses, nothing else:
  the fastest any pipeline that decodes each file whole at full size can go (crop decodes a
  large JPEG reduced or region by region, below it: bench/camera_photos.py steps).

Peak memory: the peak of the sum of RSS over the contender's whole process tree (its process and
every descendant, i.e. the stage's worker processes), sampled every 50 ms. Summing counts pages
shared between forked workers once per process, so it overstates ours, never the study's.
Throughput is source images per second of wall time, process start-up included. CPU seconds
(user + system over the whole tree, from getrusage of reaped children) are printed too: on a
shared machine they vary less than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("stages", "inception_pipeline", "models", "params.yaml", "dvc.yaml")
STAGES = ("crop", "resize", "pack")
SIZE = 75


def images_of(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("*/*.jpg"))


def study(data_dir: Path, out: Path) -> None:
    """The study's loop, one process."""
    import cv2
    import numpy as np

    crops = []
    for path in images_of(data_dir):
        image = cv2.imread(str(path))
        for obj in ET.parse(path.with_suffix(".xml")).getroot().iter("object"):
            box = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (int(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            crops.append(cv2.resize(image[ymin - 1:ymax, xmin - 1:xmax], (SIZE, SIZE)))
    np.save(out, np.array(crops))


def _decode(path: Path) -> tuple[int, ...]:
    import cv2
    import numpy as np

    return cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR).shape


def decode(data_dir: Path, workers: int) -> None:
    """Parallel decode of the same files and nothing else (chunks as the stages' parallel_map)."""
    paths = images_of(data_dir)
    chunksize = max(1, min(64, len(paths) // (workers * 8) or 1))
    with ProcessPoolExecutor(workers) as pool:
        for _ in pool.map(_decode, paths, chunksize=chunksize):
            pass


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak summed RSS (bytes) and CPU seconds of ``cmd``'s process tree."""
    cpu = children_cpu()
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, total)
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.read().decode()}")
    return seconds, peak, children_cpu() - cpu


def scratch_project(scratch: Path, data_dir: Path) -> Path:
    project = scratch / "project"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    for name in PROJECT_FILES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, project / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(dir=str(data_dir), workers=0)
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    return project


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/bench_data_stages"))
    parser.add_argument("--run", choices=("study", "decode"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    workers = len(os.sched_getaffinity(0))
    if args.run == "study":
        return study(data_dir, args.scratch / "study.npy")
    if args.run == "decode":
        return decode(data_dir, workers)

    files = len(images_of(data_dir))
    project = scratch_project(args.scratch, data_dir)
    me = [sys.executable, str(Path(__file__).resolve()), str(data_dir), "--scratch",
          str(args.scratch), "--run"]
    results: dict[str, list[tuple[float, int, float]]] = {k: [] for k in ("study", "ours", "decode",
                                                                    *STAGES, "split")}
    print(f"{files} images in {data_dir}; {workers} cores; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for rep in range(args.reps):
        results["study"].append(measure([*me, "study"], project))
        stage_runs = [measure([sys.executable, "-m", f"stages.{s}"], project) for s in STAGES]
        for stage, run in zip(STAGES, stage_runs, strict=True):
            results[stage].append(run)
        results["ours"].append((sum(r[0] for r in stage_runs), max(r[1] for r in stage_runs),
                                sum(r[2] for r in stage_runs)))
        results["split"].append(measure([sys.executable, "-m", "stages.split"], project))
        results["decode"].append(measure([*me, "decode"], project))
        print(f"rep {rep + 1}: " + ", ".join(
            f"{k} {v[-1][0]:.1f} s / {mib(v[-1][1])} MiB / {v[-1][2]:.1f} CPU s"
            for k, v in results.items()), flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in results.items()}
    print(f"\nmedians of {args.reps} reps, {files} images, {workers} workers:")
    print("| run | wall s | images/s | peak RSS MiB (tree sum) | CPU s |")
    print("|---|---:|---:|---:|---:|")
    for k, (seconds, peak, cpu) in med.items():
        print(f"| {k} | {seconds:.1f} | {files / seconds:.0f} | {mib(peak)} | {cpu:.1f} |")
    speed = {k: files / med[k][0] for k in ("study", "ours", "decode")}
    print(f"\nours / study throughput: {speed['ours'] / speed['study']:.2f}x (target >= 1.8)")
    print(f"ours / decode limit: {speed['ours'] / speed['decode']:.2f}x (target >= 0.8)")
    print(f"ours / study CPU seconds: {med['ours'][2] / med['study'][2]:.2f}x")
    print(f"ours / study peak RSS: {med['ours'][1] / med['study'][1]:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
