"""The experiments cookbook (docs/cookbook.md), command for command, on a copy of the
session's tiny baseline run (tests/conftest.py). One repo serves every step, in its order: a
single change, a 2x2 grid run by two queue workers at once, comparing and keeping results; own
data in another copy.
"""

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from inception_pipeline.synthetic import render_scene, voc_xml
from tests.test_e2e import ALL_STAGES, Repo, stages_run, tiny_params

pytestmark = pytest.mark.e2e

# Top-1 ties on the tiny test split (6 crops), so --only-changed would drop it; the test
# cross-entropy differs from run to run.
SCORE = "metrics/evaluate.json:categorical_crossentropy"
TRAIN_METRICS = "metrics/train/metrics.json"
GRID = [("binary", True), ("binary", False), ("categorical", True), ("categorical", False)]
OWN_CLASSES = {"circle": "O", "cross": "X", "plus": "+"}  # folder name (label): glyph drawn
OWN_IMAGES_PER_CLASS = 5
# Queued with the grid: the networks whose outputs take their own paths through train, evaluate
# and report: GoogLeNet's auxiliary heads, and a network of this project's own layers (evaluate
# reloads it in safe mode). That every network builds and trains is tests/test_models.py's;
# tracing all five here cost about a quarter of the suite's time.
QUEUED_NETWORKS = ["googlenet", "inception_resnet_v1"]


def experiments(repo: Repo) -> dict[str, dict]:
    """Every experiment of the baseline commit by name: its commit, its params.yaml and its
    metrics files."""
    found = {}
    for baseline in json.loads(repo.dvc("exp", "show", "--json")):
        for experiment in baseline.get("experiments") or []:
            run = experiment["revs"][0]
            data = run["data"]
            found[run["name"]] = {
                "rev": run["rev"], "params": data["params"]["params.yaml"]["data"],
                **{path: metrics["data"] for path, metrics in data["metrics"].items()}}
    return found


def assert_trained_with_its_own_loss(name: str, run: dict) -> None:
    """DVCLive's `loss` is the cross-entropy the run was configured with, in train and eval (a
    network of one output: GoogLeNet's adds its auxiliary heads' losses)."""
    loss = run["params"]["train"]["loss"]
    for split in ("train", "eval"):
        logged = run[TRAIN_METRICS][split]
        assert logged["loss"] == logged[f"{loss}_crossentropy"], (name, split, logged)


def assert_scored_its_own_predictions(repo: Repo, name: str, run: dict) -> None:
    """The run trained every epoch, and its test top-1 is the share of right answers in its own
    plots/predictions.csv."""
    assert run[TRAIN_METRICS]["step"] == run["params"]["train"]["epochs"] - 1, name
    predictions = list(csv.DictReader(
        repo.run("git", "show", f"{run['rev']}:plots/predictions.csv").splitlines()))
    scores = run["metrics/evaluate.json"]
    assert scores["test_images"] == len(predictions), name
    right = sum(row["actual"] == row["predicted"] for row in predictions)
    assert scores["top1_accuracy"] == pytest.approx(right / len(predictions)), name


def stage_dirs(root: Path) -> set[str]:
    """Working folders of the pipeline stages running now under ``root`` (a queue worker runs
    its experiment in its own copy under .dvc/tmp/exps)."""
    dirs = set()
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline, cwd = proc.info["cmdline"] or [], proc.info["cwd"] or ""
        if (len(cmdline) > 2 and cmdline[1] == "-m" and cmdline[2].startswith("stages.")
                and cwd.startswith(str(root))):
            dirs.add(cwd)
    return dirs


def run_queue_watching_overlap(repo: Repo, timeout: float = 2700) -> tuple[str, int]:
    """`dvc queue start -j 2`, then wait for the queue to empty. Returns the last `dvc queue
    status` and the most experiments seen computing (running a stage) at the same instant."""
    # Output to a file, not a pipe: the workers it leaves running would hold a pipe open.
    log = repo.path / ".dvc/tmp/queue-start.log"
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run([str(Path(sys.executable).parent / "dvc"), "queue", "start",
                               "-j", "2"], cwd=repo.path, env=repo.env, stdout=out,
                              stderr=subprocess.STDOUT, check=False, timeout=120)
    assert done.returncode == 0, log.read_text(encoding="utf-8")
    deadline = time.monotonic() + timeout
    most_at_once, next_status = 0, 0.0
    try:
        while True:
            most_at_once = max(most_at_once, len(stage_dirs(repo.path / ".dvc/tmp/exps")))
            if time.monotonic() >= next_status:
                status = repo.dvc("queue", "status")
                if not re.search(r"\b(Queued|Running)\b", status):
                    return status, most_at_once
                assert time.monotonic() < deadline, status
                next_status = time.monotonic() + 15
            time.sleep(1)
    except BaseException:
        # The workers are detached from this test: stop them, or they would train on, taking
        # the CPU from the tests after this one.
        repo.dvc("queue", "stop", "--kill", timeout=120)
        raise


