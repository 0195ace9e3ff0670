"""split: stratified train/val/test indices into images.npy, by ``split.*`` ratios and seed.

Indices, not copies of pixels. Within each class the items are shuffled with the seed, then
``round(n * ratio)`` go to val and to test (at least one each), the rest to train, so every
class appears in every split in the same proportions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.errors import PipelineError, run
from stages.io import load_npy, read_json, save_npy
from stages.pack import OUT_DIR as PACKED_DIR
from stages.params import load_params

OUT_DIR = Path("data/split")
SPLITS = ("train", "val", "test")
MIN_PER_CLASS = 3  # one item each for train, val and test


class ClassTooSmall(ValueError):
    def __init__(self, label: int, count: int):
        super().__init__(f"class {label} has {count} item(s), fewer than {MIN_PER_CLASS}")
        self.label, self.count = label, count


def stratified_split(labels: np.ndarray, val: float, test: float, seed: int
                     ) -> dict[str, np.ndarray]:
    """Sorted index arrays per split; raises ClassTooSmall for a class of under 3 items."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < MIN_PER_CLASS:
            raise ClassTooSmall(int(label), len(members))
        members = rng.permutation(members)
        n_val = max(1, round(len(members) * val))
        n_test = max(1, round(len(members) * test))
        n_val, n_test = (min(n, len(members) - 2) for n in (n_val, n_test))
        parts["val"].append(members[:n_val])
        parts["test"].append(members[n_val:n_val + n_test])
        parts["train"].append(members[n_val + n_test:])
    return {name: np.sort(np.concatenate(chunks)).astype(np.int64)
            for name, chunks in parts.items()}


def main() -> None:
    cfg = load_params()["split"]
    labels = load_npy(PACKED_DIR / "labels.npy")
    try:
        splits = stratified_split(labels, cfg["val"], cfg["test"], cfg["seed"])
    except ClassTooSmall as err:
        name = read_json(PACKED_DIR / "classes.json")[err.label]
        raise PipelineError(f"class {name!r} has {err.count} crop(s); stratified train/val/test "
                            f"needs at least {MIN_PER_CLASS} per class") from None
    for name, indices in splits.items():
        save_npy(OUT_DIR / f"{name}.npy", indices)
    print("split: " + ", ".join(f"{name} {len(idx)}" for name, idx in splits.items())
          + f" -> {OUT_DIR}/")


if __name__ == "__main__":
    run(main)
