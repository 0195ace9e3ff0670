"""report: what a person looks at after a run.

reports/per_class.md (classes sorted by test error rate), reports/per_class_error.png (the same
as a sorted bar chart), reports/most_confused.csv (the true -> predicted pairs seen most often),
reports/curves.png (accuracy and loss per epoch, train vs validation, like the study's graphs)
and reports/report.md, which puts the headline numbers on one page and links the rest.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure  # the object API: no GUI backend, no global state

from stages.crop import DATA_METRICS
from stages.errors import run
from stages.evaluate import METRICS, PER_CLASS, PREDICTIONS
from stages.io import atomic_path, read_csv, read_json, write_csv, write_text
from stages.params import load_params
from stages.train import LIVE_DIR

OUT_DIR = Path("reports")
CURVES_DIR = LIVE_DIR / "plots" / "metrics"


def most_confused(predictions: list[dict], top: int) -> list[dict]:
    """The ``top`` most frequent (actual, predicted) pairs among the mistakes."""
    pairs = Counter((p["actual"], p["predicted"]) for p in predictions
                    if p["actual"] != p["predicted"])
    return [{"actual": a, "predicted": b, "count": n}
            for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


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


def main() -> None:
    params = load_params()
    per_class = read_csv(PER_CLASS)
    predictions = read_csv(PREDICTIONS)
    scores = read_json(METRICS)
    quality = read_json(DATA_METRICS)
    train = params["train"]

    by_error = sorted(per_class, key=lambda r: (-float(r["error_rate"]), r["class"]))
    write_text(OUT_DIR / "per_class.md", "# Test error rate per class, worst first\n\n"
               + markdown_table(by_error))
    confused = most_confused(predictions, params["report"]["top_confusions"])
    write_csv(OUT_DIR / "most_confused.csv", ["actual", "predicted", "count"], confused)
    plot_per_class_error(per_class, OUT_DIR / "per_class_error.png")
    plot_curves(OUT_DIR / "curves.png")

    write_text(OUT_DIR / "report.md", f"""# Run report

{train['model']}, weights {train['weights']}, {train['loss']} cross-entropy, {train['optimizer']}
at lr {train['lr']} ({train['lr_schedule']}), batch {train['batch_size']}, {train['epochs']} epochs,
augmentation {'on' if train['augment'] else 'off'}, seed {train['seed']}.

## Test set ({scores['test_images']} images)

| top-1 accuracy | top-5 accuracy | macro-F1 | categorical CE | binary accuracy (element-wise) |
|---|---|---|---|---|
| {scores['top1_accuracy']:.4f} | {scores['top5_accuracy']:.4f} | {scores['macro_f1']:.4f} | \
{scores['categorical_crossentropy']:.4f} | {scores['binary_accuracy']:.4f} |

Binary accuracy scores every one of the {len(per_class)} outputs of every image as its own yes/no
question, so it is near 1 even for a useless model; top-1 accuracy is the number that counts.

## Data

{quality['files_found']} files found, {quality['files_accepted']} accepted, \
{quality['files_rejected']} rejected, {quality['crops']} crops; rejects by reason: \
{quality['rejects_by_reason'] or 'none'} (full list: metrics/rejects.csv).

## Curves

![accuracy and loss per epoch](curves.png)

## Per class

Worst classes first: [per_class.md](per_class.md); all figures: metrics/per_class.csv.

![test error rate per class](per_class_error.png)

## Most confused pairs (true -> predicted)

{markdown_table(confused)}""")
    print(f"report: wrote {OUT_DIR}/report.md, per_class.md, most_confused.csv, curves.png, "
          f"per_class_error.png")


if __name__ == "__main__":
    run(main)