# Six tiny experiments, four of them training: 23 min on 2 cores other jobs loaded, with the
# session's baseline build, which the first test to need it pays for.
@pytest.mark.timeout(3600)
def test_experiments_cookbook(project_copy):
    repo = project_copy
    baseline_metrics = json.loads((repo.path / "metrics/evaluate.json").read_text())

    # A single change reruns only the stages that read it.
    output = repo.dvc("exp", "run", "-S", "train.loss=categorical")
    assert stages_run(output) == {"train", "export", "evaluate", "report"}, output
    single = re.search(r"Ran experiment\(s\): (\S+)", output).group(1)
    text = repo.dvc("metrics", "diff")  # lists what changed (top-1 may tie on 6 test crops)
    assert "metrics/evaluate.json" in text and "categorical_crossentropy" in text, text
    diff = json.loads(repo.dvc("metrics", "diff", "--json", "--all"))
    scores = diff["metrics/evaluate.json"]["top1_accuracy"]
    assert set(scores) == {"old", "new", "diff"}
    assert scores["old"] == baseline_metrics["top1_accuracy"]  # the last commit's
    assert scores["new"] == json.loads(
        (repo.path / "metrics/evaluate.json").read_text())["top1_accuracy"]  # the workspace's

    # The 2x2 grid from the queue, two workers at once; other networks queued with it.
    before = set(experiments(repo))
    repo.dvc("exp", "run", "--queue",
             "-S", "train.loss=binary,categorical", "-S", "train.augment=true,false")
    for network in QUEUED_NETWORKS:
        repo.dvc("exp", "run", "--queue", "-n", f"net-{network}", "-S", f"train.model={network}")
    status, most_at_once = run_queue_watching_overlap(repo)
    assert len(re.findall(r"\bSuccess\b", status)) == len(GRID) + len(QUEUED_NETWORKS), status
    assert most_at_once == 2, "the queue never ran two experiments' stages at the same time"

    runs = experiments(repo)
    assert runs[single]["params"]["train"]["loss"] == "categorical"
    assert_trained_with_its_own_loss(single, runs[single])
    assert_scored_its_own_predictions(repo, single, runs[single])
    networks = {network: f"net-{network}" for network in QUEUED_NETWORKS}
    assert tiny_params()["train"]["model"] not in networks
    for network, name in networks.items():
        assert runs[name]["params"]["train"]["model"] == network
    grid = {(run["params"]["train"]["loss"], run["params"]["train"]["augment"]): name
            for name, run in runs.items() if name not in before | set(networks.values())}
    assert sorted(grid) == sorted(GRID)
    for name in grid.values():
        assert_trained_with_its_own_loss(name, runs[name])
    queued = [*grid.values(), *networks.values()]
    for name in queued:
        assert_scored_its_own_predictions(repo, name, runs[name])
    # A queued experiment starts from the workspace, which holds the single change: (categorical,
    # true) has nothing to run. (binary, true) is the last commit: its model and exports come from
    # the run cache, and evaluate and report (outputs in git, not in the cache) rerun.
    ran = {combination: stages_run(repo.dvc("queue", "logs", name))
           for combination, name in [*grid.items(), *networks.items()]}
    trained = {"train", "export", "evaluate", "report"}
    assert ran == {("binary", True): {"evaluate", "report"}, ("categorical", True): set(),
                   ("binary", False): trained, ("categorical", False): trained,
                   **{network: trained for network in networks}}, ran
    # Separate results: every run its own (the one that ran nothing is the single change's).
    losses = {runs[name][TRAIN_METRICS]["train"]["loss"] for name in queued}
    assert len(losses) == len(queued)
    # evaluate, rerun by a queue worker on the run cache's model, scores as the baseline did.
    assert runs[grid["binary", True]]["metrics/evaluate.json"] == baseline_metrics

    # Compare: the table of what differs, best (lowest test loss) first; two runs' curves.
    table = repo.dvc("exp", "show", "--only-changed", "--sort-by", SCORE)
    assert all(name in table for name in grid.values()), table
    ordered = repo.dvc("exp", "show", "--only-changed", "--sort-by", SCORE, "--csv").splitlines()
    header = ordered[0].split(",")
    # DVC prefixes the file where a name is in two (DVCLive logs a metric train.loss too).
    assert {"params.yaml:train.loss", "train.augment", "train.model"} <= set(header), header
    assert not any(column.endswith("train.optimizer") for column in header), header
    shown = [dict(zip(header, row.split(","))) for row in ordered[1:]]
    shown = [float(row["categorical_crossentropy"]) for row in shown
             if row["Experiment"] in grid.values()]
    assert shown == sorted(shown) and len(shown) == len(GRID)

    first, second = grid["binary", False], grid["categorical", False]
    repo.dvc("plots", "diff", first, second, "-o", "plots_html")
    html = (repo.path / "plots_html/index.html").read_text(encoding="utf-8")
    assert "metrics/train/plots/metrics/eval/accuracy.tsv" in html
    for name in (first, second):  # each run's own curve: its last training loss, under its name
        loss = runs[name][TRAIN_METRICS]["train"]["loss"]
        assert f'"loss": "{loss!r}", "rev": "{name}"' in html, name

    # Keep one: into the workspace, or onto a branch of its own.
    repo.dvc("exp", "apply", second)
    params = yaml.safe_load((repo.path / "params.yaml").read_text(encoding="utf-8"))
    assert (params["train"]["loss"], params["train"]["augment"]) == ("categorical", False)
    assert json.loads((repo.path / "metrics/evaluate.json").read_text()) == \
        runs[second]["metrics/evaluate.json"]
    repo.dvc("exp", "branch", first, "binary-no-augment")
    params = yaml.safe_load(repo.run("git", "show", "binary-no-augment:params.yaml"))
    assert (params["train"]["loss"], params["train"]["augment"]) == ("binary", False)
    lock = yaml.safe_load(repo.run("git", "show", "binary-no-augment:dvc.lock"))
    locked = lock["stages"]["train"]["params"]["params.yaml"]
    assert (locked["train.loss"], locked["train.augment"]) == ("binary", False)
    assert json.loads(repo.run("git", "show", "binary-no-augment:metrics/evaluate.json")) == \
        runs[first]["metrics/evaluate.json"]


