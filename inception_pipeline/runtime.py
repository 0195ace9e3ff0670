"""TensorFlow's process-wide settings, applied by one explicit call that also imports TensorFlow."""

import os
from pathlib import Path

# /proc/cpuinfo flags of CPUs that compute in bfloat16 natively; elsewhere TensorFlow emulates
# it, slower than float32 (BENCHMARKS.md: "Mixed precision").
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


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


def precision_policy(setting: str, cpuinfo: str, gpus: list) -> str:
    """The Keras dtype policy for train.precision ``setting``: the setting itself, or for
    "auto" mixed_float16 when there are ``gpus``, mixed_bfloat16 when the flags in ``cpuinfo``
    (/proc/cpuinfo's text) show native bf16, float32 otherwise."""
    if setting != "auto":
        return setting
    if gpus:
        return "mixed_float16"
    flags = {flag for line in cpuinfo.splitlines() if line.startswith("flags")
             for flag in line.partition(":")[2].split()}
    return "mixed_bfloat16" if flags & NATIVE_BF16_FLAGS else "float32"


def machine_precision(setting: str) -> str:
    """precision_policy for this machine (after configure_tensorflow)."""
    import tensorflow as tf

    cpuinfo = Path("/proc/cpuinfo")
    return precision_policy(setting, cpuinfo.read_text() if cpuinfo.exists() else "",
                            tf.config.list_physical_devices("GPU"))
