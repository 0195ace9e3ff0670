"""End to end: real `dvc repro` / `dvc exp run` in a temporary git repo on a tiny configuration.

Shows the caching contract of dvc.yaml: a second repro runs nothing, and each params change
reruns exactly the stages that read the changed key (and those downstream of a changed output).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["dvc.yaml", "params.yaml", "stages", "models", ".dvc/config", ".dvcignore",
                 ".gitignore"]
ALL_STAGES = {"sample", "crop", "resize", "pack", "split", "train", "evaluate", "report"}

pytestmark = pytest.mark.e2e


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["sample"].update(classes=4, images_per_class=6)
    params["data"]["workers"] = 1
    params["train"].update(model="resnet50", epochs=2, batch_size=8)
    return params


class Repo:
    """A scratch copy of the project as its own git + DVC repo."""

    def __init__(self, path: Path, params: dict):
        self.path = path
        for name in PROJECT_FILES:
            source, target = ROOT / name, path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, target)
        (path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True,
                                                         sort_keys=False))
        self.env = {**os.environ,
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
        self.run("git", "init", "-q", "-b", "main")
        # DVC's own experiment commits read the identity from git config, not the environment.
        self.run("git", "config", "user.name", "test")
        self.run("git", "config", "user.email", "test@example.com")
        self.commit("project")

    def run(self, *args: str) -> str:
        done = subprocess.run(args, cwd=self.path, env=self.env, capture_output=True, text=True)
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
    repo = Repo(tmp_path_factory.mktemp("project"), tiny_params())
    output = repo.dvc("repro")
    assert stages_run(output) == ALL_STAGES, output
    repo.commit("baseline run")
    return repo


def test_second_repro_runs_nothing(repo):
    output = repo.dvc("repro")
    assert stages_run(output) == set(), output
    assert "didn't change, skipping" in output


@pytest.mark.parametrize("change, expected", [
    ("train.loss=categorical", {"train", "evaluate", "report"}),
    ("train.lr=0.01", {"train", "evaluate", "report"}),
    ("resize.size=80", {"resize", "pack", "train", "evaluate", "report"}),
])
def test_experiment_reruns_only_what_the_change_affects(repo, change, expected):
    output = repo.dvc("exp", "run", "-S", change)
    assert stages_run(output) == expected, output
    repo.run("git", "checkout", "-q", "--", ".")  # back to the baseline workspace
    repo.dvc("checkout", "-q")


def test_metrics_and_plots_diff_compare_two_runs(repo):
    repo.dvc("exp", "run", "-n", "categorical", "-S", "train.loss=categorical")
    diff = json.loads(repo.dvc("metrics", "diff", "--json", "--all"))
    scores = diff["metrics/evaluate.json"]["top1_accuracy"]
    assert set(scores) == {"old", "new", "diff"}
    assert all(0.0 <= scores[k] <= 1.0 for k in ("old", "new"))

    repo.dvc("plots", "diff", "HEAD", "categorical", "-o", "plots_html")
    html = (repo.path / "plots_html" / "index.html").read_text(encoding="utf-8")
    # Both revisions' training curves are embedded in the page.
    assert html.count('"rev": "HEAD"') > 0 and html.count('"rev": "categorical"') > 0
    assert "metrics/train/plots/metrics/eval/accuracy.tsv" in html
