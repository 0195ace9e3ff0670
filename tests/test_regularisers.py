"""The regularisers of train (weight decay, EMA, scale and colour jitter, MixUp, CutMix, random
erasing, class weights) and evaluate's flip test-time augmentation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from inception_pipeline.batches import Batches, LabelMixing, balanced_class_weights
from inception_pipeline.checkpoints import EarlyStop, EpochCheckpoint
from inception_pipeline.reporting import regularisers
from inception_pipeline.training import (
    EmaWeights,
    FusedAdam,
    compile_model,
    make_loss,
    make_optimizer,
    not_decayed,
)
from models import class_probabilities, load_classifier, save_classifier
from models.layers import augmentation


def test_balanced_class_weights_are_n_over_classes_times_count():
    labels = np.array([0, 0, 0, 0, 1, 1, 3, 3, 3, 3, 3, 3])  # class 2 has no image
    weights = balanced_class_weights(labels, 4)
    n, k = len(labels), 3  # three classes present
    assert weights.tolist() == pytest.approx([n / (k * 4), n / (k * 2), 0.0, n / (k * 6)])
    assert (weights[labels] * 1).sum() == pytest.approx(n)  # every present class weighs n / k


def test_class_weights_become_sample_weights_only_for_training_batches():
    images = np.zeros((6, 4, 4, 3), np.uint8)
    labels = np.array([0, 0, 0, 0, 1, 2])
    weights = balanced_class_weights(labels, 3)
    train = Batches(images, labels, np.arange(6), 3, 6, shuffle_seed=0, class_weights=weights)
    x, y, sample_weights = train[0]
    assert sample_weights == pytest.approx(weights[y.argmax(axis=1)])
    assert len(Batches(images, labels, np.arange(6), 3, 6)[0]) == 2  # validation: unweighted
    multi = Batches(images, labels, np.arange(6), 3, 6, shuffle_seed=0, class_weights=weights,
                    output_names=("predictions", "aux1"))
    assert np.array_equal(multi[0][2], sample_weights)  # the same for every output


@pytest.mark.parametrize("mixup, cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixed_labels_are_soft_sum_to_one_and_repeat_from_the_seed(mixup, cutmix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(16) % 4
    batches = Batches(images, labels, np.arange(16), 4, 8, shuffle_seed=3,
                      mixing=LabelMixing(mixup, cutmix))
    x, y = batches[0]
    assert x.dtype == np.uint8 and x.shape == (8, 12, 12, 3)
    assert y.sum(axis=1) == pytest.approx(np.ones(8), abs=1e-6)
    assert (y.max(axis=1) < 1).any() and (y >= 0).all()  # soft
    again, y_again = batches[0]
    assert np.array_equal(x, again) and np.array_equal(y, y_again)  # what a resume relies on
    assert not np.array_equal(x, images[batches.rows(0)])  # images mixed with the labels
    batches.set_epoch(1)
    assert not np.array_equal(y, batches[0][1])  # each epoch mixes anew


def test_mixed_labels_weigh_their_classes_weights():
    images = np.random.default_rng(0).integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 0])
    weights = balanced_class_weights(labels, 2)
    x, y, sample_weights = Batches(images, labels, np.arange(8), 2, 8, shuffle_seed=0,
                                   mixing=LabelMixing(0.4), class_weights=weights)[0]
    assert sample_weights == pytest.approx(y @ weights)


def block(**options):
    return augmentation(0, augment=False, **options)


@pytest.mark.parametrize("options", [{"flip": True}, {"scale_jitter": 0.25}, {"color_jitter": 0.4},
                                     {"random_erasing": 1.0}])
def test_augmentation_layers_act_only_in_training(options):
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    layers = block(**options)
    assert np.array_equal(np.asarray(layers(images, training=False)), images)
    assert not np.allclose(np.asarray(layers(images, training=True)), images)


def test_no_augmentation_block_when_everything_is_off():
    assert block() is None
    names = [layer.name for layer in augmentation(0, flip=True, scale_jitter=0.2,
                                                  color_jitter=0.1, random_erasing=0.3).layers]
    assert names[4:] == ["flip", "scale_jitter", "scale_jitter_shift", "color_jitter",
                         "random_erasing"]


@pytest.mark.parametrize("name, kind", [("adam", FusedAdam),
                                        ("sgd", keras.optimizers.SGD),
                                        ("rmsprop", keras.optimizers.RMSprop)])
def test_weight_decay_spares_biases_and_batch_norm(name, kind):
    optimizer = make_optimizer(name, 0.01, "constant", 1, 1, weight_decay=0.05)
    assert isinstance(optimizer, kind) and optimizer.weight_decay == 0.05
    model = tiny_model()
    compile_model(model, optimizer, make_loss("categorical"), 0.3)
    decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
    assert {v.path for v in not_decayed(model)} == {
        v.path for v in model.trainable_variables if v.path.endswith(("bias", "gamma", "beta"))}
    assert decayed == {v.path for v in model.trainable_variables if v.path.endswith("kernel")}
    assert make_optimizer("adam", 0.01, "constant", 1, 1).weight_decay is None


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.05, "use_ema": True,
                                          "ema_momentum": 0.5, "global_clipnorm": 0.1}])
@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_fused_adam_trains_as_keras_adam(options, strategy):
    """FusedAdam's one-op update is Keras' Adam (AdamW with weight decay): the same weights and
    optimizer state after 6 steps, to rounding, also under a distribution strategy."""
    images, labels = data()
    targets = keras.utils.to_categorical(labels, 3)
    keras_adam = keras.optimizers.AdamW if "weight_decay" in options else keras.optimizers.Adam
    states = []
    for kind in (keras_adam, FusedAdam):
        scope = (tf.distribute.MirroredStrategy(["/cpu:0"]) if strategy == "mirrored"
                 else tf.distribute.get_strategy())
        with scope.scope():
            model = tiny_model()
            compile_model(model, kind(learning_rate=0.01, **options),
                          make_loss("categorical"), 0.3)
        model.fit(images, targets, batch_size=8, epochs=2, shuffle=False, verbose=0)
        states.append([v.numpy() for v in model.weights + model.optimizer.variables])
    assert len(states[0]) == len(states[1])
    # Each step moves a weight by about the learning rate, 0.01: a wrong formula (say, no bias
    # correction) is off by that much; the two kernels' rounding by at most 1e-5 here.
    for keras_value, fused_value in zip(*states):
        np.testing.assert_allclose(fused_value, keras_value, rtol=1e-3, atol=1e-4)
    assert not np.allclose(states[1][0], tiny_model().weights[0].numpy())  # it trained


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), dtype="uint8")
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.ops.cast(inputs, "float32") / 255.0)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                  name="predictions")(x))


def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    return images, rng.integers(0, 3, 24)


class ValidatedWeights(keras.callbacks.Callback):
    """The trainable weights as the validation of each epoch sees them."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_test_begin(self, logs=None):
        self.seen.append([v.numpy() for v in self.model.trainable_variables])


