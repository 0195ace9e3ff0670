"""The report stage's tables and figures (matplotlib's object API: no GUI backend, no global
state)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from inception_pipeline.io import atomic_path
from inception_pipeline.layout import CURVES_DIR

GALLERY_MAX = 36  # misclassified crops shown: six rows of six
# The train keys of the regularisers that take a strength (0: off), as the report names them.
REGULARISERS = {"weight_decay": "weight decay", "ema": "weight EMA",
                "scale_jitter": "scale jitter", "color_jitter": "colour jitter",
                "mixup": "MixUp", "cutmix": "CutMix", "random_erasing": "random erasing"}


def regularisers(*, flip: bool, class_weight: str, **strengths: float) -> str:
    """The run's regularisers with their settings ("none" when all are off), for the header:
    ``flip``, ``class_weight`` and each of REGULARISERS' keys as a keyword."""
    used = ["flips"] if flip else []
    used += [f"{name} {strengths[key]}" for key, name in REGULARISERS.items() if strengths[key]]
    if class_weight != "none":
        used.append(f"{class_weight} class weights")
    return ", ".join(used) or "none"


def most_confused(predictions: list[dict], top: int) -> list[dict]:
    """The ``top`` most frequent (actual, predicted) pairs among the mistakes."""
    pairs = Counter((p["actual"], p["predicted"]) for p in predictions
                    if p["actual"] != p["predicted"])
    return [{"actual": a, "predicted": b, "count": n}
            for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


def confusion_counts(predictions: list[dict], classes: list[str]) -> np.ndarray:
    """Test crops per (true class row, predicted class column), rows and columns in ``classes``
    order, so that classes the test set lacks still get their (empty) row and column."""
    position = {name: i for i, name in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for p in predictions:
        counts[position[p["actual"]], position[p["predicted"]]] += 1
    return counts


def worst_mistakes(predictions: list[dict]) -> list[dict]:
    """The wrong predictions, the most confident (the worst) first."""
    wrong = [p for p in predictions if p["actual"] != p["predicted"]]
    return sorted(wrong, key=lambda p: (-float(p["confidence"]), int(p["index"])))


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(none)\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row[k]) for k in head) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def read_curve(split: str, name: str) -> pd.DataFrame | None:
    path = CURVES_DIR / split / f"{name}.tsv"
    return pd.read_csv(path, sep="\t") if path.exists() else None


def save_figure(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


# (DVCLive metric, panel, colour, legend name); binary accuracy faded, as the misleading one.
CURVES = (("accuracy", 0, "C0", "top-1 accuracy"), ("binary_accuracy", 0, "C3", "binary accuracy"),
          ("loss", 1, "C0", "loss"))


def plot_curves(path: Path) -> None:
    """Top-1 accuracy and loss per epoch, train (solid) vs validation (dashed)."""
    fig = Figure(figsize=(12, 4.5))
    acc_ax, loss_ax = axes = fig.subplots(1, 2)
    for split, style, split_name in (("train", "-", "train"), ("eval", "--", "validation")):
        for metric, panel, colour, name in CURVES:
            curve = read_curve(split, metric)
            if curve is not None:
                axes[panel].plot(curve["step"] + 1, curve[metric], style, color=colour,
                                 alpha=0.5 if metric == "binary_accuracy" else 1.0,
                                 label=f"{name} ({split_name})", marker="o", markersize=3)
    acc_ax.set(title="Accuracy", xlabel="epoch", ylim=(0, 1.02))
    loss_ax.set(title="Loss (the training loss)", xlabel="epoch")
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_per_class_error(rows: list[dict], path: Path) -> None:
    rows = sorted(rows, key=lambda r: float(r["error_rate"]))
    fig = Figure(figsize=(7, max(4, 0.22 * len(rows))))
    ax = fig.subplots()
    ax.barh([r["class"] for r in rows], [float(r["error_rate"]) for r in rows], color="C3")
    ax.set(title="Test error rate per class (1 - recall)", xlabel="error rate", xlim=(0, 1))
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


def plot_confusion(counts: np.ndarray, classes: list[str], path: Path) -> None:
    """Each row shows where one true class's test crops went, as shares (colour) and counts
    (numbers); the figure grows with the classes so that 51 names stay readable."""
    n = len(classes)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = max(6.0, 0.3 * n + 2)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    cells = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(cells, ax=ax, fraction=0.04, pad=0.02, label="share of the true class's crops")
    ax.set_xticks(range(n), classes, rotation=90, fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.85", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"Test confusion matrix ({counts.sum()} crops): rows normalised, "
                 f"numbers are counts")
    for (row, col), count in np.ndenumerate(counts):
        if count:
            ax.text(col, row, count, ha="center", va="center", fontsize=7 if n > 25 else 9,
                    color="white" if shares[row, col] > 0.6 else "black")
    save_figure(fig, path)


def plot_misclassified(mistakes: list[dict], images: np.ndarray, wrong: int, path: Path
                       ) -> None:
    """The crops the model got wrong, as it saw them, with the true and predicted label under
    each; ``wrong`` is how many there were in all."""
    columns = 6
    rows = max(1, math.ceil(len(mistakes) / columns))
    fig = Figure(figsize=(columns * 1.6, rows * 1.9 + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    fig.suptitle(f"Misclassified test crops, most confident first ({len(mistakes)} of {wrong})"
                 if mistakes else "No misclassified test crops")
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, mistake in zip(axes.flat, mistakes, strict=False):  # the last row may be short
        ax.set_axis_on()
        ax.set(xticks=[], yticks=[])
        ax.imshow(images[int(mistake["index"])], interpolation="nearest")
        ax.set_xlabel(f"true: {mistake['actual']}\npredicted: {mistake['predicted']} "
                      f"({float(mistake['confidence']):.2f})", fontsize=8)
    save_figure(fig, path)
