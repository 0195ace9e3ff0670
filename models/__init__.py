"""The networks ``train.model`` can name, and the one builder the train stage calls.

The registry is plain data so that params can be validated without importing TensorFlow;
``build_classifier`` imports Keras and the chosen network's module only when called.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


class WeightsUnavailable(RuntimeError):
    """Pretrained weights that cannot be had (a failed download); the message says what to do."""


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message names the file and what is wrong."""


# GoogLeNet's training loss: main + AUX_LOSS_WEIGHT * (aux1 + aux2) (Szegedy et al. 2014).
AUX_LOSS_WEIGHT = 0.3


@dataclass(frozen=True)
class Network:
    # Module under models/ defining ``backbone(name, input_shape, weights, *, residual_scale)``:
    # preprocessed float image -> global-average-pooled features (no top).
    module: str
    min_input: int  # smallest square input the network accepts
    imagenet: bool  # Keras publishes ImageNet weights for it
    preprocessing: str  # how pixels are scaled: "tf" ([-1, 1]) or "caffe" (BGR, mean-subtracted)
    # Its residual branches are scaled by build_classifier's ``residual_scale``. False for
    # Keras' InceptionResNetV2, whose scales Keras fixes at 0.17 / 0.1 / 0.2.
    residual: bool = False
    # The backbone also returns two feature maps for auxiliary classifiers (GoogLeNet); the
    # classifier then has the outputs "predictions", "aux1" and "aux2".
    aux_heads: bool = False


NETWORKS: dict[str, Network] = {
    "inception_resnet_v2": Network("keras_apps", 75, True, "tf"),
    "inception_resnet_v1": Network("inception_resnet_v1", 75, False, "tf", residual=True),
    "inception_v4": Network("inception_v4", 75, False, "tf"),
    "inception_v3": Network("keras_apps", 75, True, "tf"),
    # 65: the auxiliary heads' 5x5 pool needs the 4a/4d grid, ceil(input / 16), to be >= 5.
    "googlenet": Network("googlenet", 65, False, "tf", aux_heads=True),
    "resnet50": Network("keras_apps", 32, True, "caffe"),
}


def build_classifier(name: str, input_size: int, num_classes: int, *, weights: str | None,
                     bn_momentum: float, augment: bool, seed: int, dropout: float = 0.0,
                     residual_scale: float | None = None, class_prior=None,
                     bn_offset: float = 0.0, flip: bool = False, scale_jitter: float = 0.0,
                     color_jitter: float = 0.0, random_erasing: float = 0.0):
    """uint8 RGB image -> [augmentation] -> preprocessing -> backbone -> dropout -> softmax.

    The model takes raw uint8 pixels so that training, evaluation and prediction share one
    preprocessing path, saved inside the .keras file. ``residual_scale`` reaches only the
    networks with ``Network.residual`` (None: the network's default); the others ignore it.
    With ``Network.aux_heads`` the model has three float32 softmax outputs, "predictions",
    "aux1" and "aux2"; otherwise the one output "predictions".

    ``class_prior`` (per-class frequencies, or None: zeros) starts the head's bias at the
    prior's log-odds, log(p / (1 - p)): each class's sigmoid then starts at its frequency, the
    all-classes-absent plateau of binary cross-entropy is where training starts rather than a
    place the backbone has to be bent towards. The softmax is unchanged by a bias shared by
    every class, so with balanced classes only the sigmoid-based loss sees it.

    ``bn_offset`` starts every batch norm's offset (beta) there instead of at 0, so that the
    ReLU after it starts mostly in its linear part. A deep network of convolution, batch norm
    and ReLU without shortcuts starts with gradients that grow layer by layer towards the input
    (Yang et al., "A Mean Field Theory of Batch Normalization", 2019); the nearer the ReLUs are
    to linear, the slower they grow. It is an initial value: loaded ``weights`` replace it.

    ``augment``, ``flip``, ``scale_jitter``, ``color_jitter`` and ``random_erasing`` choose the layers
    of the augmentation block (``models.layers.augmentation``).
    """
    import keras

    from models.layers import ImagePreprocessing, augmentation

    network = NETWORKS[name]
    module = importlib.import_module(f"models.{network.module}")
    shape = (input_size, input_size, 3)
    options = {"residual_scale": residual_scale} if network.residual else {}
    backbone = module.backbone(name, shape, weights, **options)

    inputs = keras.Input(shape, dtype="uint8", name="image")
    augmenting = augmentation(seed, augment=augment, flip=flip, scale_jitter=scale_jitter,
                              color_jitter=color_jitter, random_erasing=random_erasing)
    x = augmenting(inputs) if augmenting else inputs
    x = ImagePreprocessing(network.preprocessing)(x)
    x = backbone(x)
    if network.aux_heads:  # [pooled features, inception 4a map, inception 4d map]
        x, aux1, aux2 = x
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed)(x)
    # The head stays float32 under mixed precision so that softmax and the loss are stable.
    bias = "zeros" if class_prior is None else keras.initializers.Constant(_log_odds(class_prior))
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                 bias_initializer=bias, name="predictions")(x)
    if network.aux_heads:
        outputs = [outputs, module.aux_head(aux1, num_classes, "aux1", seed + 1),
                   module.aux_head(aux2, num_classes, "aux2", seed + 2)]
    model = keras.Model(inputs, outputs, name=f"{name}_classifier")
    for layer in every_layer(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
            if bn_offset and not weights and layer.center:
                layer.beta.assign(keras.ops.full(layer.beta.shape, bn_offset))
    return model


def _log_odds(prior):
    import numpy as np

    p = np.clip(np.asarray(prior, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


def every_layer(model):
    """Every layer of ``model``, descending into nested models (backbone, augmentation)."""
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from every_layer(layer)


def save_classifier(model, path) -> None:
    """Save what inference needs: the architecture and weights, without the optimizer's state or
    compile settings. A .keras file saves every attribute of a compiled model, Adam's two
    moment tensors per weight included; resume keeps them in its own
    checkpoints. A new Functional over the same layers shares the weights and was never
    compiled."""
    import keras

    keras.Model(model.inputs, model.outputs, name=model.name).save(path)


def load_classifier(path):
    """Load a saved classifier for inference, in Keras' safe mode (no arbitrary code from the
    file), computing in float32 whatever precision it trained in (``in_float32``). Uncompiled:
    predicting needs no loss, and the pipeline's own loss classes are not part of the models
    package. A file that is missing, truncated or not a Keras archive
    raises ModelFileError, in one line."""
    import zipfile
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: " + ("a folder, not a .keras file" if path.is_dir()
                                            else "missing"))
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            head = f.read(4)
        raise ModelFileError(f"{path}: " + (
            "empty" if not head else
            "truncated (a zip archive without its end: an interrupted download or copy?)"
            if head == b"PK\x03\x04" else
            f"not a Keras model (a .keras file is a zip archive; this one starts {head!r})")
        ) from None
    missing = {"config.json", "model.weights.h5"} - names
    if missing:
        raise ModelFileError(f"{path}: a zip archive but not a Keras model (no "
                             f"{' or '.join(sorted(missing))} in it)")
    import keras

    import models.layers  # noqa: F401 (registers the custom layers the file refers to)

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # noqa: BLE001 (Keras, h5py and zipfile raise many types)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelFileError(f"{path}: damaged or not a classifier of this project "
                             f"({type(err).__name__}{': ' + reason[:200] if reason else ''})"
                             ) from None
    return in_float32(model)


