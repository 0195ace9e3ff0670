"""Pure logic of train, evaluate, export and report: batches, losses, metrics, the report tables
and the export's settings."""

import os

import numpy as np
import pytest
from PIL import Image

from inception_pipeline.export import CATCH_ERRORS, _one_graph_through_tf2onnx_passes
from inception_pipeline.reporting import (
    confusion_counts,
    markdown_table,
    most_confused,
    plot_confusion,
    plot_misclassified,
    worst_mistakes,
)
from inception_pipeline.scoring import headline_metrics, per_class_rows


def test_perfect_and_uniform_predictions_score_as_expected():
    truth = np.array([0, 1, 2, 2])
    perfect = np.eye(3)[truth]
    scores = headline_metrics(perfect, truth)
    assert scores["top1_accuracy"] == scores["macro_f1"] == scores["top5_accuracy"] == 1.0
    assert scores["categorical_crossentropy"] < 1e-6
    uniform = np.full((4, 3), 1 / 3)
    scores = headline_metrics(uniform, truth)
    assert scores["categorical_crossentropy"] == pytest.approx(np.log(3))


def test_binary_accuracy_of_a_useless_model_is_near_one():
    """The study's pitfall: all-zero outputs on 51 one-hot classes score 50/51."""
    truth = np.arange(51)
    nothing = np.zeros((51, 51))
    scores = headline_metrics(nothing, truth)
    assert scores["binary_accuracy"] == pytest.approx(50 / 51)
    assert scores["top1_accuracy"] <= 1 / 51


def test_top5_counts_the_true_class_among_the_five_most_probable():
    probs = np.array([[0.3, 0.25, 0.2, 0.1, 0.1, 0.05]])
    assert headline_metrics(probs, np.array([4]))["top5_accuracy"] == 1.0
    assert headline_metrics(probs, np.array([5]))["top5_accuracy"] == 0.0


