"""Stratified train/val/test indices, every source picture whole in one split.

Crops are grouped by their source's content (SHA-256): all crops of one photo, and of every copy
of it, land in the same split, so test never shares a picture with train. Within each class the
groups are shuffled with the seed and dealt until val and test each hold ``round(n * ratio)`` of
its n crops (at least one group each), the rest to train, so every class appears in every split
in about the same proportions.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

SPLITS = ("train", "val", "test")


MIN_PER_CLASS = 3  # source images: one each for train, val and test


class ClassTooSmall(ValueError):
    def __init__(self, label: int, count: int):
        super().__init__(f"class {label} has {count} source image(s), fewer than "
                         f"{MIN_PER_CLASS}")
        self.label, self.count = label, count


def content_groups(items: list[dict]) -> np.ndarray:
    """One group number per item (items.csv row): equal for equal source_sha256."""
    return np.unique([row["source_sha256"] for row in items], return_inverse=True)[1]


def small_classes(labels: np.ndarray, groups: np.ndarray) -> dict[int, int]:
    """Classes with fewer than MIN_PER_CLASS distinct source images, and how many they have."""
    counts = {int(label): len(np.unique(groups[labels == label])) for label in np.unique(labels)}
    return {label: count for label, count in counts.items() if count < MIN_PER_CLASS}


def stratified_split(labels: np.ndarray, groups: np.ndarray, val: float, test: float, seed: int
                     ) -> dict[str, np.ndarray]:
    """Sorted index arrays per split, every group whole in one split.

    A group spanning classes (the same picture in two folders) is dealt with the first of its
    classes and counts for the others (so a class with few groups of its own may then miss a
    split). A split still without the class takes the next group once no more groups remain
    than such splits. Raises ClassTooSmall for a class of fewer than 3 groups.
    """
    rng = np.random.default_rng(seed)
    items_of: dict[int, list[int]] = defaultdict(list)
    for index, group in enumerate(groups.tolist()):
        items_of[group].append(index)
    split_of = np.full(len(labels), -1)  # position in SPLITS, -1 until dealt
    for label in np.unique(labels):
        members = labels == label
        class_groups = np.unique(groups[members])
        if len(class_groups) < MIN_PER_CLASS:
            raise ClassTooSmall(int(label), len(class_groups))
        n = int(members.sum())
        wanted = {"val": max(1, round(n * val)), "test": max(1, round(n * test))}
        count = Counter(SPLITS[i] for i in split_of[members & (split_of >= 0)])
        todo = rng.permutation([g for g in class_groups if split_of[items_of[g][0]] < 0])
        for left, group in zip(range(len(todo), 0, -1), todo, strict=True):
            empty = [name for name in ("val", "test", "train") if count[name] == 0]
            if len(empty) >= left:
                name = empty[0]
            else:
                name = next((s for s in ("val", "test") if count[s] < wanted[s]), "train")
            items = items_of[group]
            split_of[items] = SPLITS.index(name)
            count[name] += np.count_nonzero(labels[items] == label)
    return {name: np.flatnonzero(split_of == i).astype(np.int64) for i, name in enumerate(SPLITS)}
