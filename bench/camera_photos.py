"""Camera-sized photos: crop + resize + pack under ``dvc repro`` against the study's loop and
against the code of another commit (``--previous``; dfcf72f decoded every photo and stored
every crop at full size).

    python bench/camera_photos.py generate DIR [--photos 200] [--largest-box 1800]
    python bench/camera_photos.py compare DATA_DIR --previous REV [--reps 3] [--scratch DIR]
                                          [--bare]
    python bench/camera_photos.py difference DATA_DIR --previous REV
    python bench/camera_photos.py steps DATA_DIR --previous REV [--photos 60]

generate: 4000x3000 JPEGs (quality 90, textured with pixel noise so that each weighs about
2.6 MB, as a phone's 12 MP photo does) in 4 class folders, each with 1-2 boxes of 300 to
LARGEST_BOX px a side and a VOC XML beside it.

compare: three contenders on the same files, interleaved rep by rep, each a process tree
measured as in bench/data_stages.py (wall, CPU seconds, peak of the summed RSS):
- study: bench/data_stages.py's study loop (one process: cv2.imread, crop, cv2.resize to 75x75,
  append, np.save);
- ours: ``dvc repro --force --single-item crop resize pack`` in a scratch git + DVC project
  with this checkout's code (data.dir = DATA_DIR, data.workers = 0: all cores);
- previous: the same in a project with the code of commit REV.
With --bare, ours and previous run ``python -m stages.crop``, ``stages.resize``, ``stages.pack``
one after the other instead (bench/data_stages.py's way), without DVC's hashing and caching.
Each project runs once untimed first, so that DVC's hashes of DATA_DIR are cached as they are
in a user's repeated runs. Also printed: the crops' shards on disk against the source JPEGs,
and whether both projects wrote the same images.npy.

difference: every VOC box of DATA_DIR through this checkout's crop and the crop of commit REV
(crop.margin, crop.max_side from params.yaml), and through resize (75x75, stretch); mean and max
absolute difference over all values: the crops as stored, the 75x75 images, and each 75x75
image against the full-size path (the whole photo decoded, the box cut at full size and resized
to 75x75 directly).

steps: CPU milliseconds per photo of crop's steps, in one process (``time.process_time``,
medians over the first PHOTOS photos), beside commit REV's decode, ``cv2.imread`` and a
TurboJPEG decode of the whole photo at 1/8 (the entropy decoding every approach pays); and how many
boxes (JPEG: each decoded on its own) or photos (other formats) were decoded at each scale.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from data_stages import PROJECT_FILES, images_of, measure, mib, scratch_project

ROOT = Path(__file__).resolve().parents[1]
SIZE = 75


def generate(out: Path, photos: int, largest_box: int) -> None:
    from PIL import Image

    from inception_pipeline.synthetic import Object, voc_xml

    rng = np.random.default_rng(0)
    for i in range(photos):
        label = f"class{i % 4}"
        coarse = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize((4000, 3000), Image.Resampling.BICUBIC))
        noise = rng.integers(-7, 8, (3000, 4000, 1), dtype=np.int16)
        image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        objects = []
        for _ in range(int(rng.integers(1, 3))):
            w, h = (int(v) for v in rng.integers(300, largest_box + 1, 2))
            x, y = int(rng.integers(0, 4000 - w)), int(rng.integers(0, 3000 - h))
            objects.append(Object(label, (x, y, x + w, y + h)))
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:05d}.jpg", quality=90)
        (folder / f"{i:05d}.xml").write_bytes(voc_xml(f"{i:05d}.jpg", label, (4000, 3000),
                                                      objects))


def dvc_project(scratch: Path, name: str, data_dir: Path, rev: str | None) -> Path:
    """A git + DVC project with this checkout's code (rev None) or commit ``rev``'s."""
    project = scratch_project(scratch / name, data_dir)
    if rev:
        for entry in PROJECT_FILES:
            path = project / entry
            if path.is_dir():
                subprocess.run(["rm", "-rf", str(path)], check=True)
            else:
                path.unlink()
        archive = subprocess.run(["git", "archive", rev, *PROJECT_FILES], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(project)], input=archive, check=True)
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["data"].update(dir=str(data_dir), workers=0)
        (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    for cmd in (["git", "init", "-q"], [dvc(), "init", "-q"]):
        subprocess.run(cmd, cwd=project, check=True)
    return project


def dvc() -> str:
    return str(Path(sys.executable).with_name("dvc"))


def env_for(project: Path) -> dict:
    """The venv's python first on PATH (dvc.yaml runs ``python -m stages...``) and the
    project's code ahead of any installed checkout."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PYTHONPATH": str(project)}


