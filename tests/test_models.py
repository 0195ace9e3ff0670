"""The networks in models/: sizes against the paper's reference figures, grids, the classifier
contract (one training step each, GoogLeNet's auxiliary outputs), safe-mode reloading, and the
minimum input sizes params validation relies on."""

import copy
import functools
import io
import json
import math
import re
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import yaml

from inception_pipeline.params import problems
from inception_pipeline.training import compile_model, make_loss
from models import (
    AUX_LOSS_WEIGHT,
    NETWORKS,
    build_classifier,
    class_probabilities,
    load_classifier,
    save_classifier,
)

# Keras' saving calls np.array on TensorFlow variables, whose __array__ predates NumPy 2.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
SIZE, CLASSES = 75, 51
IMAGES = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
LABELS = keras.utils.to_categorical([0, 1], CLASSES)
BLOCKS = ("stem", "reduction_a", "reduction_b")


def _classifier(name, size=SIZE, classes=CLASSES):
    return build_classifier(name, size, classes, weights=None, bn_momentum=0.9, augment=True,
                            seed=0)


# Building the big networks takes seconds each: build each one once for the whole file.
@pytest.fixture(scope="module")
def classifiers():
    """name -> the network's classifier at 75x75 with 51 classes."""
    return functools.cache(_classifier)


@pytest.fixture(scope="module")
def classifiers_299():
    """name -> the network's classifier at 299x299 with 1000 classes (the paper's setting)."""
    return functools.cache(functools.partial(_classifier, size=299, classes=1000))


@pytest.mark.parametrize("name, reference, tolerance", [
    ("inception_v4", 42_711_400, 0.0),  # TF-slim layout, Keras-style count
    ("inception_resnet_v1", 22_770_000, 0.01),  # strictly 5x Inception-ResNet-C
])
def test_parameter_count_at_299_with_a_1000_class_head(classifiers_299, name, reference,
                                                        tolerance):
    # The classifier adds only the Dense(1000) head: preprocessing has no weights.
    count = classifiers_299(name).count_params()
    assert abs(count - reference) <= tolerance * reference, count


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v1"])
def test_grids_after_stem_and_reductions(classifiers_299, classifiers, name):
    def grids(backbone):
        return [backbone.get_layer(block).output.shape[1:3] for block in BLOCKS]

    assert grids(classifiers_299(name).get_layer(name)) == [(35, 35), (17, 17), (8, 8)]
    assert grids(classifiers(name).get_layer(name)) == [(7, 7), (3, 3), (1, 1)]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_network_trains_one_step_at_75(classifiers, name):
    model = classifiers(name)
    # Eagerly: tracing a several-hundred-layer graph costs ten times the one step it runs.
    if NETWORKS[name].aux_heads:
        outputs = ["predictions", "aux1", "aux2"]
        assert model.output_names == outputs
        model.compile("sgd", run_eagerly=True,
                      loss={output: "categorical_crossentropy" for output in outputs},
                      loss_weights={"predictions": 1.0, "aux1": AUX_LOSS_WEIGHT,
                                    "aux2": AUX_LOSS_WEIGHT})
        logs = model.train_on_batch(IMAGES, {output: LABELS for output in outputs},
                                    return_dict=True)
        expected = logs["predictions_loss"] + AUX_LOSS_WEIGHT * (logs["aux1_loss"]
                                                                 + logs["aux2_loss"])
        assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    else:
        assert model.output_names == ["predictions"]
        model.compile("sgd", loss="categorical_crossentropy", run_eagerly=True)
        logs = model.train_on_batch(IMAGES, LABELS, return_dict=True)
    assert math.isfinite(logs["loss"])
    assert all(output.shape == (None, CLASSES) and output.dtype == "float32"
               for output in model.outputs)


def documented_parameter_counts() -> dict[str, int]:
    """docs/study.md's table of networks: name -> its "params at 75x75, 51 classes" column."""
    lines = (ROOT / "docs/study.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| name | what | params at 75x75, 51 classes | forward multiply-adds at "
                        "75x75 | training images/s, 2 cores | min input | ImageNet weights |")
    counts = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            return counts
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        counts[re.match(r"`(\w+)`", cells[0])[1]] = int(cells[2].replace(",", ""))
    return counts