def write_own_dataset(root: Path) -> int:
    """One folder per class, a Pascal VOC XML beside each photo; returns the number of boxes."""
    boxes = 0
    for class_index, (label, glyph) in enumerate(OWN_CLASSES.items()):
        (root / label).mkdir(parents=True)
        for index in range(OWN_IMAGES_PER_CLASS):
            image, objects = render_scene(1, class_index, index, label, glyph)
            image.save(root / label / f"photo {index}.png")
            (root / label / f"photo {index}.xml").write_bytes(
                voc_xml(f"photo {index}.png", label, image.size, objects))
            boxes += len(objects)
    return boxes


def test_own_data_tracked_with_dvc_add(project_copy):
    repo = project_copy
    boxes = write_own_dataset(repo.path / "data/raw")
    repo.dvc("add", "data/raw")
    repo.run("git", "add", "data/raw.dvc", "data/.gitignore")
    output = repo.dvc("exp", "run", "-S", "data.dir=data/raw")
    # Everything from crop on reruns; sample, whose output crop no longer reads, is skipped.
    assert stages_run(output) == ALL_STAGES - {"sample"}, output
    counts = json.loads((repo.path / "metrics/data.json").read_text())
    images = len(OWN_CLASSES) * OWN_IMAGES_PER_CLASS
    assert (counts["files_found"], counts["files_accepted"], counts["crops"]) == \
        (images, images, boxes)
    classes = json.loads((repo.path / "data/packed/classes.json").read_text())
    assert sorted(classes) == sorted(OWN_CLASSES)
    # crop's dependency is the version of data/raw that `dvc add` recorded.
    tracked = yaml.safe_load((repo.path / "data/raw.dvc").read_text())["outs"][0]["md5"]
    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())
    assert {"path": "data/raw", "md5": tracked} in [
        {k: dep.get(k) for k in ("path", "md5")} for dep in lock["stages"]["crop"]["deps"]]