def disk(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def run_stages(project: Path) -> tuple[float, int, float]:
    """crop, resize and pack without DVC, timed as one (wall and CPU summed, peak RSS max)."""
    runs = [measure([sys.executable, "-m", f"stages.{stage}"], project, env_for(project))
            for stage in ("crop", "resize", "pack")]
    return sum(r[0] for r in runs), max(r[1] for r in runs), sum(r[2] for r in runs)


def compare(data_dir: Path, previous: str, reps: int, scratch: Path, bare: bool) -> None:
    workers = len(os.sched_getaffinity(0))
    files = images_of(data_dir)
    projects = {"ours": dvc_project(scratch, "ours", data_dir, None),
                "previous": dvc_project(scratch, "previous", data_dir, previous)}
    repro = [dvc(), "repro", "--force", "--single-item", "crop", "resize", "pack"]

    def ours_or_previous(project: Path) -> tuple[float, int, float]:
        return run_stages(project) if bare else measure(repro, project, env_for(project))

    for project in projects.values():  # untimed: DVC hashes DATA_DIR once, as in any project
        ours_or_previous(project)
    study = [sys.executable, str(ROOT / "bench" / "data_stages.py"), str(data_dir), "--scratch",
             str(scratch), "--run", "study"]
    results: dict[str, list[tuple[float, int, float]]] = {k: [] for k in ("study", *projects)}
    print(f"{len(files)} images in {data_dir}; {workers} cores; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for rep in range(reps):
        results["study"].append(measure(study, scratch))
        for name, project in projects.items():
            results[name].append(ours_or_previous(project))
        print(f"rep {rep + 1}: " + ", ".join(
            f"{k} {v[-1][0]:.1f} s / {mib(v[-1][1])} MiB / {v[-1][2]:.1f} CPU s"
            for k, v in results.items()), flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    crops = len(np.load(scratch / "study.npy", mmap_mode="r"))
    med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in results.items()}
    print(f"\nmedians of {reps} reps, {len(files)} photos ({crops} crops), {workers} workers, "
          f"{'bare stages' if bare else 'dvc repro'}:")
    print("| contender | wall s | photos/s | CPU s | CPU ms per photo | peak RSS MiB (tree sum) |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, (seconds, peak, cpu) in med.items():
        print(f"| {k} | {seconds:.1f} | {len(files) / seconds:.1f} | {cpu:.1f} | "
              f"{cpu / len(files) * 1000:.0f} | {mib(peak)} |")
    print(f"\nours / study throughput: {med['study'][0] / med['ours'][0]:.2f}x (target >= 4)")
    print(f"ours / previous throughput: {med['previous'][0] / med['ours'][0]:.2f}x")
    jpegs = disk(files)
    for name, project in projects.items():
        shards = disk((project / "data" / "crops").glob("*.bin"))
        print(f"{name}: crops on disk {shards / 1e6:.1f} MB = {shards / jpegs:.2f}x the source "
              f"JPEGs ({jpegs / 1e6:.1f} MB); images.npy md5 "
              f"{md5(project / 'data' / 'packed' / 'images.npy')}")


def previous_images(rev: str):
    """inception_pipeline/images.py as commit ``rev`` had it, as a module of its own."""
    import types

    source = subprocess.run(["git", "show", f"{rev}:inception_pipeline/images.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("previous_images")
    exec(compile(source, f"{rev}:inception_pipeline/images.py", "exec"), module.__dict__)
    return module


def difference(data_dir: Path, previous: str) -> None:
    from PIL import Image, ImageOps

    from inception_pipeline.annotations import parse_voc
    from inception_pipeline.images import (
        Photo,
        bounded_size,
        configure_decoders,
        crop_region,
        resize_image,
    )

    configure_decoders()  # as crop and resize decode
    old = previous_images(previous)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    margin, max_side = params["crop"]["margin"], params["crop"]["max_side"]
    # sum, max, values differing, values: crops as stored (crop.max_side) and as packed (75x75)
    stats = {k: [0, 0, 0, 0] for k in ("crop: ours / previous", "75x75: ours / previous",
                                       "75x75: ours / full size", "75x75: previous / full size")}

    def add(name: str, a: np.ndarray, b: np.ndarray) -> None:
        diff = np.abs(a.astype(int) - b.astype(int))
        stat = stats[name]
        stat[0] += diff.sum()
        stat[1] = max(stat[1], int(diff.max()))
        stat[2] += int((diff > 0).sum())
        stat[3] += diff.size

    crops = shrunk = other_scale = 0
    for path in images_of(data_dir):
        data = path.read_bytes()
        boxes = [box for _, box in parse_voc(path.with_suffix(".xml").read_bytes())]
        full = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        ours, before = Photo(data, 10**9), old.Photo(data, 10**9)
        regions = [crop_region(box, margin, ours.width, ours.height)[0] for box in boxes]
        ours.load(regions, max_side)
        before.load(regions, max_side)
        for region in regions:
            x0, y0, x1, y1 = region
            crops += 1
            shrunk += bounded_size(x1 - x0, y1 - y0, max_side) != (x1 - x0, y1 - y0)
            part = ours.parts.get(ours.stored_box(region))
            other_scale += (part.scale if part else ours.scale) != before.scale
            a, b = ours.cut(region, max_side), before.cut(region, max_side)
            add("crop: ours / previous", a, b)
            direct = resize_image(np.asarray(full.crop(region)), SIZE, "stretch")
            a, b = (resize_image(cut, SIZE, "stretch") for cut in (a, b))
            add("75x75: ours / previous", a, b)
            add("75x75: ours / full size", a, direct)
            add("75x75: previous / full size", b, direct)
    print(f"{data_dir}: {crops} crops, {shrunk} longer than crop.max_side={max_side}, "
          f"{other_scale} decoded at another scale than {previous} decodes their photo at")
    print("| pair | mean abs difference | max | values differing |\n|---|---:|---:|---:|")
    for name, (total, largest, differing, values) in stats.items():
        print(f"| {name} | {total / values:.3f} | {largest} | {differing / values:.1%} |")


def steps(data_dir: Path, photos: int, previous: str) -> None:
    import cv2
    from turbojpeg import TurboJPEG

    from inception_pipeline.annotations import parse_voc
    from inception_pipeline.images import Photo, configure_decoders, crop_region

    configure_decoders()  # as crop decodes
    old = previous_images(previous)
    turbo = TurboJPEG()
    clock = time.process_time
    times: dict[str, list[float]] = {k: [] for k in (
        "header", "XML", "decode", "cut", "SHA-256", f"decode ({previous})", "cv2.imread",
        "TurboJPEG whole at 1/8")}
    scales = []
    for path in images_of(data_dir)[:photos]:
        data = path.read_bytes()
        marks = [clock()]
        photo = Photo(data, 10**9)
        marks.append(clock())
        boxes = [box for _, box in parse_voc(path.with_suffix(".xml").read_bytes())]
        marks.append(clock())
        regions = [crop_region(box, 0.0, photo.width, photo.height)[0] for box in boxes]
        photo.load(regions, 299)
        marks.append(clock())
        for region in regions:
            photo.cut(region, 299)
        marks.append(clock())
        hashlib.sha256(data).hexdigest()
        marks.append(clock())
        old.Photo(data, 10**9).load(regions, 299)
        marks.append(clock())
        cv2.imread(str(path))
        marks.append(clock())
        turbo.decode(data, scaling_factor=(1, 8))  # every block's entropy decoded, little else
        marks.append(clock())
        for name, start, end in zip(times, marks[:-1], marks[1:], strict=True):
            times[name].append((end - start) * 1000)
        scales += [part.scale for part in photo.parts.values()] or [photo.scale]
    print(f"{data_dir}, {photos} photos: boxes (JPEG) or photos decoded at 1/s for s: "
          f"{ {s: scales.count(s) for s in sorted(set(scales))} }")
    print("median CPU ms per photo: " + ", ".join(f"{k} {statistics.median(v):.1f}"
                                                 for k, v in times.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("out", type=Path)
    gen.add_argument("--photos", type=int, default=200)
    gen.add_argument("--largest-box", type=int, default=1800, help="longest box side, px")
    cmp = sub.add_parser("compare")
    cmp.add_argument("data_dir", type=Path)
    cmp.add_argument("--previous", required=True, help="commit whose code is 'previous'")
    cmp.add_argument("--reps", type=int, default=3)
    cmp.add_argument("--scratch", type=Path, default=Path("/tmp/bench_camera_photos"))
    cmp.add_argument("--bare", action="store_true", help="the stages without dvc repro")
    dif = sub.add_parser("difference")
    dif.add_argument("data_dir", type=Path)
    dif.add_argument("--previous", required=True, help="commit whose images.py is 'previous'")
    stp = sub.add_parser("steps")
    stp.add_argument("data_dir", type=Path)
    stp.add_argument("--photos", type=int, default=60)
    stp.add_argument("--previous", required=True, help="commit whose decode to time beside")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.command == "generate":
        generate(args.out, args.photos, args.largest_box)
    elif args.command == "compare":
        compare(args.data_dir.resolve(), args.previous, args.reps, args.scratch.resolve(),
                args.bare)
    elif args.command == "difference":
        difference(args.data_dir.resolve(), args.previous)
    else:
        steps(args.data_dir.resolve(), args.photos, args.previous)


if __name__ == "__main__":
    main()
