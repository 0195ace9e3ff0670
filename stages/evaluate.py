"""evaluate: the trained model on the test split, which training never saw.

Writes the headline metrics (``scoring``), per-class precision, recall, F1 and error rate
(1 - recall), and one row per test image for DVC's confusion plot.
"""

from __future__ import annotations

from inception_pipeline.errors import PipelineError, run
from inception_pipeline.io import load_npy, read_csv, read_json, write_csv, write_json
from inception_pipeline.layout import (
    CLASSES,
    EVALUATE_METRICS,
    IMAGES,
    ITEMS,
    LABELS,
    MODEL,
    PER_CLASS,
    PREDICTIONS,
    SPLIT_INDICES,
)
from inception_pipeline.params import load_params
from inception_pipeline.runtime import configure_tensorflow
from inception_pipeline.scoring import headline_metrics, per_class_rows


def main() -> None:
    params = load_params()
    configure_tensorflow()

    from inception_pipeline.batches import Batches, NpyRows
    from inception_pipeline.progress import PredictionProgress
    from models import (ModelFileError, class_probabilities, every_layer, load_classifier,
                        trained_precision)

    try:
        model = load_classifier(MODEL)
    except ModelFileError as err:
        raise PipelineError(str(err)) from None
    images = NpyRows(IMAGES)
    labels = load_npy(LABELS)
    classes = read_json(CLASSES)
    items = read_csv(ITEMS)
    test_idx = load_npy(SPLIT_INDICES["test"])

    batches = Batches(images, labels, test_idx, len(classes), params["evaluate"]["batch_size"])
    probs = class_probabilities(model, batches, callbacks=[PredictionProgress(
        "evaluate: predicting", len(test_idx), params["evaluate"]["batch_size"])],
        tta_flip=params["evaluate"]["tta_flip"])
    truth = labels[test_idx]

    # Trained in train.precision as resolved on the training machine; predicted in the policies
    # of the loaded layers (load_classifier's float32).
    policies = sorted({layer.dtype_policy.name for layer in every_layer(model)})
    scores = headline_metrics(probs, truth) | {"train_precision": trained_precision(MODEL),
                                               "eval_precision": "/".join(policies)}
    write_json(EVALUATE_METRICS, scores)
    write_csv(PER_CLASS, ["class", "support", "precision", "recall", "f1", "error_rate"],
              per_class_rows(probs, truth, classes))
    predicted = probs.argmax(axis=1)
    write_csv(PREDICTIONS, ["index", "crop", "actual", "predicted", "confidence"],
              ({"index": int(i), "crop": items[i]["crop"], "actual": classes[truth[k]],
                "predicted": classes[predicted[k]], "confidence": round(float(probs[k].max()), 4)}
               for k, i in enumerate(test_idx)))
    print(f"evaluate: top-1 {scores['top1_accuracy']:.3f}, top-5 {scores['top5_accuracy']:.3f}, "
          f"macro-F1 {scores['macro_f1']:.3f} on {len(test_idx)} test images -> "
          f"{EVALUATE_METRICS}")


if __name__ == "__main__":
    run(main)
