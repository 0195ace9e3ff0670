import os
import shutil
from pathlib import Path

import pytest
import yaml

from inception_pipeline.images import configure_decoders
from inception_pipeline.runtime import configure_tensorflow

ROOT = Path(__file__).resolve().parents[1]
# The tests' own TensorFlow and image decoders run as the stages' do.
configure_tensorflow()
configure_decoders()
# What a checkout of the project holds for its stages to run (the train stage fingerprints its
# checkpoints with the code dvc.yaml lists, so it runs in a checkout, not from the package).
PROJECT_FILES = ["dvc.yaml", "params.yaml", "stages", "inception_pipeline", "models", ".dvc/config",
                 ".dvcignore", ".gitignore", "plots_offline"]


def copy_project(path: Path) -> Path:
    """This project's files (PROJECT_FILES) copied into ``path``, as a fresh checkout has them."""
    for name in PROJECT_FILES:
        source, target = ROOT / name, path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    return path


@pytest.fixture
def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test from an empty folder, as DVC runs a stage from the project root."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def baseline(tmp_path_factory):
    """tests/test_e2e.py's tiny project after a full `dvc repro`, committed: built once for the
    session (it is the suite's most expensive set-up), and shared by the test processes of
    `pytest -n` through their common scratch folder: the first to need it builds it while the
    others wait. Read only: a test that changes the project or runs dvc in it works on
    ``project_copy``."""
    from filelock import FileLock

    from tests.test_e2e import ALL_STAGES, Repo, stages_run, tiny_params

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's folder sits in the run's own
        shared = shared.parent
    path, built = shared / "baseline", shared / "baseline.built"
    with FileLock(shared / "baseline.lock", timeout=1800):
        if not built.exists():
            shutil.rmtree(path, ignore_errors=True)  # a build that failed halfway
            path.mkdir()
            repo = Repo.project(path, tiny_params())
            output = repo.dvc("repro")
            assert stages_run(output) == ALL_STAGES, output
            repo.commit("baseline run")
            built.touch()
    return Repo(path)


def _link_or_copy(source: str, target: str) -> None:
    # DVC never writes a cache file in place (it writes a new file and renames it), so copies
    # can share them; workspace files are copied, as `dvc checkout` may rewrite them.
    if f"{os.sep}.dvc{os.sep}cache{os.sep}" in source:
        os.link(source, target)
    else:
        shutil.copy2(source, target)


@pytest.fixture
def project_copy(baseline, tmp_path):
    """A copy of ``baseline`` of the test's own (git history, workspace, DVC cache), so that a
    test's changes, or its failure halfway, never reach the next test."""
    from tests.test_e2e import Repo

    path = tmp_path / "project"
    # .dvc/tmp holds locks and path-keyed state: the copy makes its own.
    shutil.copytree(baseline.path, path, symlinks=True, copy_function=_link_or_copy,
                    ignore=lambda folder, _: ["tmp"] if folder.endswith(f"{os.sep}.dvc") else [])
    return Repo(path)
