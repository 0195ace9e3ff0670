"""End to end: real `dvc repro` / `dvc exp run` in a temporary git repo on a tiny configuration.

Shows the caching contract of dvc.yaml: a second repro runs nothing, and each params change
reruns exactly the stages that read the changed key (and those downstream of a changed output).
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["dvc.yaml", "params.yaml", "stages", "inception_pipeline", "models", ".dvc/config",
                 ".dvcignore", ".gitignore", "plots_offline"]
ALL_STAGES = {"sample", "crop", "resize", "pack", "split", "train", "evaluate", "report"}

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
        for name in PROJECT_FILES:
            source, target = ROOT / name, path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, target)
        (path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True,
                                                         sort_keys=False))
        repo = cls(path)
        repo.run("git", "init", "-q", "-b", "main")
        # DVC's own experiment commits read the identity from git config, not the environment.
        repo.run("git", "config", "user.name", "test")
        repo.run("git", "config", "user.email", "test@example.com")
        repo.commit("project")
        return repo

    def run(self, *args: str) -> str:
        done = subprocess.run(args, cwd=self.path, env=self.env, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def dvc(self, *args: str) -> str:
        return self.run(str(Path(sys.executable).parent / "dvc"), *args)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    repo = Repo.project(tmp_path_factory.mktemp("project"), tiny_params())
    output = repo.dvc("repro")
    assert stages_run(output) == ALL_STAGES, output
    repo.commit("baseline run")
    return repo


def test_second_repro_runs_nothing(repo):
    output = repo.dvc("repro")
    assert stages_run(output) == set(), output
    assert "didn't change, skipping" in output


@pytest.mark.parametrize("change, expected", [
    ("train.lr=0.01", {"train", "evaluate", "report"}),
    ("resize.size=80", {"resize", "pack", "train", "evaluate", "report"}),
])
def test_experiment_reruns_only_what_the_change_affects(repo, change, expected):
    output = repo.dvc("exp", "run", "-S", change)
    assert stages_run(output) == expected, output
    repo.run("git", "checkout", "-q", "--", ".")  # back to the baseline workspace
    repo.dvc("checkout", "-q")


def curve(repo: Repo, split: str, name: str) -> list[tuple[int, float]]:
    path = repo.path / "metrics/train/plots/metrics" / split / f"{name}.tsv"
    with open(path, newline="") as f:
        return [(int(row["step"]), float(row[name])) for row in csv.DictReader(f, delimiter="\t")]


def test_killed_training_resumes_from_its_last_epoch(repo):
    """SIGKILL the whole `dvc repro` mid-training; the next `dvc repro` carries on from the last
    completed epoch, and ends exactly where an uninterrupted run of the same settings ends."""
    epochs = 6
    params = yaml.safe_load((repo.path / "params.yaml").read_text(encoding="utf-8"))
    params["train"]["epochs"] = epochs
    (repo.path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True,
                                                          sort_keys=False))
    checkpoints = repo.path / ".checkpoints/train"
    victim = subprocess.Popen([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=repo.path,
                              env=repo.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        while not list(checkpoints.glob("epoch-0002")) and victim.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    assert victim.returncode == -signal.SIGKILL, "training finished before it could be killed"
    saved = max(int(p.name.split("-")[1]) for p in checkpoints.glob("epoch-*"))
    assert 2 <= saved < epochs

    output = repo.dvc("repro")
    assert f"resuming after epoch {saved}" in output, output
    assert not checkpoints.exists()  # a completed run removes its checkpoint
    resumed = {split: curve(repo, split, "loss") for split in ("train", "eval")}
    assert [step for step, _ in resumed["train"]] == list(range(epochs))
    assert [step for step, _ in resumed["eval"]] == list(range(epochs))

    repo.dvc("repro", "--force", "train")  # the same settings, never interrupted
    assert {split: curve(repo, split, "loss") for split in ("train", "eval")} == resumed
    repo.run("git", "checkout", "-q", "--", ".")
    repo.dvc("checkout", "-q")


# The networks whose outputs take their own paths through train, evaluate and report: GoogLeNet's
# auxiliary heads, and a network of this project's own layers (evaluate reloads it in safe mode).
# That every network builds and trains is tests/test_models.py's; tracing all five here cost
# about a quarter of the suite's time.
QUEUED_NETWORKS = ["googlenet", "inception_resnet_v1"]


def test_other_networks_run_from_the_queue_two_at_a_time(repo):
    """`dvc exp run --queue -S train.model=NAME`, run by two queue workers at once
    (`dvc queue start -j 2`): each finishes with its own, separate results."""
    names = QUEUED_NETWORKS
    assert tiny_params()["train"]["model"] not in names
    for name in names:
        repo.dvc("exp", "run", "--queue", "-n", f"net-{name}", "-S", f"train.model={name}")
    repo.dvc("queue", "start", "-j", "2")
    deadline = time.monotonic() + 1800
    while re.search(r"\b(Queued|Running)\b", status := repo.dvc("queue", "status")):
        assert time.monotonic() < deadline, status
        time.sleep(5)
    assert len(re.findall(r"\bSuccess\b", status)) == len(names), status

    results = {}
    for baseline_row in json.loads(repo.dvc("exp", "show", "--json")):
        for experiment in baseline_row.get("experiments") or []:
            run = experiment["revs"][0]
            if (run.get("name") or "").startswith("net-"):
                data = run["data"]
                results[run["name"]] = (
                    data["params"]["params.yaml"]["data"]["train"]["model"],
                    data["metrics"]["metrics/evaluate.json"]["data"],
                    data["metrics"]["metrics/train/metrics.json"]["data"])
    assert set(results) == {f"net-{name}" for name in names}
    for name in names:
        model, scores, train = results[f"net-{name}"]
        assert model == name
        assert scores["test_images"] > 0 and 0.0 <= scores["top1_accuracy"] <= 1.0
        assert train["step"] == tiny_params()["train"]["epochs"] - 1
    # Separate runs, not one result copied around: the networks' losses differ.
    assert len({scores["categorical_crossentropy"] for _, scores, _ in results.values()}
               ) == len(names)


def test_teammate_pulls_results_from_a_remote_without_recomputing(repo, tmp_path):
    """`dvc push` to a shared remote (a local folder here; S3, GCS or SSH work alike), then a
    fresh clone does `dvc pull` and finds every stage up to date."""
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
