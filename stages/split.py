"""split: stratified train/val/test indices into images.npy, by ``split.*`` ratios and seed.

Indices, not copies of pixels; every source picture whole in one split (``splitting``).
"""

from __future__ import annotations

import numpy as np

from inception_pipeline.errors import PipelineError, run
from inception_pipeline.io import load_npy, read_csv, read_json, save_npy, write_json
from inception_pipeline.layout import (
    CLASSES,
    ITEMS,
    LABELS,
    PACKED_DIR,
    SPLIT_DIR,
    SPLIT_INDICES,
    SPLIT_METRICS,
)
from inception_pipeline.params import load_params
from inception_pipeline.splitting import (
    MIN_PER_CLASS,
    content_groups,
    small_classes,
    stratified_split,
)


def main() -> None:
    cfg = load_params()["split"]
    labels = load_npy(LABELS)
    classes = read_json(CLASSES)
    items = read_csv(ITEMS)
    if len(items) != len(labels):
        raise PipelineError(f"{PACKED_DIR}: items.csv has {len(items)} rows but labels.npy "
                            f"{len(labels)}; rerun pack")
    groups = content_groups(items)
    small = small_classes(labels, groups)
    if small and cfg["too_few"] == "error":
        raise PipelineError(
            "; ".join(f"class {classes[c]!r} has {n} source image(s)" for c, n in small.items())
            + f": stratified train/val/test needs at least {MIN_PER_CLASS} per class "
              f"(split.too_few=drop leaves such classes out)")
    kept = np.flatnonzero(~np.isin(labels, list(small)))
    if not kept.size:
        raise PipelineError(f"every class has fewer than {MIN_PER_CLASS} source images")
    splits = {name: kept[indices] for name, indices in
              stratified_split(labels[kept], groups[kept], cfg["val"], cfg["test"],
                               cfg["seed"]).items()}
    dropped = {classes[c]: int(np.count_nonzero(labels == c)) for c in small}
    for name, indices in splits.items():
        save_npy(SPLIT_INDICES[name], indices)
    write_json(SPLIT_METRICS, {**{name: len(idx) for name, idx in splits.items()},
                               "dropped_classes": dropped})
    left_out = ", ".join(f"{name!r} ({count} crops)" for name, count in dropped.items())
    print("split: " + ", ".join(f"{name} {len(idx)}" for name, idx in splits.items())
          + f" -> {SPLIT_DIR}/" + (f"; left out (split.too_few=drop): {left_out}, listed in "
                                 f"{SPLIT_METRICS}" if dropped else ""))


if __name__ == "__main__":
    run(main)