def test_documented_parameter_counts_at_75_with_the_studys_classes(classifiers):
    """bench/model_table.py's counts as docs/study.md quotes them (augmentation has no weights, so
    these classifiers count the same as its augment=False ones), with the study's classes, which
    the claims grid trains on."""
    claims = yaml.safe_load((ROOT / "claims/grid.yaml").read_text(encoding="utf-8"))
    assert claims["budget"]["sample.classes"] == CLASSES
    counts = documented_parameter_counts()
    assert list(counts) == list(NETWORKS)
    assert {name: classifiers(name).count_params() for name in NETWORKS} == counts


def test_batch_norm_momentum_reaches_the_auxiliary_heads(classifiers):
    model = classifiers("googlenet")
    assert model.get_layer("aux1_conv_bn").momentum == 0.9
    assert model.get_layer("googlenet").get_layer("conv1_bn").momentum == 0.9


def residual_scales(model, name):
    return {layer.scale for layer in model.get_layer(name).layers
            if isinstance(layer, keras.layers.Rescaling)}


def test_inception_resnet_v1_reloads_in_safe_mode(classifiers, tmp_path):
    model = classifiers("inception_resnet_v1")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(IMAGES, verbose=0),
                               model.predict(IMAGES, verbose=0), rtol=1e-5, atol=1e-6)
    assert residual_scales(reloaded, "inception_resnet_v1") == {0.1}


def saved_state(path):
    """The top-level groups of a .keras file's weights, and whether its config holds compile
    settings (an uncompiled model's are empty)."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            return set(weights), bool(config.get("compile_config"))


def test_the_saved_classifier_has_no_optimizer_state_and_predicts_in_safe_mode(tmp_path):
    model = _classifier("googlenet")  # three outputs: the auxiliary heads are saved too
    compile_model(model, keras.optimizers.Adam(), make_loss("binary"), AUX_LOSS_WEIGHT)
    model.run_eagerly = True  # one step: tracing would cost ten times more
    model.train_on_batch(IMAGES, {name: LABELS for name in model.output_names})
    model.save(tmp_path / "compiled.keras")  # Keras' default: with the optimizer's state
    groups, compiled = saved_state(tmp_path / "compiled.keras")
    assert "optimizer" in groups and compiled
    save_classifier(model, tmp_path / "model.keras")
    groups, compiled = saved_state(tmp_path / "model.keras")
    assert "optimizer" not in groups and not compiled
    assert (tmp_path / "model.keras").stat().st_size < (tmp_path / "compiled.keras").stat().st_size
    reloaded = load_classifier(tmp_path / "model.keras")
    assert reloaded.output_names == model.output_names
    # allclose: the trained model runs eagerly, the reloaded one as a graph (fused kernels)
    np.testing.assert_allclose(class_probabilities(reloaded, IMAGES),
                               class_probabilities(model, IMAGES), rtol=1e-5, atol=1e-7)


def test_residual_scale_defaults_to_0_1_and_is_settable(classifiers):
    assert residual_scales(classifiers("inception_resnet_v1"), "inception_resnet_v1") == {0.1}
    model = build_classifier("inception_resnet_v1", SIZE, CLASSES, weights=None,
                             bn_momentum=0.9, augment=False, seed=0, residual_scale=0.3)
    assert residual_scales(model, "inception_resnet_v1") == {0.3}


def _resnet50(class_prior):
    keras.utils.set_random_seed(0)
    return build_classifier("resnet50", 32, 3, weights=None, bn_momentum=0.9, augment=False,
                            seed=0, class_prior=class_prior)


def test_head_bias_prior_starts_each_sigmoid_at_its_class_frequency():
    prior = [0.5, 0.3, 0.2]
    bias = _resnet50(prior).get_layer("predictions").bias.numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), prior, rtol=1e-6)
    assert not _resnet50(None).get_layer("predictions").bias.numpy().any()


def test_head_bias_of_balanced_classes_leaves_the_softmax_unchanged():
    images = IMAGES[:, :32, :32]
    zeros, prior = _resnet50(None), _resnet50([1 / 3] * 3)
    assert prior.get_layer("predictions").bias.numpy()[0] == pytest.approx(-math.log(2))
    np.testing.assert_allclose(class_probabilities(prior, images),
                               class_probabilities(zeros, images), rtol=1e-5)


def _batch_norm_offsets(model):
    return [layer.beta.numpy() for layer in model.get_layer("googlenet").layers
            if isinstance(layer, keras.layers.BatchNormalization) and layer.center]


def test_bn_offset_starts_every_batch_norm_there_and_loaded_weights_replace_it(tmp_path):
    model = build_classifier("googlenet", SIZE, CLASSES, weights=None, bn_momentum=0.9,
                             augment=False, seed=0, bn_offset=1.0)
    offsets = _batch_norm_offsets(model)
    assert len(offsets) > 50 and all((beta == 1.0).all() for beta in offsets)
    path = tmp_path / "googlenet.weights.h5"
    build_classifier("googlenet", SIZE, CLASSES, weights=None, bn_momentum=0.9, augment=False,
                     seed=0).get_layer("googlenet").save_weights(path)
    loaded = build_classifier("googlenet", SIZE, CLASSES, weights=str(path), bn_momentum=0.9,
                              augment=False, seed=0, bn_offset=1.0)
    assert not any(beta.any() for beta in _batch_norm_offsets(loaded))


def first_conv_gradient_ratio(bn_offset):
    """|gradient| / |weights| of Inception-v3's first convolution at initialisation."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = build_classifier("inception_v3", SIZE, CLASSES, weights=None, bn_momentum=0.9,
                             augment=False, seed=0, bn_offset=bn_offset)
    images = np.random.default_rng(1).integers(0, 256, (16, SIZE, SIZE, 3), dtype=np.uint8)
    labels = keras.utils.to_categorical(np.arange(16) % CLASSES, CLASSES)
    kernel = next(v for v in model.trainable_variables if "kernel" in v.path)
    with tf.GradientTape() as tape:
        loss = make_loss("categorical")(labels, model(images, training=True))
    return float(tf.norm(tape.gradient(loss, kernel)) / tf.norm(kernel))


