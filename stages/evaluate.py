"""evaluate: the trained model on the test split, which training never saw.

Top-1 accuracy is the argmax against the true class; top-5, macro-F1 and both cross-entropies
come from the same predicted probabilities. Writes the headline metrics, per-class precision,
recall, F1 and error rate (1 - recall), and one row per test image for DVC's confusion plot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from stages.errors import run
from stages.io import load_npy, read_csv, read_json, write_csv, write_json
from stages.pack import OUT_DIR as PACKED_DIR
from stages.params import load_params
from stages.split import OUT_DIR as SPLIT_DIR
from stages.train import MODEL_PATH

METRICS = Path("metrics/evaluate.json")
PER_CLASS = Path("metrics/per_class.csv")
PREDICTIONS = Path("plots/predictions.csv")
EPS = 1e-7  # probabilities are clipped as Keras' cross-entropies clip them


def headline_metrics(probs: np.ndarray, truth: np.ndarray) -> dict:
    """Test-set scores from predicted class probabilities (N, C) and true class indices (N,)."""
    n, num_classes = probs.shape
    predicted = probs.argmax(axis=1)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    one_hot = np.eye(num_classes)[truth]
    clipped = np.clip(probs, EPS, 1 - EPS)
    return {
        "top1_accuracy": float((predicted == truth).mean()),
        "top5_accuracy": float((top5 == truth[:, None]).any(axis=1).mean()),
        "macro_f1": float(f1_score(truth, predicted, labels=range(num_classes), average="macro",
                                   zero_division=0)),
        "categorical_crossentropy": float(-np.log(clipped[np.arange(n), truth]).mean()),
        "binary_crossentropy": float(-(one_hot * np.log(clipped)
                                       + (1 - one_hot) * np.log(1 - clipped)).mean()),
        # Element-wise, as old Keras' "accuracy" for binary cross-entropy: near 1 for any model.
        "binary_accuracy": float(((probs > 0.5) == one_hot).mean()),
        "test_images": int(n),
    }


def class_probabilities(model, inputs) -> np.ndarray:
    """The main head's class probabilities (N, C) for ``inputs`` (an array or batches), as
    float64; GoogLeNet's auxiliary heads are training aids, never evaluated or used."""
    probs = model.predict(inputs, verbose=0)
    if isinstance(probs, list):
        probs = probs[model.output_names.index("predictions")]
    return probs.astype(np.float64)


def per_class_rows(probs: np.ndarray, truth: np.ndarray, classes: list[str]) -> list[dict]:
    predicted = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=range(len(classes)), zero_division=0)
    return [{"class": name, "support": int(support[i]), "precision": round(float(precision[i]), 4),
             "recall": round(float(recall[i]), 4), "f1": round(float(f1[i]), 4),
             "error_rate": round(1 - float(recall[i]), 4)}
            for i, name in enumerate(classes)]


def main() -> None:
    params = load_params()

    from models import load_classifier
    from stages.training import Batches, NpyRows

    images = NpyRows(PACKED_DIR / "images.npy")
    labels = load_npy(PACKED_DIR / "labels.npy")
    classes = read_json(PACKED_DIR / "classes.json")
    items = read_csv(PACKED_DIR / "items.csv")
    test_idx = load_npy(SPLIT_DIR / "test.npy")

    model = load_classifier(MODEL_PATH)
    batches = Batches(images, labels, test_idx, len(classes), params["evaluate"]["batch_size"])
    probs = class_probabilities(model, batches)
    truth = labels[test_idx]

    scores = headline_metrics(probs, truth)
    write_json(METRICS, scores)
    write_csv(PER_CLASS, ["class", "support", "precision", "recall", "f1", "error_rate"],
              per_class_rows(probs, truth, classes))
    predicted = probs.argmax(axis=1)
    write_csv(PREDICTIONS, ["index", "crop", "actual", "predicted", "confidence"],
              ({"index": int(i), "crop": items[i]["crop"], "actual": classes[truth[k]],
                "predicted": classes[predicted[k]], "confidence": round(float(probs[k].max()), 4)}
               for k, i in enumerate(test_idx)))
    print(f"evaluate: top-1 {scores['top1_accuracy']:.3f}, top-5 {scores['top5_accuracy']:.3f}, "
          f"macro-F1 {scores['macro_f1']:.3f} on {len(test_idx)} test images -> {METRICS}")


if __name__ == "__main__":
    run(main)