def in_float32(model):
    """``model`` with every layer computing in float32. Mixed precision keeps the weights in
    float32, so this is the trained network, computed exactly: inference gives one answer on every
    machine and in every exported format (TFLite and ONNX have no bf16 kernels for CPUs)."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in every_layer(model)):
        return model

    def rebuilt(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    clone = keras.models.clone_model(model, clone_function=rebuilt, recursive=True)
    clone.set_weights(model.get_weights())
    return clone


def trained_precision(path) -> str:
    """The dtype policy a saved classifier was trained in (train.precision as resolved on the
    machine that trained it): the one most of the layers in the file's config name."""
    import json
    import zipfile
    from collections import Counter

    with zipfile.ZipFile(path) as archive:
        names = Counter(_policy_names(json.loads(archive.read("config.json"))))
    return names.most_common(1)[0][0] if names else "float32"


def _policy_names(node):
    """Every dtype policy's name in a Keras config (nested dicts and lists)."""
    if isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy":
            yield node["config"]["name"]
            return
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            yield from _policy_names(child)


# Up to this many images (an array) go through one eager call: model.predict first traces and
# optimises a graph, which for IR-v2 costs more than an eager pass over 64 images (BENCHMARKS.md,
# "Start-up costs").
EAGER_IMAGES = 64


def class_probabilities(model, inputs, callbacks=None, tta_flip: bool = False):
    """The main head's class probabilities (N, C) for ``inputs`` (an array or batches), as
    float64; GoogLeNet's auxiliary heads are training aids, never evaluated or used.
    ``callbacks`` reach ``model.predict`` (batches, or more than EAGER_IMAGES images). With
    ``tta_flip``, each image's probabilities are the mean of its own and its mirror image's."""
    import numpy as np

    if tta_flip:
        model = _flip_averaged(model)
    if isinstance(inputs, np.ndarray) and len(inputs) <= EAGER_IMAGES:
        # In the structure the model was built with (a list of one): else Keras warns.
        probs = model([inputs] if isinstance(model.input, list) else inputs, training=False)
        probs = [np.asarray(p) for p in probs] if isinstance(probs, list) else np.asarray(probs)
    else:
        probs = model.predict(inputs, verbose=0, callbacks=callbacks)
    if isinstance(probs, list):
        probs = probs[model.output_names.index("predictions")]
    return probs.astype(np.float64)


def _flip_averaged(model):
    """A model giving the mean of ``model``'s main-head probabilities for an image and for its
    left-right mirror image. Built for one prediction run, never saved: so a Lambda."""
    import keras

    def main_head(outputs):
        return outputs[model.output_names.index("predictions")] if isinstance(
            outputs, list) else outputs

    image = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype)
    mirror = keras.layers.Lambda(lambda x: keras.ops.flip(x, axis=2))(image)  # width axis
    mean = keras.layers.Average()([main_head(model(image)), main_head(model(mirror))])
    return keras.Model(image, mean, name=f"{model.name}_flip_averaged")
