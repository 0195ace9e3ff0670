"""Seconds per forward and forward+backward pass of Keras' InceptionResNetV2 at 75x75, batch 64.

    TF_ENABLE_ONEDNN_OPTS=0 python bench/train_step.py
    TF_ENABLE_ONEDNN_OPTS=1 python bench/train_step.py

Run both lines, one after the other, to compare TensorFlow's default kernels with oneDNN's on
the same machine (stages/__init__.py turns oneDNN on for the pipeline). Each pass is traced
once, then timed three times; the median is printed.
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

model = keras.applications.InceptionResNetV2(include_top=False, weights=None,
                                             input_shape=(75, 75, 3), pooling="avg")
images = tf.random.uniform((64, 75, 75, 3))


def forward_backward(x):
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(model(x, training=True))
    return tape.gradient(y, model.trainable_variables)


passes = {"inference": tf.function(lambda x: model(x, training=False)),
          "forward+backward": tf.function(forward_backward)}
for name, step in passes.items():
    step(images)  # trace
    times = []
    for _ in range(3):
        start = time.perf_counter()
        step(images)
        times.append(time.perf_counter() - start)
    print(f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')} {name}: "
          f"median {np.median(times):.2f} s per batch of 64")
