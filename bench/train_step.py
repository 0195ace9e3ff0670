"""Seconds per training batch of 64 at 75x75 with 51 classes on this machine's CPU.

    TF_ENABLE_ONEDNN_OPTS=0 python bench/train_step.py passes
    TF_ENABLE_ONEDNN_OPTS=1 python bench/train_step.py passes
    python bench/train_step.py fit [NETWORK]      # the train stage's step, jit_compile=False
    python bench/train_step.py fit-xla [NETWORK]  # the same with XLA compilation
    python bench/train_step.py fit NETWORK mixed_bfloat16  # train.precision (default float32)

``passes``: a forward pass and a forward+backward pass of bare InceptionResNetV2 under tf.function;
run it with both values of TF_ENABLE_ONEDNN_OPTS, one after the other, to compare TensorFlow's
default kernels with oneDNN's. ``fit`` / ``fit-xla``: the classifier the train stage builds (default
inception_resnet_v2), compiled as it compiles it (Adam, binary cross-entropy, GoogLeNet's
auxiliary losses), through ``train_on_batch``, then ``predict_on_batch``, under the global
precision policy the train stage sets from ``train.precision``; the losses of the timed steps
(one fixed batch, same seed) show how far the precisions' numbers drift apart. oneDNN is
turned on as the pipeline does. Every measurement prints the first call
(tracing and compiling included) and the median of the timed calls after it.
"""

import os
import sys
import time

from inception_pipeline.runtime import configure_tensorflow

configure_tensorflow()  # oneDNN on, as the pipeline runs; before TensorFlow is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

BATCH, SIZE, CLASSES = 64, 75, 51


def timed(label: str, step, repeats: int) -> list:
    """Times ``step``; returns what its timed calls returned."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times, results = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        results.append(step())
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    print(f"{label}: first call {first:.1f} s, then median {median:.2f} s per batch "
          f"({BATCH / median:.1f} images/s, {repeats} calls)", flush=True)
    return results


def passes() -> None:
    model = keras.applications.InceptionResNetV2(include_top=False, weights=None,
                                                 input_shape=(SIZE, SIZE, 3), pooling="avg")
    images = tf.random.uniform((BATCH, SIZE, SIZE, 3))

    def forward_backward(x):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(model(x, training=True))
        return tape.gradient(y, model.trainable_variables)

    onednn = f"TF_ENABLE_ONEDNN_OPTS={os.environ['TF_ENABLE_ONEDNN_OPTS']}"
    inference = tf.function(lambda x: model(x, training=False))
    timed(f"{onednn} inference", lambda: inference(images), 3)
    train = tf.function(forward_backward)
    timed(f"{onednn} forward+backward", lambda: train(images), 3)


def fit(network: str, jit_compile: bool, precision: str) -> None:
    from inception_pipeline.training import compile_model, make_loss
    from models import AUX_LOSS_WEIGHT, build_classifier

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(precision)
    model = build_classifier(network, SIZE, CLASSES, weights=None, bn_momentum=0.9,
                             augment=True, seed=0)
    compile_model(model, keras.optimizers.Adam(1e-3), make_loss("binary"), AUX_LOSS_WEIGHT,
                  jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    one_hot = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, BATCH)]
    labels = one_hot if len(model.outputs) == 1 else {name: one_hot for name in model.output_names}
    label = f"{network} {precision}"
    losses = timed(f"{label} train_on_batch, jit_compile={jit_compile}",
                   lambda: model.train_on_batch(images, labels, return_dict=True)["loss"], 4)
    print(f"{label} losses of the timed steps: {[round(float(loss), 4) for loss in losses]}")
    timed(f"{label} predict_on_batch", lambda: model.predict_on_batch(images), 4)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "passes"
    network = sys.argv[2] if len(sys.argv) > 2 else "inception_resnet_v2"
    precision = sys.argv[3] if len(sys.argv) > 3 else "float32"
    if mode == "passes":
        passes()
    else:
        fit(network, jit_compile=mode == "fit-xla", precision=precision)
