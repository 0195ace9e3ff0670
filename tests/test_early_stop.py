"""train.patience: early stopping on validation top-1 keeps the best epoch's weights, and a
killed run resumes with its early-stopping state; train.warmup_epochs: the warm-up schedule."""

import keras
import numpy as np
import pytest

from inception_pipeline.batches import Batches
from inception_pipeline.checkpoints import EarlyStop, EpochCheckpoint
from inception_pipeline.training import WarmUp, compile_model, make_loss, make_optimizer


class ScriptedScores(keras.callbacks.Callback):
    """Replaces val_accuracy with a scripted sequence, so the best epoch is known."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def on_epoch_end(self, epoch, logs=None):
        logs["val_accuracy"] = self.scores[epoch]


class WeightsByEpoch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch + 1] = [w.copy() for w in self.model.get_weights()]


def fit(directory, scores, patience, epochs, stop_after=None):
    """A tiny model trained with scripted validation scores; (early stop, weights per epoch,
    final weights, epochs run)."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 16)
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    x = keras.layers.Flatten()(keras.ops.cast(inputs, "float32") / 255.0)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                   name="predictions")(x))
    compile_model(model, keras.optimizers.SGD(0.1), make_loss("categorical"), 0.3)
    batches = Batches(images, labels, np.arange(16), 3, 8, shuffle_seed=1)
    checkpoint = EpochCheckpoint(directory / "checkpoints", directory / "live", "run")
    (directory / "live").mkdir(parents=True, exist_ok=True)
    done = checkpoint.restore(model)
    batches.set_epoch(done)
    early = EarlyStop(directory / "checkpoints", patience)
    early.restore(done)
    seen = WeightsByEpoch()
    history = model.fit(batches, epochs=stop_after or epochs, initial_epoch=done, shuffle=False,
                        verbose=0, callbacks=[ScriptedScores(scores), early, seen, checkpoint])
    return early, seen.weights, model.get_weights(), len(history.epoch)


def test_stops_after_patience_epochs_without_improvement_and_keeps_the_best(tmp_path):
    early, weights, final, ran = fit(tmp_path, [0.2, 0.5, 0.4, 0.5, 0.3, 0.9], patience=3,
                                     epochs=6)
    assert ran == 5  # epochs 3, 4 and 5 brought nothing better than epoch 2 (a tie is not)
    assert early.best_epoch == 2
    assert all(np.array_equal(a, b) for a, b in zip(final, weights[2], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(final, weights[5], strict=True))


def test_the_last_epoch_best_keeps_its_own_weights(tmp_path):
    early, weights, final, ran = fit(tmp_path, [0.1, 0.2, 0.3], patience=2, epochs=3)
    assert (ran, early.best_epoch) == (3, 3)
    assert all(np.array_equal(a, b) for a, b in zip(final, weights[3], strict=True))


def test_a_resumed_run_stops_and_restores_as_an_uninterrupted_one(tmp_path):
    scores = [0.2, 0.6, 0.5, 0.4, 0.7, 0.1]
    _, _, straight, ran = fit(tmp_path / "straight", scores, patience=2, epochs=6)
    fit(tmp_path / "resumed", scores, patience=2, epochs=6, stop_after=3)  # killed after 3
    early, _, resumed, rest = fit(tmp_path / "resumed", scores, patience=2, epochs=6)
    assert (ran, 3 + rest, early.best_epoch) == (4, 4, 2)
    assert all(np.array_equal(a, b) for a, b in zip(resumed, straight, strict=True))


def test_warm_up_rises_linearly_then_follows_the_schedule():
    rates = lambda optimizer, steps: [  # noqa: E731
        float(optimizer.learning_rate if not callable(optimizer._learning_rate)
              else optimizer._learning_rate(step)) for step in steps]
    warm = make_optimizer("adam", 0.01, "constant", steps_per_epoch=4, epochs=3,
                          warmup_epochs=1)
    assert rates(warm, range(6)) == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
    cosine = make_optimizer("sgd", 0.01, "cosine", steps_per_epoch=4, epochs=3,
                            warmup_epochs=0.5)
    got = rates(cosine, [0, 1, 2, 7, 12])  # 2 warm-up steps, then cosine over the other 10
    assert got == pytest.approx([0.005, 0.01, 0.01, 0.01 * (1 + np.cos(np.pi / 2)) / 2, 0.0],
                                abs=1e-7)
    schedule = cosine._learning_rate
    assert isinstance(schedule, WarmUp)
    again = WarmUp.from_config(schedule.get_config())
    assert [float(again(s)) for s in range(12)] == [float(schedule(s)) for s in range(12)]
    assert not isinstance(make_optimizer("adam", 0.01, "constant", 4, 3)._learning_rate, WarmUp)