def test_per_class_error_rate_is_one_minus_recall():
    truth = np.array([0, 0, 0, 1, 1])
    probs = np.eye(3)[[0, 0, 1, 1, 1]]
    rows = {r["class"]: r for r in per_class_rows(probs, truth, ["a", "b", "c"])}
    assert rows["a"]["error_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert rows["b"]["error_rate"] == 0.0
    assert rows["b"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert rows["c"]["support"] == 0


def test_most_confused_pairs_sorted_by_count():
    predictions = [{"actual": a, "predicted": p} for a, p in
                   [("x", "y"), ("x", "y"), ("y", "x"), ("z", "z"), ("z", "y")]]
    assert most_confused(predictions, 2) == [{"actual": "x", "predicted": "y", "count": 2},
                                             {"actual": "y", "predicted": "x", "count": 1}]


def test_confusion_counts_rows_are_true_classes_in_class_order():
    predictions = [{"actual": a, "predicted": p} for a, p in
                   [("b", "a"), ("b", "b"), ("a", "a"), ("b", "a")]]
    assert confusion_counts(predictions, ["a", "b", "c"]).tolist() == [[1, 0, 0],
                                                                        [2, 1, 0],
                                                                        [0, 0, 0]]


def test_worst_mistakes_are_the_wrong_predictions_most_confident_first():
    rows = [("x", "y", "0.6"), ("x", "x", "0.99"), ("y", "x", "0.9"), ("z", "x", "0.6"),
            ("z", "y", "1.0")]
    predictions = [{"index": str(i), "actual": a, "predicted": p, "confidence": c}
                   for i, (a, p, c) in enumerate(rows)]
    assert [p["index"] for p in worst_mistakes(predictions)] == ["4", "2", "0", "3"]


def test_confusion_and_gallery_figures_are_written_even_when_empty(tmp_path):
    crops = np.zeros((3, 8, 8, 3), np.uint8)
    wrong = [{"index": "2", "actual": "a", "predicted": "b", "confidence": "0.9"}]
    plot_misclassified(wrong, crops, 1, tmp_path / "gallery.png")
    plot_misclassified([], crops, 0, tmp_path / "no_mistakes.png")
    plot_confusion(np.array([[1, 1], [0, 0]]), ["a", "b"], tmp_path / "confusion.png")
    for name in ("gallery.png", "no_mistakes.png", "confusion.png"):
        assert Image.open(tmp_path / name).format == "PNG"


def test_markdown_table():
    assert markdown_table([{"a": 1, "b": "x"}]) == "| a | b |\n|---|---|\n| 1 | x |\n"
    assert markdown_table([]) == "(none)\n"


def test_batches_shuffle_per_epoch_from_the_seed_and_cover_every_index():
    from inception_pipeline.batches import Batches, epoch_order

    images = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    labels = np.arange(10) % 3
    indices = np.array([0, 2, 3, 5, 7, 9])
    batches = Batches(images, labels, indices, 3, batch_size=4, shuffle_seed=1)
    assert len(batches) == 2
    seen = []
    for i in range(len(batches)):
        x, y = batches[i]
        assert x.dtype == np.uint8 and y.shape == (len(x), 3)
        order = [int(np.flatnonzero((images == img).all(axis=(1, 2, 3)))[0]) for img in x]
        assert (y.argmax(axis=1) == labels[order]).all()
        seen += order
    assert sorted(seen) == indices.tolist()
    first_epoch = batches.order.copy()
    batches.on_epoch_end()
    assert not np.array_equal(first_epoch, batches.order)
    assert np.array_equal(batches.order, epoch_order(indices, 1, 1))

    plain = Batches(images, labels, indices, 3, batch_size=4)
    assert np.array_equal(plain[0][0], images[[0, 2, 3, 5]])  # evaluation keeps the order
    multi = Batches(images, labels, indices, 3, batch_size=4,
                    output_names=("predictions", "aux1", "aux2"))
    assert set(multi[0][1]) == {"predictions", "aux1", "aux2"}


def test_npy_rows_reads_the_rows_np_load_gives(tmp_path):
    from inception_pipeline.batches import NpyRows

    images = np.random.default_rng(0).integers(0, 256, (9, 2, 3, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    rows = NpyRows(tmp_path / "images.npy")
    assert len(rows) == 9 and rows.shape == images.shape
    for indices in ([0, 1, 2, 5, 6, 8], [8, 3, 4, 0], [7], []):  # runs, unsorted, one, none
        assert np.array_equal(rows[indices], images[indices])
    with pytest.raises(IndexError, match="images.npy"):
        rows[[9]]
    with open(tmp_path / "images.npy", "r+b") as f:  # cut short after it was opened
        f.truncate(f.seek(0, 2) - 1)
    with pytest.raises(ValueError, match="truncated"):
        rows[[8]]


@pytest.mark.parametrize("name, smoothing", [("binary", 0.0), ("binary_probabilities", 0.1),
                                             ("categorical", 0.1)])
def test_losses(name, smoothing):
    from inception_pipeline.training import make_loss

    loss = make_loss(name, smoothing)
    y_true = np.eye(4, dtype=np.float32)[[0, 1]]
    assert float(loss(y_true, y_true * 0.9 + 0.025)) < float(loss(y_true, np.full((2, 4), 0.25)))
    assert loss.get_config()["label_smoothing"] == smoothing


def test_binary_losses_on_a_softmax_output_logits_vs_probabilities(tmp_path):
    """Keras 3 computes BinaryCrossentropy of a softmax output from the logits it cached, as
    sigmoid logits; binary_probabilities uses the probabilities, as Keras <= 2.3 did. Both
    survive a save and a safe-mode reload."""
    import keras

    from inception_pipeline.training import make_loss
    from models import load_classifier

    logits = np.array([[2.0, 0.5, -1.0, 0.0], [0.0, 3.0, 1.0, -2.0]], np.float32)
    y_true = np.eye(4, dtype=np.float32)[[0, 1]]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sigmoid = 1 / (1 + np.exp(-logits))

    def bce(p):
        return float(-(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)).mean())

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Activation("softmax")(inputs))
    for name, expected in (("binary", bce(sigmoid)), ("binary_probabilities", bce(probs))):
        model.compile(loss=make_loss(name))
        assert model.evaluate(logits, y_true, verbose=0) == pytest.approx(expected, rel=1e-5)
        model.save(tmp_path / f"{name}.keras")
        reloaded = keras.saving.load_model(tmp_path / f"{name}.keras", safe_mode=True)
        assert reloaded.evaluate(logits, y_true, verbose=0) == pytest.approx(expected, rel=1e-5)
        assert np.allclose(load_classifier(tmp_path / f"{name}.keras").predict(logits, verbose=0),
                           probs, atol=1e-6)
    assert bce(sigmoid) > 3 * bce(probs)  # not a rounding difference: two different losses


def test_optimizers_and_schedules():
    from inception_pipeline.training import make_optimizer

    rmsprop = make_optimizer("rmsprop", 0.045, "exponential", steps_per_epoch=10, epochs=8)
    assert rmsprop.rho == 0.9 and rmsprop.epsilon == 1.0
    schedule = rmsprop.learning_rate if callable(rmsprop.learning_rate) else rmsprop._learning_rate
    assert float(schedule(19)) == pytest.approx(0.045)  # staircase: unchanged within two epochs
    assert float(schedule(20)) == pytest.approx(0.045 * 0.94)
    cosine = make_optimizer("adam", 0.001, "cosine", steps_per_epoch=10, epochs=2)._learning_rate
    assert float(cosine(20)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("before", [None, "TRUE"])
def test_onnx_conversion_turns_off_tf2onnx_graph_copies_only_while_it_runs(monkeypatch, before):
    if before is None:
        monkeypatch.delenv(CATCH_ERRORS, raising=False)
    else:
        monkeypatch.setenv(CATCH_ERRORS, before)
    with _one_graph_through_tf2onnx_passes():
        assert os.environ[CATCH_ERRORS] == "FALSE"
    assert os.environ.get(CATCH_ERRORS) == before
