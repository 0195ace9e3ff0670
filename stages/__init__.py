"""Pipeline stages: one module per DVC stage, each run as ``python -m stages.NAME``.

Every module keeps its pure logic (parse, clip, split, score) in plain functions that the
tests call directly, and wires them to files and params in ``main()``.
"""

import os

# TensorFlow turns its oneDNN kernels on by default only on some x86 CPUs. Without them,
# convolution gradients on these machines run 2x slower (IR-v2 at 75x75, batch 64: 5.03 s ->
# 2.50 s per forward+backward pass, bench/train_step.py on 2 cores), so ask for them
# everywhere. Must be set before TensorFlow is imported; a value the user set wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of logs