def ema_vars(model):
    return [v.numpy() for v in model.optimizer._model_variables_moving_average]


def fit_with_ema(directory, epochs, stop_after=None, patience=0, extra=()):
    """A tiny model trained with train.ema=0.9 the way the train stage does; the model."""
    images, labels = data()
    model = tiny_model()
    compile_model(model, make_optimizer("adam", 0.05, "constant", 2, epochs, ema=0.9),
                  make_loss("categorical"), 0.3)
    train = Batches(images, labels, np.arange(16), 3, 8, shuffle_seed=1)
    val = Batches(images, labels, np.arange(16, 24), 3, 8)
    (directory / "live").mkdir(parents=True, exist_ok=True)
    checkpoint = EpochCheckpoint(directory / "checkpoints", directory / "live", "run")
    done = checkpoint.restore(model)
    train.set_epoch(done)
    callbacks = []
    if patience:
        callbacks.append(early := EarlyStop(directory / "checkpoints", patience))
        early.restore(done)
    model.fit(train, validation_data=val, epochs=stop_after or epochs, initial_epoch=done,
              shuffle=False, verbose=0, callbacks=[*callbacks, EmaWeights(), *extra, checkpoint])
    return model


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_ema_weights_are_validated_and_saved(tmp_path):
    validated = ValidatedWeights()
    raw = []

    class RawAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raw.append([v.numpy() for v in self.model.trainable_variables])
            averages.append(ema_vars(self.model))

    averages = []
    model = fit_with_ema(tmp_path, 2, extra=[validated, RawAtEpochEnd()])
    for epoch in range(2):
        assert same(validated.seen[epoch], averages[epoch])  # validation: the average
        assert not same(raw[epoch], averages[epoch])  # training goes on with the raw weights
    save_classifier(model, tmp_path / "model.keras")
    saved = load_classifier(tmp_path / "model.keras")
    assert same([v.numpy() for v in saved.trainable_variables], ema_vars(model))


def test_early_stopping_keeps_the_best_epochs_average(tmp_path):
    class Scripted(keras.callbacks.Callback):  # epoch 1 best, then worse: stop after epoch 2
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = [0.9, 0.1, 0.1][epoch]
            averages.append(ema_vars(self.model))

    averages = []
    model = fit_with_ema(tmp_path, 3, patience=1, extra=[Scripted()])
    assert len(averages) == 2
    assert same([v.numpy() for v in model.trainable_variables], averages[0])


def test_a_resumed_run_keeps_its_moving_average(tmp_path):
    straight = fit_with_ema(tmp_path / "straight", 3)
    fit_with_ema(tmp_path / "resumed", 3, stop_after=1)  # as if killed after epoch 1
    resumed = fit_with_ema(tmp_path / "resumed", 3)
    assert same(ema_vars(resumed), ema_vars(straight))
    assert same([v.numpy() for v in resumed.trainable_variables],
                [v.numpy() for v in straight.trainable_variables])


def test_tta_flip_averages_the_image_and_its_mirror():
    images = data()[0][:5]
    model = tiny_model()
    plain = class_probabilities(model, images)
    mirrored = class_probabilities(model, images[:, :, ::-1])
    assert not np.allclose(plain, mirrored)
    assert class_probabilities(model, images, tta_flip=True) == pytest.approx(
        (plain + mirrored) / 2, abs=1e-6)
    batches = Batches(images, np.zeros(5, int), np.arange(5), 3, 2)
    assert class_probabilities(model, batches, tta_flip=True) == pytest.approx(
        (plain + mirrored) / 2, abs=1e-6)


def test_report_names_the_regularisers_in_use():
    off = {"weight_decay": 0.0, "ema": 0.0, "scale_jitter": 0.0, "color_jitter": 0.0,
           "mixup": 0.0, "cutmix": 0.0, "random_erasing": 0.0}
    assert regularisers(flip=False, class_weight="none", **off) == "none"
    assert regularisers(flip=True, class_weight="balanced",
                        **off | {"ema": 0.999, "mixup": 0.2}) == (
        "flips, weight EMA 0.999, MixUp 0.2, balanced class weights")
