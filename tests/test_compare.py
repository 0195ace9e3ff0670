"""inception-compare: the paired difference of two runs' test top-1, read from git revisions."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inception_pipeline import compare, statistics
from inception_pipeline.errors import PipelineError
from inception_pipeline.layout import PREDICTIONS


def rows(outcomes: str) -> list[dict]:
    """Prediction rows, one per character: "1" right, "0" wrong."""
    return [{"crop": f"c{i:03d}.png", "actual": "0", "predicted": "0" if hit == "1" else "1"}
            for i, hit in enumerate(outcomes)]


def test_correct_by_crop_compares_true_and_predicted_class():
    assert compare.correct_by_crop(rows("101")) == {"c000.png": True, "c001.png": False,
                                                    "c002.png": True}


def test_pairs_follow_the_crop_not_the_row_order():
    base = compare.correct_by_crop(rows("1100"))
    other = dict(reversed(list(compare.correct_by_crop(rows("1010")).items())))
    a, b = compare.paired(base, other, ("a", "b"))
    assert a.tolist() == [1, 1, 0, 0] and b.tolist() == [1, 0, 1, 0]


def test_runs_on_different_crops_are_refused():
    with pytest.raises(PipelineError, match="a and b were tested on different crops"):
        compare.paired(compare.correct_by_crop(rows("11")),
                       compare.correct_by_crop(rows("111")), ("a", "b"))


def test_identical_runs_differ_by_exactly_zero():
    a = np.array([[1, 0, 1, 1, 0]], dtype=float)
    result = statistics.over_seeds_and_crops(a, a.copy())
    assert (result["difference"], result["interval"]) == (0.0, [0.0, 0.0])


def test_a_large_gain_is_called_and_a_small_one_is_not():
    rng = np.random.default_rng(1)
    weak = (rng.random(400) < 0.5).astype(float)
    strong = np.maximum(weak, rng.random(400) < 0.6)  # fixes most of weak's errors
    result = statistics.over_seeds_and_crops(weak[None], strong[None])
    low, high = result["interval"]
    assert low > 0 and low < result["difference"] < high and result["verdict"] == "better"
    one_more = weak.copy()
    one_more[np.flatnonzero(weak == 0)[0]] = 1  # a single crop more: noise at n=400
    low, high = statistics.over_seeds_and_crops(weak[None], one_more[None])["interval"]
    assert low <= 0 <= high


def test_accuracy_interval_brackets_the_accuracy():
    correct = (np.random.default_rng(2).random(300) < 0.8).astype(float)
    low, high = compare.accuracy_interval(correct)
    assert low < correct.mean() < high
    assert high - low < 0.12  # about 4 standard errors of a proportion at n=300


def write_predictions(path: Path, outcomes: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["index", "crop", "actual", "predicted", "confidence"])
        writer.writeheader()
        writer.writerows({"index": i, **row, "confidence": 0.9}
                         for i, row in enumerate(rows(outcomes)))


def test_cli_reads_each_revision_from_git(in_tmp, capsys):
    def git(*args):
        subprocess.run(["git", *args], check=True, capture_output=True, timeout=60)

    git("init", "-q", "-b", "main")
    git("config", "user.name", "test")
    git("config", "user.email", "test@example.com")
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], check=True,
                   timeout=120)
    for tag, outcomes in (("weak", "10" * 100), ("strong", "1" * 190 + "0" * 10)):
        write_predictions(in_tmp / PREDICTIONS, outcomes)
        git("add", "-A")
        git("commit", "-q", "-m", tag)
        git("tag", tag)
    compare.main(["weak", "strong", "--json"])
    [result] = json.loads(capsys.readouterr().out)
    assert (result["baseline_top1"], result["other_top1"]) == (0.5, 0.95)
    assert result["verdict"] == "better" and result["difference_95"][0] > 0.3
    with pytest.raises(PipelineError, match="no-such-rev: cannot read"):
        compare.main(["weak", "no-such-rev"])
