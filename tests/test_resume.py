"""Training resumes from its checkpoint exactly where an uninterrupted run would be."""

import keras
import numpy as np
import pytest

from inception_pipeline.batches import Batches
from inception_pipeline.checkpoints import EpochCheckpoint
from inception_pipeline.errors import PipelineError
from inception_pipeline.training import compile_model, make_loss
from models.layers import augmentation


def tiny_model() -> keras.Model:
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    x = augmentation(seed=0)(keras.ops.cast(inputs, "float32") / 255.0)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.3, seed=5)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    compile_model(model, keras.optimizers.Adam(0.01), make_loss("categorical"), 0.3)
    return model


def fit(directory, epochs: int, stop_after: int | None = None) -> list[float]:
    """Train from the newest checkpoint (if any) and return the per-epoch losses."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 24)
    model = tiny_model()
    batches = Batches(images, labels, np.arange(24), 3, 8, shuffle_seed=1)
    live_dir = directory / "live"
    live_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = EpochCheckpoint(directory / "checkpoints", live_dir, "run")
    done = checkpoint.restore(model)
    batches.set_epoch(done)
    history = model.fit(batches, epochs=stop_after or epochs, initial_epoch=done, shuffle=False,
                        verbose=0,
                        callbacks=[checkpoint])
    return history.history["loss"]


def test_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path):
    straight = fit(tmp_path / "straight", 4)
    first_part = fit(tmp_path / "resumed", 4, stop_after=2)  # as if killed after epoch 2
    assert sorted(p.name for p in (tmp_path / "resumed/checkpoints").iterdir()) == ["epoch-0002"]
    rest = fit(tmp_path / "resumed", 4)
    assert first_part + rest == straight  # bit for bit: weights, optimizer, random state, order


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    fit(tmp_path, 4, stop_after=1)
    other = EpochCheckpoint(tmp_path / "checkpoints", tmp_path / "live", "other settings")
    assert other.restore(tiny_model()) == 0
    assert not (tmp_path / "checkpoints").exists()


def test_a_checkpoint_that_cannot_be_written_stops_training(tmp_path):
    """The checkpoint is written in a thread: its failure still ends the run, in one line."""
    (tmp_path / "checkpoints").write_text("a file where the checkpoints' folder should be")
    with pytest.raises(PipelineError, match=r"checkpoints: cannot write the epoch checkpoint "):
        fit(tmp_path, 2)


def test_a_checkpoint_of_another_network_is_one_line(tmp_path):
    fit(tmp_path, 2, stop_after=1)
    inputs = keras.Input((16, 16, 3), dtype="uint8")
    other = keras.Model(inputs, keras.layers.Dense(3, name="predictions")(
        keras.layers.Flatten()(keras.ops.cast(inputs, "float32"))))
    other.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy")
    with pytest.raises(PipelineError, match=r"state.npz: damaged checkpoint, cannot resume "
                                            r"from it \(ValueError\)"):
        EpochCheckpoint(tmp_path / "checkpoints", tmp_path / "live", "run").restore(other)
