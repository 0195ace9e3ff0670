"""A claims grid and its kept runs: the grid file, the params of each (setting, seed), and the
results ``inception-claims run`` copied into the grid's runs/ folder.

A grid's runs and report live in its file's folder (for claims/grid.yaml: claims/), so grids of
different budgets sit side by side. A kept run whose params disagree with the grid (say, the
budget changed since) stops every command: results of two recipes never mix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import yaml

from inception_pipeline.compare import correct_by_crop
from inception_pipeline.errors import PipelineError
from inception_pipeline.io import read_csv, read_json

GRID = Path("claims/grid.yaml")
POWER_KEYS = {"difference", "spread", "crop_se"}


def read_grid(path: Path) -> dict:
    """The grid: ``budget`` (params every run sets, data stages' too), ``settings`` (name ->
    params), ``seeds`` (name -> how many), ``baseline`` (a setting's name), ``pairs``
    ([without, with] residual connections) and ``power`` (what the seeds are planned for:
    ``difference``, ``spread``, ``crop_se``); ``file``, its path."""
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
    for key, value in grid.get("power", {}).items():
        if key not in POWER_KEYS or not isinstance(value, (int, float)) or value < 0 or (
                key != "crop_se" and not value):
            raise PipelineError(f"{path}: power.{key}: {value!r} is not one of "
                                f"{', '.join(sorted(POWER_KEYS))} with a positive number")
    return {**grid, "file": path}


def planned_seeds(grid: dict) -> dict[str, int]:
    """Setting -> seeds planned, in the order of ``settings`` (the report's order; ``seeds``
    orders the queue)."""
    return {setting: grid["seeds"][setting] for setting in grid["settings"]
            if setting in grid["seeds"]}


def home(grid: dict) -> Path:
    """The folder of the grid's file, which holds its runs and report."""
    return Path(grid["file"]).parent


def runs_dir(grid: dict) -> Path:
    return home(grid) / "runs"


def run_folder(grid: dict, setting: str, seed: int) -> Path:
    return runs_dir(grid) / setting / f"seed-{seed}"


def run_name(grid: dict, setting: str, seed: int) -> str:
    """The experiment's name, unique across grids and budgets: claims-default-seed-0-1a2b3c for
    claims/grid.yaml, claims-other-default-seed-0-4d5e6f for claims/other/grid.yaml. The last
    part is a digest of the run's params, so that after a change of budget a finished run of
    the old one, still in DVC's queue, is not taken for the new run."""
    folder = home(grid)
    digest = hashlib.sha256(json.dumps(run_params(grid, setting, seed), sort_keys=True)
                            .encode()).hexdigest()[:6]
    return "-".join([*folder.relative_to(folder.anchor).parts, setting, "seed", str(seed),
                     digest])


def run_params(grid: dict, setting: str, seed: int) -> dict:
    """The params one run sets (dotted key -> value): the budget, the setting, the seed."""
    return {**grid.get("budget", {}), **grid["settings"][setting], "train.seed": seed}


def overrides(grid: dict, setting: str, seed: int) -> list[str]:
    """``-S`` arguments of one run: ``dvc exp run -S`` sets any key of params.yaml, so a budget
    may set data stages' params (``data.dir``, ``sample.*``) as well as training's."""
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


def missing_runs(grid: dict, only: list[str] | None = None) -> list[tuple[str, int]]:
    """The runs the grid's runs/ lacks, seed by seed (every setting's seed 0 first), so that a
    grid stopped halfway still covers every setting; ``only`` limits them to those settings."""
    unknown = sorted(set(only or []) - set(grid["seeds"]))
    if unknown:
        raise PipelineError(f"{grid['file']}: no setting {', '.join(unknown)}; it has "
                            + ", ".join(grid["seeds"]))
    return sorted(((setting, seed) for setting, count in grid["seeds"].items()
                   if only is None or setting in only for seed in range(count)
                   if not (run_folder(grid, setting, seed) / "evaluate.json").exists()),
                  key=lambda run: (run[1], list(grid["seeds"]).index(run[0])))


def read_curve(path: Path) -> list[float]:
    """A per-epoch curve as the train stage logs it (tsv with an ``accuracy`` column)."""
    return [float(row["accuracy"]) for row in csv.DictReader(
        io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t")]


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
                **{split: read_curve(folder / f"{split}_accuracy.tsv")
                   for split in ("val", "train")}}
    return runs

