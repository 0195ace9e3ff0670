"""DVC's own overhead on a repo whose data stages are up to date: no-op repro and status.

    python bench/dvc_overhead.py REPO [--reps 5] [--until split] [--per-stage]

REPO is a git + DVC repo of this project whose stages up to ``--until`` have run (e.g. at 20,000
images: the sample stage's data committed, then ``dvc repro split``). Train and evaluate need
hours at 20,000 images here, so the no-op repro is ``dvc repro UNTIL`` (everything UNTIL depends
on); ``dvc status --with-deps UNTIL`` checks the same stages, and with ``--per-stage``,
``dvc status STAGE`` (without --with-deps: that stage alone) shows where the time goes. Commands are interleaved rep by rep; medians of wall
time. Every repro must report that nothing changed, else the figure would not be overhead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA_STAGES = ("sample", "crop", "resize", "pack", "split")


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {done.stderr}")
    return seconds, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("repo", type=Path)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--until", default="split", choices=DATA_STAGES)
    parser.add_argument("--per-stage", action="store_true")
    args = parser.parse_args()
    dvc = str(Path(sys.executable).with_name("dvc"))
    stages = DATA_STAGES[: DATA_STAGES.index(args.until) + 1]
    commands = {f"dvc repro {args.until}": [dvc, "repro", args.until],
                f"dvc status --with-deps {args.until}": [dvc, "status", "--with-deps", args.until],
                **{f"dvc status {s}": [dvc, "status", s]
                   for s in stages if args.per_stage}}
    files = {s: sum(len(f) for _, _, f in os.walk(args.repo / "data" / s))
             for s in ("sample", "crops", "resized")}
    print(f"{args.repo}: files in data/: {files}; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for rep in range(args.reps):
        for name, cmd in commands.items():
            seconds, output = timed(cmd, args.repo)
            if "Running stage" in output or "status" in name and "up to date" not in output:
                sys.exit(f"{name}: not a no-op:\n{output}")
            times[name].append(seconds)
        print(f"rep {rep + 1}: " + ", ".join(f"{n} {t[-1]:.1f} s" for n, t in times.items()),
              flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\n| command | median of {args.reps} (s) | min (s) |\n|---|---:|---:|")
    for name, values in times.items():
        print(f"| `{name}` | {statistics.median(values):.1f} | {min(values):.1f} |")


if __name__ == "__main__":
    main()
