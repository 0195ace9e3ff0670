import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test from an empty folder, as DVC runs a stage from the project root."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
