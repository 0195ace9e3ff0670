"""TensorFlow's process-wide settings, applied by one explicit call that also imports TensorFlow."""

import os


def configure_tensorflow() -> None:
    """Ask for oneDNN kernels and quiet start-up logs (a value the user set wins), then import
    TensorFlow and turn off grappler, its graph optimiser.

    TensorFlow turns its oneDNN kernels on by default only on some x86 CPUs; without them
    convolution gradients are far slower (bench/train_step.py). Both variables are read when
    TensorFlow is first imported, so later calls change nothing.

    Grappler rewrites IR-v2's training graph (41,000 nodes) for longer than the step runs,
    and later steps are no faster for it (bench/startup.py). oneDNN's own graph rewrite is not
    part of grappler and stays on. Figures: BENCHMARKS.md.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep start-up chatter out of logs
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
