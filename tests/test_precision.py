"""train.precision: auto picks the dtype policy from the machine (pure function of /proc/cpuinfo's
text and the GPU list)."""

import pytest

from inception_pipeline.params import problems
from inception_pipeline.runtime import precision_policy

ZEN4 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512bw "
        "avx512_bf16 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"
SKYLAKE = "flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
# A flag of that name in another line is not a CPU flag.
BUGS_ONLY = "flags\t\t: fpu sse2 avx2\nmodel name\t: avx512_bf16 emulation\n"


@pytest.mark.parametrize("cpuinfo, gpus, expected", [
    (ZEN4, [], "mixed_bfloat16"),
    (SAPPHIRE_RAPIDS, [], "mixed_bfloat16"),
    (SKYLAKE, [], "float32"),
    (BUGS_ONLY, [], "float32"),
    ("", [], "float32"),  # no /proc/cpuinfo (not Linux)
    (SKYLAKE, ["/physical_device:GPU:0"], "mixed_float16"),
    (ZEN4, ["/physical_device:GPU:0"], "mixed_float16"),
])
def test_auto_follows_the_machine(cpuinfo, gpus, expected):
    assert precision_policy("auto", cpuinfo, gpus) == expected


@pytest.mark.parametrize("setting", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_an_explicit_setting_is_kept_whatever_the_machine(setting):
    assert precision_policy(setting, ZEN4, ["/physical_device:GPU:0"]) == setting


def test_auto_is_a_valid_setting_and_others_are_not():
    assert not [p for p in problems({"train": {"precision": "auto"}}) if "precision" in p]
    assert [p for p in problems({"train": {"precision": "bf16"}}) if "precision" in p]


@pytest.mark.parametrize("name", ["googlenet", "inception_resnet_v1"])  # auxiliary heads; own layers
def test_a_model_trained_in_bf16_is_loaded_for_inference_in_float32(name, tmp_path):
    """The saved file says what the layers trained in; loading gives the same weights computing
    in float32, whose answers are the float32 network's (a bf16 forward pass is not)."""
    import keras
    import numpy as np

    from models import (build_classifier, class_probabilities, every_layer, load_classifier,
                        save_classifier, trained_precision)

    def build():
        keras.utils.set_random_seed(0)
        return build_classifier(name, 75, 5, weights=None, bn_momentum=0.9, augment=True, seed=0)

    images = np.random.default_rng(0).integers(0, 256, (4, 75, 75, 3), dtype=np.uint8)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        trained = build()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = tmp_path / "model.keras"
    save_classifier(trained, path)
    reference = build()  # the same weights, built in float32
    reference.set_weights(trained.get_weights())

    loaded = load_classifier(path)
    assert trained_precision(path) == "mixed_bfloat16"
    layers = list(every_layer(loaded))
    assert layers and {layer.dtype_policy.name for layer in layers} == {"float32"}
    expected = class_probabilities(reference, images)
    np.testing.assert_allclose(class_probabilities(loaded, images), expected, rtol=1e-5,
                               atol=1e-6)
    bf16 = class_probabilities(trained, images)
    assert np.abs(bf16 - expected).max() > 1e-5  # not a no-op


def test_a_float32_model_says_so(tmp_path):
    import keras

    from models import save_classifier, trained_precision

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    save_classifier(model, tmp_path / "model.keras")
    assert trained_precision(tmp_path / "model.keras") == "float32"
