"""inception-compare: is one run's test top-1 really better than another's, on these crops?

    inception-compare BASELINE OTHER [OTHER ...] [--json]

Each argument is a git revision or a DVC experiment name (`dvc exp show` lists them); its
plots/predictions.csv (kept in git by the evaluate stage) gives which test crops it got right.
Runs on the same split classify the same crops, so the difference in top-1 is paired crop by
crop: the one-seed case of inception-claims' procedure (inception_pipeline/statistics.py), a
Student's t interval over the crops. A difference is called one only when its 95% interval
leaves out zero. It says nothing about seed-to-seed spread: for that, the runs of several
seeds (inception-claims).
"""

from __future__ import annotations

import argparse
import csv
import io
import json

import numpy as np

from inception_pipeline.errors import PipelineError, run
from inception_pipeline.statistics import over_seeds_and_crops
from inception_pipeline.layout import PREDICTIONS


def correct_by_crop(rows: list[dict]) -> dict[str, bool]:
    """Each test crop (by its path) and whether the run's top-1 was its true class."""
    return {row["crop"]: row["actual"] == row["predicted"] for row in rows}


def paired(baseline: dict[str, bool], other: dict[str, bool], names: tuple[str, str]
           ) -> tuple[np.ndarray, np.ndarray]:
    """The two runs' correctness on the same crops, in one order; runs on different test sets
    cannot be paired."""
    if baseline.keys() != other.keys():
        only = len(baseline.keys() - other.keys()), len(other.keys() - baseline.keys())
        raise PipelineError(f"{names[0]} and {names[1]} were tested on different crops ({only[0]} "
                            f"only in the first, {only[1]} only in the second): compare runs "
                            f"with the same data and split params")
    crops = sorted(baseline)
    return (np.array([baseline[c] for c in crops], dtype=float),
            np.array([other[c] for c in crops], dtype=float))


def accuracy_interval(correct: np.ndarray) -> list[float]:
    """95% interval of one run's top-1 over its test crops."""
    return over_seeds_and_crops(np.zeros((1, len(correct))), correct[None, :])["interval"]


def read_predictions(rev: str) -> list[dict]:
    import dvc.api
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    try:
        text = dvc.api.read(str(PREDICTIONS), rev=rev)
    except (DvcException, SCMError, FileNotFoundError) as err:
        raise PipelineError(f"{rev}: cannot read its {PREDICTIONS} ({err})") from None
    return list(csv.DictReader(io.StringIO(text)))


def compare(baseline: str, others: list[str]) -> list[dict]:
    base = correct_by_crop(read_predictions(baseline))
    results = []
    for other in others:
        a, b = paired(base, correct_by_crop(read_predictions(other)), (baseline, other))
        difference = over_seeds_and_crops(a[None, :], b[None, :])
        results.append({
            "baseline": baseline, "other": other, "test_crops": len(a),
            "baseline_top1": a.mean(), "baseline_top1_95": accuracy_interval(a),
            "other_top1": b.mean(), "other_top1_95": accuracy_interval(b),
            "difference": difference["difference"], "difference_95": difference["interval"],
            "verdict": difference["verdict"],
        })
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inception-compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="git revision or experiment name")
    parser.add_argument("others", nargs="+", metavar="other")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    results = compare(args.baseline, args.others)
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        print(f"{r['other']} vs {r['baseline']} on {r['test_crops']} test crops: top-1 "
              f"{r['other_top1']:.3f} [{r['other_top1_95'][0]:.3f}, {r['other_top1_95'][1]:.3f}]"
              f" vs {r['baseline_top1']:.3f} [{r['baseline_top1_95'][0]:.3f}, "
              f"{r['baseline_top1_95'][1]:.3f}]; difference {r['difference']:+.3f} "
              f"[{r['difference_95'][0]:+.3f}, {r['difference_95'][1]:+.3f}]: {r['verdict']}")


def cli() -> None:
    """The ``inception-compare`` console script."""
    run(main)


if __name__ == "__main__":
    cli()
