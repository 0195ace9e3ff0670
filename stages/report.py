"""report: what a person looks at after a run.

reports/per_class.md (classes sorted by test error rate), reports/per_class_error.png (the same
as a sorted bar chart), reports/most_confused.csv (the true -> predicted pairs seen most often),
reports/confusion.png (the test confusion matrix as a row-normalised heatmap),
reports/misclassified.png (the wrong test crops, most confident first), reports/curves.png
(accuracy and loss per epoch, train vs validation, like the study's graphs) and
reports/report.md, which puts the headline numbers and data-quality counts on one page and
links the rest.
"""

from __future__ import annotations

from inception_pipeline.errors import run
from inception_pipeline.io import load_npy, read_csv, read_json, write_csv, write_text
from inception_pipeline.layout import (
    DATA_METRICS,
    EVALUATE_METRICS,
    IMAGES,
    PER_CLASS,
    PREDICTIONS,
    REPORTS_DIR,
    TRAIN_METRICS,
)
from inception_pipeline.params import load_params
from inception_pipeline.reporting import (
    GALLERY_MAX,
    confusion_counts,
    markdown_table,
    most_confused,
    plot_confusion,
    plot_curves,
    plot_misclassified,
    plot_per_class_error,
    regularisers,
    worst_mistakes,
)


def main() -> None:
    params = load_params()
    per_class = read_csv(PER_CLASS)
    predictions = read_csv(PREDICTIONS)
    scores = read_json(EVALUATE_METRICS)
    quality = read_json(DATA_METRICS)
    train = params["train"]
    best = read_json(TRAIN_METRICS).get("best_epoch")
    early_stop = (f" at most (early stopping, patience {train['patience']}: kept epoch {best})"
                  if train["patience"] else "")

    # Key by key, so that tests/test_layout.py sees which train keys the header names.
    used_regularisers = regularisers(
        weight_decay=train["weight_decay"], ema=train["ema"], flip=train["flip"],
        scale_jitter=train["scale_jitter"],
        color_jitter=train["color_jitter"], mixup=train["mixup"], cutmix=train["cutmix"],
        random_erasing=train["random_erasing"], class_weight=train["class_weight"])

    by_error = sorted(per_class, key=lambda r: (-float(r["error_rate"]), r["class"]))
    write_text(REPORTS_DIR / "per_class.md", "# Test error rate per class, worst first\n\n"
               + markdown_table(by_error))
    confused = most_confused(predictions, params["report"]["top_confusions"])
    write_csv(REPORTS_DIR / "most_confused.csv", ["actual", "predicted", "count"], confused)
    plot_per_class_error(per_class, REPORTS_DIR / "per_class_error.png")
    plot_curves(REPORTS_DIR / "curves.png")
    classes = [row["class"] for row in per_class]  # classes.json's order
    plot_confusion(confusion_counts(predictions, classes), classes, REPORTS_DIR / "confusion.png")
    mistakes = worst_mistakes(predictions)
    plot_misclassified(mistakes[:GALLERY_MAX], load_npy(IMAGES, mmap=True),
                       len(mistakes), REPORTS_DIR / "misclassified.png")
    counts = [{"what": key, "count": value} for key, value in quality.items()
              if not isinstance(value, dict)]
    reasons = [{"reason": reason, "lines": n} for reason, n in quality["rejects_by_reason"].items()]

    write_text(REPORTS_DIR / "report.md", f"""# Run report

{train['model']}, weights {train['weights']}, {train['loss']} cross-entropy, {train['optimizer']}
at lr {train['lr']} ({train['lr_schedule']}, warm-up {train['warmup_epochs']} epochs), batch \
{train['batch_size']}, {train['epochs']} epochs{early_stop}, augmentation \
{'on' if train['augment'] else 'off'}, seed {train['seed']}, trained in \
{scores['train_precision']} and evaluated in {scores['eval_precision']};
regularisers: {used_regularisers}.

Figures: [confusion matrix](confusion.png), [misclassified crops](misclassified.png),
[curves](curves.png), [error rate per class](per_class_error.png); tables:
[per class](per_class.md), [most confused pairs](most_confused.csv).

## Test set ({scores['test_images']} images)

| top-1 accuracy | top-5 accuracy | macro-F1 | categorical CE | binary accuracy (element-wise) |
|---|---|---|---|---|
| {scores['top1_accuracy']:.4f} | {scores['top5_accuracy']:.4f} | {scores['macro_f1']:.4f} | \
{scores['categorical_crossentropy']:.4f} | {scores['binary_accuracy']:.4f} |

Binary accuracy scores every one of the {len(per_class)} outputs of every image as its own yes/no
question, so it is near 1 even for a useless model; top-1 accuracy is the number that counts.

## Data quality (metrics/data.json)

{markdown_table(counts)}
Reject lines by reason (each with its file in metrics/rejects.csv):

{markdown_table(reasons)}
## Curves

![accuracy and loss per epoch](curves.png)

## Confusion matrix

Rows are true classes, normalised to 1; the numbers are counts.

![test confusion matrix](confusion.png)

## Misclassified test crops

{len(mistakes)} of {len(predictions)} test crops are wrong; the {min(len(mistakes), GALLERY_MAX)} \
the model was most confident about are shown, as the model saw them.

![misclassified test crops, most confident first](misclassified.png)

## Per class

Worst classes first: [per_class.md](per_class.md); all figures: metrics/per_class.csv.

![test error rate per class](per_class_error.png)

## Most confused pairs (true -> predicted)

{markdown_table(confused)}""")
    print(f"report: wrote {REPORTS_DIR}/report.md, per_class.md, most_confused.csv, curves.png, "
          f"per_class_error.png, confusion.png, misclassified.png")


if __name__ == "__main__":
    run(main)
