"""Test-set scores from predicted class probabilities: the headline metrics and per-class rows.

Top-1 accuracy is the argmax against the true class; top-5, macro-F1 and both cross-entropies
come from the same predicted probabilities.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

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


def per_class_rows(probs: np.ndarray, truth: np.ndarray, classes: list[str]) -> list[dict]:
    predicted = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=range(len(classes)), zero_division=0)
    return [{"class": name, "support": int(support[i]), "precision": round(float(precision[i]), 4),
             "recall": round(float(recall[i]), 4), "f1": round(float(f1[i]), 4),
             "error_rate": round(1 - float(recall[i]), 4)}
            for i, name in enumerate(classes)]
