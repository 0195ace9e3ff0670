"""TensorFlow's process-wide settings, applied by one explicit call that also imports TensorFlow;
and the filter that keeps TensorFlow's and LiteRT's start-up chatter off the terminal.

``INCEPTION_TF_LOG=1`` in the environment turns the filter and the log level off: every line
TensorFlow and LiteRT write reaches stderr.
"""

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# /proc/cpuinfo flags of CPUs that compute in bfloat16 natively; elsewhere TensorFlow emulates
# it, slower than float32 (BENCHMARKS.md: "Mixed precision").
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}

FULL_LOG = "INCEPTION_TF_LOG"

# Informational lines printed while TensorFlow or LiteRT start. TensorFlow's C++ code writes
# the first two from static initialisers of two libraries (so twice per process), before
# TF_CPP_MIN_LOG_LEVEL is read; only a filter on file descriptor 2 catches them.
START_UP_NOISE = (
    b"All log messages before absl::InitializeLog() is called are written to STDERR",
    b"oneDNN custom operations are on",
    b"Created TensorFlow Lite XNNPACK delegate for CPU",
)


def full_log() -> bool:
    return os.environ.get(FULL_LOG) == "1"


@contextmanager
def quiet_start_up() -> Iterator[None]:
    """Hold back what is written to file descriptor 2 (C++ code included) inside the block, then
    pass on every line but START_UP_NOISE: warnings and errors still reach the user."""
    if full_log():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held:
                if not any(noise in line for noise in START_UP_NOISE):
                    os.write(2, line)


def configure_tensorflow() -> None:
    """Ask for oneDNN kernels and quiet logs (a value the user set wins), then import TensorFlow
    without its start-up lines and turn off grappler, its graph optimiser.

    TensorFlow turns its oneDNN kernels on by default only on some x86 CPUs; without them
    convolution gradients are far slower (bench/train_step.py). Both variables are read when
    TensorFlow is first imported, so later calls change nothing.

    Grappler rewrites IR-v2's training graph (41,000 nodes) for longer than the step runs,
    and later steps are no faster for it (bench/startup.py). oneDNN's own graph rewrite is not
    part of grappler and stays on. Figures: BENCHMARKS.md.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if not full_log():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # INFO and WARNING lines off
    with quiet_start_up():
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
