"""inception-claims: the study's claims and the paper's own, as a grid of DVC experiments over
seeds, and a report that says what holds.

    inception-claims run [--grid claims/grid.yaml] [--jobs 1]   queue the missing runs, run them
    inception-claims report [--grid claims/grid.yaml]           rebuild the report from the runs
    inception-claims plan [--grid ...] [--difference D] [--spread S] [--crop-se C]
                                                                seeds a difference needs

A grid's runs and report live in the grid file's folder (claims/grid.yaml: claims/). ``run``
runs what the grid's runs/ lacks (inception_pipeline/claims_queue.py), then reports. ``report``
writes report.json, report.md and curves.png, and rewrites docs/study.md between the markers
``<!-- claims:begin GRID -->`` and ``<!-- claims:end GRID -->`` where it holds them
(inception_pipeline/claims_report.py). ``plan`` prints the seeds per setting a paired
comparison needs to find a difference in test top-1 80% of the time at 5% two-sided, from the
grid's ``power`` section, each value replaceable on the command line, and with the spread the
grid's runs measured (inception_pipeline/statistics.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inception_pipeline import statistics
from inception_pipeline.claims_figure import plot
from inception_pipeline.claims_grid import GRID, home, load_runs, read_grid, runs_dir
from inception_pipeline.claims_queue import run_grid
from inception_pipeline.claims_report import build, markdown, with_study_section
from inception_pipeline.errors import PipelineError, run
from inception_pipeline.io import write_json, write_text

STUDY = Path("docs/study.md")


def write_report(grid: dict) -> dict:
    runs = load_runs(grid)
    if not runs:
        raise PipelineError(f"{runs_dir(grid)}: no finished runs yet (`inception-claims run`)")
    report = build(grid, runs)
    figure = home(grid) / "curves.png"
    plot(grid, runs, figure)
    write_json(home(grid) / "report.json", report)
    write_text(home(grid) / "report.md", markdown(report))
    study = STUDY.read_text(encoding="utf-8") if STUDY.exists() else ""
    rewritten = with_study_section(study, report)
    if rewritten is not None and rewritten != study:
        write_text(STUDY, rewritten)
    print(f"claims: wrote {home(grid)}/report.md, report.json and curves.png from "
          f"{sum(map(len, runs.values()))} runs" + (f", and its section of {STUDY}"
                                                   if rewritten is not None else ""))
    return report


def plan(grid: dict, difference: float | None, spread: float | None,
         crop_se: float | None) -> str:
    power = grid.get("power", {})
    difference = difference or power.get("difference")
    spread = spread or power.get("spread")
    crop_se = power.get("crop_se", 0.0) if crop_se is None else crop_se
    if not difference or not spread:
        raise PipelineError(f"{grid['file']}: no power.difference and power.spread; give "
                            "--difference and --spread")
    lines = []
    runs = load_runs(grid)
    measured, df = statistics.pooled_sd([[r["scores"]["top1_accuracy"] for r in s.values()]
                                         for s in runs.values()])
    for name, sd in [("given", spread)] + ([("measured on the runs", measured)] if df else []):
        seeds = statistics.seeds_needed(difference, sd, crop_se)
        lines.append(f"difference {difference} at sd {sd:.4f} ({name}), crops' se {crop_se}: "
                     + (f"{seeds} seeds per setting" if seeds else "no number of seeds"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inception-claims", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report", "plan"))
    parser.add_argument("--grid", type=Path, default=GRID)
    parser.add_argument("--jobs", type=int, default=1, help="queue workers (1: each run "
                        "uses every core)")
    parser.add_argument("--settings", type=lambda text: text.split(","), help="run: only "
                        "these settings (comma-separated), e.g. the ones a decision rests on")
    parser.add_argument("--difference", type=float, help="plan: difference in test top-1")
    parser.add_argument("--spread", type=float, help="plan: sd of test top-1 over seeds")
    parser.add_argument("--crop-se", type=float, help="plan: standard error test crops add")
    args = parser.parse_args(argv)
    grid = read_grid(args.grid)
    if args.command == "plan":
        print(plan(grid, args.difference, args.spread, args.crop_se))
        return
    if args.command == "run":
        run_grid(grid, args.jobs, args.settings)
    write_report(grid)


def cli() -> None:
    """The ``inception-claims`` console script."""
    run(main)


if __name__ == "__main__":
    cli()