def test_bn_offset_tames_the_gradient_explosion_of_a_plain_network():
    """docs/study.md: without shortcuts, gradients grow towards the input; ReLUs started
    nearly linear grow them far less (here 466 -> 17)."""
    assert first_conv_gradient_ratio(1.0) < first_conv_gradient_ratio(0.0) / 5


@pytest.mark.parametrize("name", list(NETWORKS))
def test_one_pixel_below_min_input_fails_to_build(name):
    size = NETWORKS[name].min_input - 1
    # keras.applications checks the input size; in our networks a pooling layer's grid vanishes.
    too_small = (rf"Input size must be at least {size + 1}x{size + 1}"
                 r"|Computed output size would be zero or negative")
    with pytest.raises(ValueError, match=too_small):
        build_classifier(name, size, CLASSES, weights=None, bn_momentum=0.9, augment=False,
                         seed=0)


def test_googlenet_builds_at_its_min_input():
    size = NETWORKS["googlenet"].min_input
    model = build_classifier("googlenet", size, CLASSES, weights=None, bn_momentum=0.9,
                             augment=False, seed=0)
    assert [output.shape for output in model.outputs] == [(None, CLASSES)] * 3


def test_backbone_loads_a_weights_file(classifiers, tmp_path):
    trained = classifiers("googlenet").get_layer("googlenet")
    path = tmp_path / "googlenet.weights.h5"
    trained.save_weights(path)
    model = build_classifier("googlenet", SIZE, CLASSES, weights=str(path), bn_momentum=0.9,
                             augment=False, seed=1)
    for loaded, saved in zip(model.get_layer("googlenet").weights, trained.weights, strict=True):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy())


def with_values(params, values):
    params = copy.deepcopy(params)
    for key, value in values.items():
        group, name = key.split(".")
        params[group][name] = value
    return params


def test_params_reject_an_input_below_the_minimum(default_params):
    params = with_values(default_params, {"train.model": "inception_v4", "resize.size": 74})
    found = problems(params)
    assert any("inception_v4" in line and "75" in line for line in found), found


def test_params_reject_imagenet_weights_for_our_own_networks(default_params):
    params = with_values(default_params, {"train.model": "inception_v4",
                                          "train.weights": "imagenet"})
    found = problems(params)
    assert any(line.startswith("train.weights=imagenet") and "inception_v4" in line
               for line in found), found
