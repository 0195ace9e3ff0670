"""End to end: real `dvc repro` / `dvc exp run` in a temporary git repo on a tiny configuration
(the session's baseline run, built once by tests/conftest.py; tests that change it take a copy).

Shows the caching contract of dvc.yaml: a second repro runs nothing, and each params change
reruns exactly the stages that read the changed key (and those downstream of a changed output);
and what a run leaves: a report true to its metrics, predictions the command line repeats,
outputs a retrain reproduces byte for byte, training that survives a kill, results a teammate
pulls.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from inception_pipeline.io import read_csv
from inception_pipeline.runtime import machine_precision
from tests.conftest import copy_project
from tests.test_predict import TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
ALL_STAGES = {"sample", "crop", "resize", "pack", "split", "train", "export", "evaluate",
              "report"}

pytestmark = pytest.mark.e2e


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["sample"].update(classes=4, images_per_class=6)
    params["data"]["workers"] = 1
    params["train"].update(model="resnet50", epochs=2, batch_size=8)
    return params


class Repo:
    """A git + DVC repo in a scratch folder, and the commands run in it."""

    def __init__(self, path: Path):
        self.path = path
        self.env = {**os.environ,
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}

    @classmethod
    def project(cls, path: Path, params: dict) -> "Repo":
        """A copy of this project with ``params``, committed."""
        copy_project(path)
        (path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True,
                                                         sort_keys=False))
        repo = cls(path)
        repo.run("git", "init", "-q", "-b", "main")
        # DVC's own experiment commits read the identity from git config, not the environment.
        repo.run("git", "config", "user.name", "test")
        repo.run("git", "config", "user.email", "test@example.com")
        repo.commit("project")
        return repo

    def run(self, *args: str, timeout: float = 600) -> str:
        """Run ``args`` in the repo; it must succeed within ``timeout`` seconds. A command that
        does not, or whose test times out, is killed with what it started (DVC's stages)."""
        process = subprocess.Popen(args, cwd=self.path, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert process.returncode == 0, f"{' '.join(args)} failed:\n{stdout}\n{stderr}"
        return stdout + stderr

    def dvc(self, *args: str, timeout: float = 600) -> str:
        return self.run(str(Path(sys.executable).parent / "dvc"), *args, timeout=timeout)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_second_repro_runs_nothing(project_copy):
    output = project_copy.dvc("repro")
    assert stages_run(output) == set(), output
    assert "didn't change, skipping" in output


# A change that train alone reads (train.loss, rerunning train, export, evaluate and report) is
# tests/test_cookbook.py's first step.
def test_experiment_reruns_only_what_the_change_affects(project_copy):
    output = project_copy.dvc("exp", "run", "-S", "resize.size=80")
    assert stages_run(output) == {"resize", "pack", "train", "export", "evaluate", "report"
                                  }, output


def markdown_rows(text: str) -> list[list[str]]:
    """The cells of a markdown table's rows, header first (the |---| line left out)."""
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|-")]


def test_report_states_the_runs_settings_scores_and_data_counts(baseline):
    """reports/report.md against params.yaml, metrics/evaluate.json, metrics/data.json and
    plots/predictions.csv of the same run."""
    root = baseline.path
    train = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))["train"]
    scores = json.loads((root / "metrics/evaluate.json").read_text())
    data = json.loads((root / "metrics/data.json").read_text())
    predictions = read_csv(root / "plots/predictions.csv")
    report = (root / "reports/report.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", report, re.M | re.S))

    assert train["patience"] == 0  # else the epochs are a maximum, and the report says so
    # the defaults' only regulariser is flips (params.yaml)
    assert not any(train[key] for key in ("weight_decay", "ema", "scale_jitter", "color_jitter",
                                          "mixup", "cutmix", "random_erasing"))
    assert train["class_weight"] == "none"
    # train.precision as this machine resolves it (the run trained here), inference in float32
    assert (scores["train_precision"], scores["eval_precision"]) == (
        machine_precision(train["precision"]), "float32")
    assert report.split("\n\n")[1] == (
        f"{train['model']}, weights {train['weights']}, {train['loss']} cross-entropy, "
        f"{train['optimizer']}\nat lr {train['lr']} ({train['lr_schedule']}, warm-up "
        f"{train['warmup_epochs']} epochs), batch {train['batch_size']}, {train['epochs']} epochs, "
        f"augmentation {'on' if train['augment'] else 'off'}, seed {train['seed']}, trained in "
        f"{scores['train_precision']} and evaluated in {scores['eval_precision']};\n"
        f"regularisers: {'flips' if train['flip'] else 'none'}.")
    [header, values] = markdown_rows(sections[f"Test set ({scores['test_images']} images)"])
    assert header[0] == "top-1 accuracy"
    keys = ["top1_accuracy", "top5_accuracy", "macro_f1", "categorical_crossentropy",
            "binary_accuracy"]
    assert values == [f"{scores[key]:.4f}" for key in keys]

    quality, reasons = sections["Data quality (metrics/data.json)"].split("Reject lines")
    assert {what: int(count) for what, count in markdown_rows(quality)[1:]} == {
        key: value for key, value in data.items() if not isinstance(value, dict)}
    assert ({reason: int(n) for reason, n in markdown_rows(reasons)[1:]}
            == data["rejects_by_reason"])
    wrong = sum(row["actual"] != row["predicted"] for row in predictions)
    assert len(predictions) == scores["test_images"]
    assert f"{wrong} of {len(predictions)} test crops are wrong" in \
        sections["Misclassified test crops"]


