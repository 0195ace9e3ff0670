"""inception-claims: the study's claims and the paper's own, as a grid of DVC experiments over
seeds, and a report that says what holds.

    inception-claims run [--grid claims/grid.yaml] [--jobs 1]   queue the missing runs, run them
    inception-claims report [--grid claims/grid.yaml]           rebuild the report from the runs

A grid's runs and report live in the grid file's folder (for claims/grid.yaml: claims/), so
grids of different budgets sit side by side. ``run`` queues every (setting, seed) of the grid
that its runs/ does not hold yet as a DVC experiment (``dvc exp run --queue -S ...``), starts
the queue and, as each experiment ends, copies its small results into runs/SETTING/seed-N/
(test metrics, test predictions, per-epoch curves, and the run's params): kept in git, they let
the report be rebuilt, and extended with more seeds, without rerunning anything. A kept run
whose params disagree with the grid (say, the budget changed since) stops both commands: results
of two recipes never mix. ``report`` writes report.md, report.json and curves.png.

Every run of a setting differs from the others only in ``train.seed``; the data and split are
the same, so runs are compared on the same test crops. The difference between a setting and the
baseline is the mean over seeds of their paired per-seed differences in test top-1, with a 95%
interval that adds the spread between seeds (Student's t over the seeds) to the test-set
sampling (a bootstrap over the test crops). A difference is called one only when that interval
leaves out zero; with one seed there is no interval and no verdict.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from inception_pipeline.compare import correct_by_crop, paired
from inception_pipeline.errors import PipelineError, run
from inception_pipeline.io import atomic_path, read_csv, read_json, write_json, write_text
from inception_pipeline.layout import CURVES_DIR, EVALUATE_METRICS, PREDICTIONS

DVC = str(Path(sys.executable).parent / "dvc")  # the dvc installed beside this Python
GRID = Path("claims/grid.yaml")
# What each run keeps: (file in the experiment, name in its folder).
KEPT = [(EVALUATE_METRICS, "evaluate.json"), (PREDICTIONS, "predictions.csv"),
        (CURVES_DIR / "eval" / "accuracy.tsv", "val_accuracy.tsv"),
        (CURVES_DIR / "train" / "accuracy.tsv", "train_accuracy.tsv")]
LEARNED = 0.5  # validation top-1 a network must reach on the claims budget to count as learning
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228}  # Student's t, two-sided 95%, by degrees of freedom


def read_grid(path: Path) -> dict:
    """The grid: ``budget`` (params every run sets), ``settings`` (name -> params), ``seeds``
    (name -> how many), ``baseline`` (a setting's name) and ``pairs`` ([without, with]
    residual connections); ``file``, its path: the file's folder holds its runs and report."""
    try:
        grid = yaml.safe_load(path.read_text(encoding="utf-8"))
        settings, seeds, baseline = grid["settings"], grid["seeds"], grid["baseline"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise PipelineError(f"{path}: cannot read the grid ({type(err).__name__}: {err})"
                            ) from None
    unknown = ({baseline} | set(seeds) | {n for pair in grid.get("pairs", []) for n in pair}
               ) - set(settings)
    if unknown:
        raise PipelineError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return {**grid, "file": path}


def planned_seeds(grid: dict) -> dict[str, int]:
    """Setting -> seeds planned, in the order of ``settings`` (the report's order; ``seeds``
    orders the queue)."""
    return {setting: grid["seeds"][setting] for setting in grid["settings"]
            if setting in grid["seeds"]}


def run_name(grid: dict, setting: str, seed: int) -> str:
    """The experiment's name, unique across grids: claims-default-seed-0 for claims/grid.yaml,
    claims-other-default-seed-0 for claims/other/grid.yaml."""
    folder = home(grid)
    return "-".join([*folder.relative_to(folder.anchor).parts, setting, "seed", str(seed)])


def home(grid: dict) -> Path:
    """The folder of the grid's file, which holds its runs and report."""
    return Path(grid["file"]).parent


def runs_dir(grid: dict) -> Path:
    return home(grid) / "runs"


def run_folder(grid: dict, setting: str, seed: int) -> Path:
    return runs_dir(grid) / setting / f"seed-{seed}"


def run_params(grid: dict, setting: str, seed: int) -> dict:
    """The params one run sets (dotted key -> value): the budget, the setting, the seed."""
    return {**grid.get("budget", {}), **grid["settings"][setting], "train.seed": seed}


def overrides(grid: dict, setting: str, seed: int) -> list[str]:
    """``-S`` arguments of one run."""
    return [f"{key}={json.dumps(value)}" for key, value in run_params(grid, setting, seed).items()]


def disagreements(params: dict, expected: dict) -> list[str]:
    """The dotted keys of ``expected`` whose value in ``params`` (nested as in params.yaml)
    differs, as "key=value (the grid: value)"."""
    def value(key: str):
        node = params
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    return [f"{key}={json.dumps(value(key))} (the grid: {json.dumps(want)})"
            for key, want in expected.items() if value(key) != want]


def missing_runs(grid: dict) -> list[tuple[str, int]]:
    """The runs the grid's runs/ lacks, seed by seed (every setting's seed 0 first), so that a
    grid stopped halfway still covers every setting."""
    return sorted(((setting, seed) for setting, count in grid["seeds"].items()
                   for seed in range(count)
                   if not (run_folder(grid, setting, seed) / "evaluate.json").exists()),
                  key=lambda run: (run[1], list(grid["seeds"]).index(run[0])))


def dvc(*args: str, timeout: float = 600) -> str:
    done = subprocess.run([DVC, *args], text=True,
                          capture_output=True, timeout=timeout, check=False)
    if done.returncode:
        raise PipelineError(f"dvc {' '.join(args)} failed: "
                            + (done.stderr.strip().splitlines() or ["no message"])[-1])
    return done.stdout


def keep_results(name: str, folder: Path) -> None:
    """Copy an experiment's small results into ``folder`` (written last: evaluate.json)."""
    import dvc.api

    texts = {kept: dvc.api.read(str(path), rev=name) for path, kept in KEPT}
    texts["params.json"] = json.dumps(dvc.api.params_show(rev=name), indent=2) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    for kept, text in sorted(texts.items(), key=lambda item: item[0] == "evaluate.json"):
        with atomic_path(folder / kept) as tmp:
            tmp.write_text(text, encoding="utf-8")


QUEUE_STATES = ("Failed", "Success", "Queued", "Running")  # a name queued again: latest wins


def parse_queue_status(text: str) -> tuple[dict[str, str], int]:
    """``dvc queue status`` -> (experiment name -> state, number of active workers)."""
    states: dict[str, str] = {}
    active = 0
    for line in text.splitlines():
        fields = line.split()
        if line.startswith("Worker status:"):
            active = int(fields[2])
        elif len(fields) >= 3 and fields[-1] in QUEUE_STATES:
            name, state = fields[1], fields[-1]
            if QUEUE_STATES.index(state) >= QUEUE_STATES.index(states.get(name, "Failed")):
                states[name] = state
    return states, active


def queue_states() -> dict[str, str]:
    """Experiment name -> its state in the DVC queue (Queued, Running, Success, Failed)."""
    return parse_queue_status(dvc("queue", "status"))[0]


def queue_states_after_restart() -> dict[str, str]:
    """``queue_states``, with the runs a stopped machine cut off killed so they run again.

    DVC still lists such a run as Running, and no worker would ever end it. Only checked
    before the queue starts: a busy worker may then be slow to answer."""
    states, active = parse_queue_status(dvc("queue", "status"))
    if active == 0:
        for name in [n for n, state in states.items() if state == "Running"]:
            print(f"claims: {name} was cut off (no worker alive); it runs again", flush=True)
            dvc("queue", "kill", name)
            states[name] = "Failed"
    return states


def run_grid(grid: dict, jobs: int, poll: float = 30) -> None:
    load_runs(grid)  # refuses kept runs of another recipe before hours of training
    todo = {run_name(grid, s, seed): (s, seed) for s, seed in missing_runs(grid)}
    if not todo:
        print(f"claims: every run of the grid is in {runs_dir(grid)}/")
        return
    # Runs an earlier `run` queued are waited for, not queued twice: the queue's workers go on
    # when the command that started them stops.
    earlier = queue_states_after_restart()
    queued = 0
    for name, (setting, seed) in todo.items():
        if earlier.get(name) in {"Queued", "Running", "Success"}:
            continue
        subprocess.run([DVC, "exp", "remove", "-q", name],
                       capture_output=True, timeout=120, check=False)  # a failed earlier try
        dvc("exp", "run", "--queue", "-n", name,
            *[arg for value in overrides(grid, setting, seed) for arg in ("-S", value)])
        queued += 1
    print(f"claims: queued {queued} runs, {len(todo) - queued} already in the queue; "
          f"{jobs} at a time", flush=True)
    # The worker outlives this command: it must not hold a pipe of ours, or reading the pipe
    # to its end waits for the whole queue. A file it may keep open.
    with tempfile.TemporaryFile() as output:
        started = subprocess.run([DVC, "queue", "start",
                                  "-j", str(jobs)], stdout=output, stderr=output, timeout=120,
                                 check=False)
        if started.returncode:
            output.seek(0)
            raise PipelineError("dvc queue start failed: " + (output.read().decode(
                errors="replace").strip().splitlines() or ["no message"])[-1])
    while todo:
        states = queue_states()
        for name in [n for n in todo if states.get(n) in {"Success", "Failed"}]:
            setting, seed = todo.pop(name)
            if states[name] == "Failed":
                print(f"claims: {name} failed; `dvc queue logs {name}` says why", flush=True)
            else:
                keep_results(name, run_folder(grid, setting, seed))
                print(f"claims: {name} done -> {run_folder(grid, setting, seed)}/", flush=True)
        if todo and not {"Queued", "Running"} & {states.get(n) for n in todo}:
            raise PipelineError(f"the queue stopped with {len(todo)} runs unfinished: "
                                + ", ".join(sorted(todo)))
        if todo:
            time.sleep(poll)


# The report: pure functions of the kept results.

def load_runs(grid: dict) -> dict[str, dict[int, dict]]:
    """setting -> seed -> {"scores", "correct" (crop -> bool), "val"/"train" (top-1 by epoch)}."""
    runs: dict[str, dict[int, dict]] = {}
    for setting in grid["settings"]:
        for folder in sorted((runs_dir(grid) / setting).glob("seed-*")):
            if not (folder / "evaluate.json").exists():
                continue
            seed = int(folder.name.removeprefix("seed-"))
            if not (folder / "params.json").exists():
                raise PipelineError(f"{folder}/params.json: missing; without the run's params "
                                    "it cannot be checked against the grid")
            wrong = disagreements(read_json(folder / "params.json"),
                                  run_params(grid, setting, seed))
            if wrong:
                raise PipelineError(f"{folder} was run with {', '.join(wrong)}: move "
                                    f"{runs_dir(grid)}/ aside to run a new grid, or restore "
                                    "the grid")
            runs.setdefault(setting, {})[seed] = {
                "scores": read_json(folder / "evaluate.json"),
                "correct": correct_by_crop(read_csv(folder / "predictions.csv")),
                **{split: [float(row["accuracy"]) for row in csv.DictReader(
                    io.StringIO((folder / f"{split}_accuracy.tsv").read_text()), delimiter="\t")]
                   for split in ("val", "train")}}
    return runs


def summary(seed_runs: dict[int, dict], metric: str) -> tuple[float, float]:
    """Mean and standard deviation (n - 1) of ``metric`` over seeds (sd NaN for one seed)."""
    values = [r["scores"][metric] for r in seed_runs.values()]
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def difference(base: dict[int, dict], other: dict[int, dict], resamples: int = 10_000,
               seed: int = 0) -> dict:
    """Paired difference in test top-1 (other - base) over the seeds both have: its mean, the
    per-seed values and a 95% interval covering the seeds and the test-set sampling (clipped
    to [-1, 1], where a difference of two accuracies lies, however few the seeds)."""
    seeds = sorted(base.keys() & other.keys())
    pairs = [paired(base[s]["correct"], other[s]["correct"], (f"seed {s}", f"seed {s}"))
             for s in seeds]
    per_seed = np.array([b.mean() - a.mean() for a, b in pairs])
    result = {"seeds": seeds, "per_seed": per_seed.tolist(),
              "difference": float(per_seed.mean()) if seeds else math.nan,
              "interval": (math.nan, math.nan), "verdict": "no paired seed: no verdict"}
    if not seeds:
        return result
    # The test crops drawn again, the same draw for every seed: the mean difference's spread.
    mean_diff = np.mean([b - a for a, b in pairs], axis=0)
    draws = np.random.default_rng(seed).integers(0, len(mean_diff), (resamples, len(mean_diff)))
    crop_var = float(mean_diff[draws].mean(axis=1).var())
    if len(seeds) == 1:
        # Without a second seed the spread between runs is unknown: the interval covers the
        # test crops only, and a single run is no verdict.
        half = 1.96 * math.sqrt(crop_var)
        result["interval"] = (max(-1.0, result["difference"] - half),
                              min(1.0, result["difference"] + half))
        result["verdict"] = "one seed: no verdict"
        return result
    half = T_975[len(seeds) - 1] * math.sqrt(per_seed.var(ddof=1) / len(seeds) + crop_var)
    low, high = max(-1.0, result["difference"] - half), min(1.0, result["difference"] + half)
    result["interval"] = (low, high)
    result["verdict"] = ("no clear difference" if low <= 0 <= high
                         else "better" if low > 0 else "worse")
    return result


def first_epoch_reaching(curve: list[float], level: float = LEARNED) -> int | None:
    """The first epoch (1-based) whose value reaches ``level``; None if none does."""
    return next((epoch for epoch, value in enumerate(curve, 1) if value >= level), None)


def curve_band(seed_runs: dict[int, dict], split: str) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """Epochs, mean and standard deviation over seeds of one split's top-1 per epoch (runs of
    different lengths, as early stopping gives, are averaged where they overlap)."""
    curves = [r[split] for r in seed_runs.values()]
    length = min(map(len, curves))
    values = np.array([c[:length] for c in curves])
    return np.arange(1, length + 1), values.mean(axis=0), values.std(axis=0)


def plot(grid: dict, runs: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    pairs = grid.get("pairs", [])
    fig = Figure(figsize=(6 * (1 + len(pairs)), 4.5))
    axes = fig.subplots(1, 1 + len(pairs), squeeze=False)[0]
    panels = [("The study's settings", [s for s in planned_seeds(grid)
                                        if s not in {n for p in pairs for n in p}
                                        or s == grid["baseline"]])]
    panels += [(f"{a} (plain) vs {b} (residual)", list(pair)) for pair in pairs
               for a, b in [pair]]
    for ax, (title, settings) in zip(axes, panels, strict=True):
        for i, setting in enumerate(s for s in settings if s in runs):
            epochs, mean, sd = curve_band(runs[setting], "val")
            ax.plot(epochs, mean, marker="o", markersize=3, color=f"C{i}",
                    label=f"{setting} ({len(runs[setting])} seed"
                    f"{'s' if len(runs[setting]) > 1 else ''})")
            ax.fill_between(epochs, mean - sd, mean + sd, color=f"C{i}", alpha=0.2)
        ax.set(title=title, xlabel="epoch", ylabel="validation top-1 (mean, band: 1 sd)",
               ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def fmt(value: float, sign: str = "") -> str:
    return "n/a" if math.isnan(value) else f"{value:{sign}.3f}"


def params_text(params: dict) -> str:
    """Params as `-S` takes them (false, not Python's False)."""
    return ", ".join(f"`{key}={json.dumps(value) if isinstance(value, bool) else value}`"
                     for key, value in params.items())


def report_text(grid: dict, runs: dict) -> str:
    baseline = grid["baseline"]
    budget = params_text(grid.get("budget", {})) or "none"
    lines = ["# Claims report", "",
             f"Built by `inception-claims report --grid {grid['file']}` from "
             f"{runs_dir(grid)}/. Every run: "
             f"params.yaml plus {budget}, plus its setting, with `train.seed` 0, 1, ...; "
             "same data and split, so all runs are scored on the same test crops.", "",
             "## Test top-1 and macro-F1 over seeds", "",
             "| setting | params | seeds (planned) | top-1 mean | sd | macro-F1 mean | sd | "
             f"top-1 per seed | first epoch with val top-1 >= {LEARNED}, per seed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for setting, planned in planned_seeds(grid).items():
        seed_runs = runs.get(setting, {})
        params = params_text(grid["settings"][setting]) or "-"
        if not seed_runs:
            lines.append(f"| {setting} | {params} | 0 ({planned}) | | | | | not run yet | |")
            continue
        top1, f1 = summary(seed_runs, "top1_accuracy"), summary(seed_runs, "macro_f1")
        ordered = [r for _, r in sorted(seed_runs.items())]
        each = ", ".join(f"{r['scores']['top1_accuracy']:.3f}" for r in ordered)
        reached = ", ".join(str(first_epoch_reaching(r["val"])
                                or f"never (best {max(r['val']):.3f})") for r in ordered)
        lines.append(f"| {setting} | {params} | {len(seed_runs)} ({planned}) | {fmt(top1[0])} | "
                     f"{fmt(top1[1])} | {fmt(f1[0])} | {fmt(f1[1])} | {each} | {reached} |")
    short = [s for s, n in planned_seeds(grid).items() if len(runs.get(s, {})) < n]
    if short:
        lines += ["", "Fewer seeds than planned: " + ", ".join(
            f"{s} ({len(runs.get(s, {}))} of {grid['seeds'][s]})" for s in short) + "."]
    stuck = {s: [seed for seed, r in sorted(runs[s].items()) if first_epoch_reaching(r["val"])
                 is None] for s in planned_seeds(grid) if s in runs}
    if any(stuck.values()):
        lines += ["", f"Never reached validation top-1 {LEARNED} on this budget: " + ", ".join(
            f"{s} (seed {', '.join(map(str, seeds))})" for s, seeds in stuck.items() if seeds)
            + "."]
    comparisons = [(baseline, s) for s in planned_seeds(grid) if s != baseline]
    comparisons += [tuple(pair) for pair in grid.get("pairs", [])
                    if tuple(pair) not in comparisons]
    lines += ["", "## Paired differences in test top-1", "",
              "Other minus reference, over the seeds both have; the 95% interval adds the "
              "spread between seeds (t over seeds) to the test-set sampling (bootstrap over "
              "crops); with one seed it covers the test crops only, and there is no verdict. "
              "A difference is called one only when the interval leaves out zero.", "",
              "| other | reference | seeds | difference | 95% interval | per seed | verdict |",
              "|---|---|---|---|---|---|---|"]
    for reference, other in comparisons:
        if reference not in runs or other not in runs:
            lines.append(f"| {other} | {reference} | 0 | | | | not run yet |")
            continue
        d = difference(runs[reference], runs[other])
        lines.append(f"| {other} | {reference} | {len(d['seeds'])} | {d['difference']:+.3f} | "
                     f"[{fmt(d['interval'][0], '+')}, {fmt(d['interval'][1], '+')}] | "
                     + ", ".join(f"{v:+.3f}" for v in d["per_seed"]) + f" | {d['verdict']} |")
    lines += ["", "## Validation top-1 per epoch", "",
              "![validation top-1 per epoch, mean and band over seeds](curves.png)", ""]
    return "\n".join(lines)


def write_report(grid: dict) -> None:
    runs = load_runs(grid)
    if not runs:
        raise PipelineError(f"{runs_dir(grid)}: no finished runs yet (`inception-claims run`)")
    report, figure = home(grid) / "report.md", home(grid) / "curves.png"
    plot(grid, runs, figure)
    write_text(report, report_text(grid, runs))
    write_json(report.with_suffix(".json"), {
        setting: {str(seed): r["scores"] for seed, r in seed_runs.items()}
        for setting, seed_runs in runs.items()})
    print(f"claims: wrote {report} and {figure} from {sum(map(len, runs.values()))} runs")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inception-claims", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report"))
    parser.add_argument("--grid", type=Path, default=GRID)
    parser.add_argument("--jobs", type=int, default=1, help="queue workers (1: each run "
                        "uses every core)")
    args = parser.parse_args(argv)
    grid = read_grid(args.grid)
    if args.command == "run":
        run_grid(grid, args.jobs)
    write_report(grid)


def cli() -> None:
    """The ``inception-claims`` console script."""
    run(main)


if __name__ == "__main__":
    cli()
