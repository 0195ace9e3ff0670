"""Progress output: one line per epoch (and per prediction run) when stdout is a log file, a
live bar with steps, images/s and time left when it is a terminal."""

import io
import re

import keras
import numpy as np
import pytest

from inception_pipeline.progress import PredictionProgress, TrainingProgress, duration
from inception_pipeline.training import EpochTimer

IMAGES, BATCH = 10, 4  # 3 steps per epoch, the last one partial


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def tiny():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((IMAGES, 4), dtype=np.float32)
    return model, x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, IMAGES)]


def fit(tiny, stream, epochs=2):
    model, x, y = tiny
    model.fit(x, y, batch_size=BATCH, epochs=epochs, validation_data=(x[:6], y[:6]), verbose=0,
              callbacks=[EpochTimer(), TrainingProgress(IMAGES, BATCH, 2, stream)])


def test_a_log_gets_one_line_per_epoch_with_every_metric(tiny):
    stream = io.StringIO()
    fit(tiny, stream)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    for epoch, line in enumerate(lines, 1):
        assert re.match(rf"epoch {epoch}/2: 3 steps in \d+ s \(\d+\.\d images/s\)", line), line
        assert [name for name in re.findall(r" - (\w+): ", line)] == [
            "accuracy", "loss", "val_accuracy", "val_loss"]
    assert re.search(r", run \d+:\d\d left - ", lines[0]) and "left" not in lines[1]
    assert "\r" not in stream.getvalue()


def test_a_terminal_gets_a_live_bar_and_the_same_epoch_lines(tiny):
    stream = FakeTerminal()
    fit(tiny, stream)
    text = stream.getvalue()
    assert "\r" in text
    assert "epoch 1/2" in text and "/3 steps [" in text
    assert re.search(r"\d+\.\d images/s, loss \d\.\d{4}, run \d+:\d\d left", text)
    assert "building the graph" in text and "validating 2/2" in text
    lines = [line.split("\r")[-1] for line in text.split("\n") if line.split("\r")[-1].strip()]
    assert [line[:len("epoch 1/2: 3 steps in")] for line in lines] == [
        "epoch 1/2: 3 steps in", "epoch 2/2: 3 steps in"]


@pytest.mark.parametrize("stream", [io.StringIO(), FakeTerminal()])
def test_prediction_progress(tiny, stream):
    model, x, _ = tiny
    model.predict(x, batch_size=BATCH, verbose=0,
                  callbacks=[PredictionProgress("evaluate: predicting", IMAGES, BATCH, stream)])
    text = stream.getvalue()
    assert re.search(r"evaluate: predicting: 10 images in \d+ s \(\d+\.\d images/s\)\n$", text)
    assert ("/3 batches [" in text) == stream.isatty()


def test_duration():
    assert [duration(s) for s in (0, 59.6, 61, 3599, 3600, 7384)] == [
        "0:00", "1:00", "1:01", "59:59", "1:00:00", "2:03:04"]