def test_predict_command_line_gives_evaluates_predictions_for_an_annotations_boxes(baseline):
    """`inception-predict IMAGE --annotation XML --json` (the console script the Makefile
    installs) with the run's trained model:
    for every box of a test photo, the class and confidence evaluate recorded for its crop."""
    assert_predict_repeats_evaluate(baseline)


def assert_predict_repeats_evaluate(repo: Repo) -> None:
    recorded = {row["crop"]: row for row in read_csv(repo.path / "plots/predictions.csv")}
    manifest = read_csv(repo.path / "data/crops/manifest.csv")
    source = next(row["source"] for row in manifest if row["crop"] in recorded)
    boxes = {tuple(int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")): recorded[row["crop"]]
             for row in manifest if row["source"] == source}  # split keeps a photo together
    image = Path("data/sample") / source
    output = repo.run(str(Path(sys.executable).parent / "inception-predict"), str(image),
                      "--annotation", str(image.with_suffix(".xml")), "--json")
    results, _ = json.JSONDecoder().raw_decode(output)  # the JSON line, before any stderr
    got = {tuple(r["box"]): (r["top"][0]["class"], r["top"][0]["probability"]) for r in results}
    assert got.keys() == boxes.keys()
    for box, (top, confidence) in got.items():  # the TFLite export: tests/test_predict.py
        assert top == boxes[box]["predicted"], box
        assert abs(confidence - float(boxes[box]["confidence"])) <= 5e-5 + TOLERANCE, box


def test_every_regulariser_at_once_trains_evaluates_and_reports(project_copy):
    """All the regularisers on, with early stopping, and evaluate.tta_flip: DVC reruns train,
    evaluate and report (dvc.yaml lists the keys), the report names the regularisers, and
    inception-predict (which follows evaluate.tta_flip) repeats evaluate's predictions."""
    settings = ["train.weight_decay=0.05", "train.ema=0.9", "train.scale_jitter=0.25",
                "train.color_jitter=0.4", "train.mixup=0.2", "train.cutmix=1.0",
                "train.random_erasing=0.5", "train.class_weight=balanced", "train.patience=1",
                "train.flip=true", "evaluate.tta_flip=true"]
    output = project_copy.dvc("exp", "run", *[arg for s in settings for arg in ("-S", s)])
    assert stages_run(output) == {"train", "export", "evaluate", "report"}, output
    report = (project_copy.path / "reports/report.md").read_text(encoding="utf-8")
    assert ("regularisers: flips, weight decay 0.05, weight EMA 0.9, scale jitter 0.25, colour "
            "jitter 0.4, MixUp 0.2, CutMix 1.0, random erasing 0.5, balanced class weights.") in \
        " ".join(report.split())
    assert_predict_repeats_evaluate(project_copy)


def curve(repo: Repo, split: str, name: str) -> list[tuple[int, float]]:
    path = repo.path / "metrics/train/plots/metrics" / split / f"{name}.tsv"
    with open(path, newline="") as f:
        return [(int(row["step"]), float(row[name])) for row in csv.DictReader(f, delimiter="\t")]


def test_killed_retrain_resumes_and_reproduces_the_run_byte_for_byte(project_copy, baseline):
    """`dvc repro --force --downstream train`, SIGKILLed (all its processes) in the second and
    last epoch, then run again: train carries on after epoch 1, and its curves and evaluate's
    and report's outputs are byte for byte the baseline's, trained with the same settings
    uninterrupted (train sets its seeds and TensorFlow's op determinism). That the resumed
    weights are bit for bit is tests/test_resume.py's."""
    repo = project_copy
    # --downstream: evaluate and report rerun too, even if the model came out identical.
    command = [str(Path(sys.executable).parent / "dvc"), "repro", "--force", "--downstream",
               "train"]
    checkpoints = repo.path / ".checkpoints/train"
    victim = subprocess.Popen(command, cwd=repo.path, env=repo.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 400
    try:
        while not (checkpoints / "epoch-0001").exists() and victim.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint of epoch 1 in 400 s"
            time.sleep(0.05)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    assert victim.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert [p.name for p in checkpoints.glob("epoch-*")] == ["epoch-0001"]

    # Forced again: unforced, DVC would restore the model its cache holds for these settings.
    output = repo.run(*command)
    assert stages_run(output) == {"train", "export", "evaluate", "report"}, output
    assert "resuming after epoch 1" in output, output
    assert not checkpoints.exists()  # a completed run removes its checkpoint
    for split in ("train", "eval"):  # every epoch once, each with the uninterrupted run's loss
        assert curve(repo, split, "loss") == curve(baseline, split, "loss")
    for name in ["metrics/evaluate.json", "metrics/per_class.csv", "plots/predictions.csv",
                 "reports/report.md"]:
        assert (repo.path / name).read_bytes() == (baseline.path / name).read_bytes(), name


def test_teammate_pulls_results_from_a_remote_without_recomputing(project_copy, tmp_path):
    """`dvc push` to a shared remote (a local folder here; S3, GCS or SSH work alike), then a
    fresh clone does `dvc pull` and finds every stage up to date."""
    repo = project_copy
    repo.dvc("remote", "add", "--local", "-d", "shared", str(tmp_path / "remote"))
    repo.dvc("push")
    clone = tmp_path / "clone"
    repo.run("git", "clone", "-q", str(repo.path), str(clone))
    teammate = Repo(clone)
    teammate.dvc("remote", "add", "--local", "-d", "shared", str(tmp_path / "remote"))
    teammate.dvc("pull")
    assert (clone / "data/model/model.keras").is_file()
    assert "Data and pipelines are up to date" in teammate.dvc("status")
    assert stages_run(teammate.dvc("repro")) == set()


def flat(metrics: dict, prefix: str = "") -> dict:
    """Nested metrics as `dvc metrics` names them: {"train": {"loss": x}} -> {"train.loss": x}."""
    return {name: value for key, item in metrics.items()
            for name, value in (flat(item, f"{prefix}{key}.") if isinstance(item, dict)
                                else {f"{prefix}{key}": item}).items()}


def test_fresh_clone_compares_a_new_run_with_the_committed_one(project_copy, tmp_path):
    """The README's commands in a fresh `git clone` (its DVC cache shared with the project's, as
    on one machine): after a run with other train settings, `dvc metrics diff` and `dvc plots
    diff HEAD` show the committed run's training metrics and curves beside the new ones, since
    DVCLive's files travel with git. Setting the params back, `dvc repro` restores train from
    DVC's run cache instead of training again (DVC keeps it for uncached outputs declared under
    metrics: and plots:)."""
    clone = Repo(tmp_path / "clone")
    project_copy.run("git", "clone", "-q", str(project_copy.path), str(clone.path))
    clone.dvc("cache", "dir", "--local", str(project_copy.path / ".dvc/cache"))
    clone.dvc("checkout")
    committed_params = (clone.path / "params.yaml").read_text(encoding="utf-8")
    params = yaml.safe_load(committed_params)
    params["train"].update(epochs=1, warmup_epochs=0)
    (clone.path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True,
                                                           sort_keys=False), encoding="utf-8")
    assert "train" in stages_run(clone.dvc("repro"))

    output = clone.dvc("metrics", "diff", "--all", "--json")
    assert "failed to load" not in output, output
    diff, _ = json.JSONDecoder().raw_decode(output)
    committed = flat(json.loads(clone.run("git", "show", "HEAD:metrics/train/metrics.json")))
    train_diff = diff["metrics/train/metrics.json"]
    assert {key: train_diff[key]["old"] for key in committed} == committed, train_diff
    assert train_diff["step"] == {"old": 1, "new": 0, "diff": -1}, train_diff  # from epoch 0

    output = clone.dvc("plots", "diff", "HEAD", "--json")
    assert "failed to load" not in output, output
    plots, _ = json.JSONDecoder().raw_decode(output)
    curves = clone.run("git", "ls-tree", "-r", "--name-only", "HEAD", "metrics/train/plots").split()
    assert "metrics/train/plots/metrics/eval/accuracy.tsv" in curves
    for path in curves:
        rows = list(csv.DictReader(clone.run("git", "show", f"HEAD:{path}").splitlines(),
                                   delimiter="\t"))
        [plot] = plots["data"][path]
        points = plot["content"]["data"]["values"]
        assert [{k: v for k, v in p.items() if k != "rev"} for p in points
                if p["rev"] == "HEAD"] == rows, path
        assert any(p["rev"] == "workspace" for p in points), path

    (clone.path / "params.yaml").write_text(committed_params, encoding="utf-8")
    output = clone.dvc("repro")
    assert "Stage 'train' is cached - skipping run, checking out outputs" in output, output
    assert "train" not in stages_run(output)
    for path in ["metrics/train/metrics.json", *curves]:
        assert (clone.path / path).read_text() == clone.run("git", "show", f"HEAD:{path}"), path
