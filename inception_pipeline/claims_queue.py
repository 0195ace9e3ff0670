"""The queue driver of ``inception-claims run``: every (setting, seed) of a grid that its runs/
lacks, queued as a DVC experiment (``dvc exp run --queue -S ...``); as each ends, its small
results are copied into runs/SETTING/seed-N/ (test metrics, test predictions, per-epoch curves
and the run's params), kept in git so the report can be rebuilt and extended with more seeds
without rerunning anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inception_pipeline.claims_grid import (load_runs, missing_runs, overrides, run_folder,
                                            run_name, runs_dir)
from inception_pipeline.errors import PipelineError
from inception_pipeline.io import atomic_path
from inception_pipeline.layout import CURVES_DIR, EVALUATE_METRICS, PREDICTIONS

DVC = str(Path(sys.executable).parent / "dvc")  # the dvc installed beside this Python
# What each run keeps: (file in the experiment, name in its folder).
KEPT = [(EVALUATE_METRICS, "evaluate.json"), (PREDICTIONS, "predictions.csv"),
        (CURVES_DIR / "eval" / "accuracy.tsv", "val_accuracy.tsv"),
        (CURVES_DIR / "train" / "accuracy.tsv", "train_accuracy.tsv")]
# A run reproduces up to evaluate, whose outputs and train's are all it keeps: export (minutes
# and gigabytes for ONNX) and report are not needed.
LAST_STAGE = "evaluate"
QUEUE_STATES = ("Failed", "Success", "Queued", "Running")  # a name queued again: latest wins


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


def start_queue(jobs: int) -> None:
    # The worker outlives this command: it must not hold a pipe of ours, or reading the pipe
    # to its end waits for the whole queue. A file it may keep open.
    with tempfile.TemporaryFile() as output:
        started = subprocess.run([DVC, "queue", "start", "-j", str(jobs)], stdout=output,
                                 stderr=output, timeout=120, check=False)
        if started.returncode:
            output.seek(0)
            raise PipelineError("dvc queue start failed: " + (output.read().decode(
                errors="replace").strip().splitlines() or ["no message"])[-1])


def run_grid(grid: dict, jobs: int, only: list[str] | None = None, poll: float = 30) -> None:
    load_runs(grid)  # refuses kept runs of another recipe before hours of training
    todo = {run_name(grid, s, seed): (s, seed) for s, seed in missing_runs(grid, only)}
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
            *[arg for value in overrides(grid, setting, seed) for arg in ("-S", value)], LAST_STAGE)
        queued += 1
    print(f"claims: queued {queued} runs, {len(todo) - queued} already in the queue; "
          f"{jobs} at a time", flush=True)
    start_queue(jobs)
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
