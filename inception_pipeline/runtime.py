"""TensorFlow's process-wide settings, applied by one explicit call that also imports TensorFlow."""

import os


def configure_tensorflow() -> None:
    """Ask for oneDNN kernels and quiet start-up logs (a value the user set wins), then import
    TensorFlow and turn off grappler, its graph optimiser.

    TensorFlow turns its oneDNN kernels on by default only on some x86 CPUs. Without them,
    convolution gradients on these machines run 2x slower (IR-v2 at 75x75, batch 64: 5.03 s ->
    2.50 s per forward+backward pass, bench/train_step.py on 2 cores). Both variables are read
    when TensorFlow is first imported, so later calls change nothing.

    Grappler spent longer on IR-v2's training graph (41,000 nodes) than the step runs: the
    first call took 90.4 s with it, 46.1 s without, and later steps were no slower
    (bench/startup.py, BENCHMARKS.md "Start-up costs"). oneDNN's own graph rewrite is not
    part of grappler and stays on.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep start-up chatter out of logs
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
