"""Progress of training and evaluation: a live bar in a terminal, one line per epoch in a log.

Whether stdout is a terminal decides. `dvc repro` from a terminal hands its terminal to the
stage (DVC runs the command without redirecting its output); `dvc queue` workers and CI write
to files, where a bar redrawn in place would leave one line per redraw.
"""

from __future__ import annotations

import sys
import threading
import time

import keras
from tqdm import tqdm

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def duration(seconds: float) -> str:
    """``seconds`` as M:SS, or H:MM:SS from an hour."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def metrics_text(logs: dict) -> str:
    """The logs as Keras' own progress bar prints them: `` - name: value`` each."""
    return "".join(f" - {name}: {value:.4f}" if abs(value) >= 1e-3 else f" - {name}: {value:.4e}"
                   for name, value in logs.items())


class LiveBar:
    """A tqdm bar that redraws itself every second, so that its clock keeps running through a
    step that takes minutes (the first one, which builds the graph)."""

    def __init__(self, stream, total: int, desc: str, unit: str):
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=stream, leave=False,
                        bar_format=BAR_FORMAT.replace("{total_fmt}", "{total_fmt} " + unit))
        self.closed = threading.Event()
        threading.Thread(target=self.redraw, daemon=True).start()

    def redraw(self) -> None:
        while not self.closed.wait(1.0):
            self.bar.refresh()

    def update(self, postfix: str) -> None:
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.closed.set()
        self.bar.close()


class TrainingProgress(keras.callbacks.Callback):
    """In a terminal, a bar per epoch: steps, images/s, the epoch's time left and the run's;
    otherwise one line per epoch with every metric in the logs. Place it after the callbacks
    that edit the logs (EpochTimer, MainHeadLogNames); fit runs with verbose=0."""

    def __init__(self, images: int, batch_size: int, val_steps: int, stream=None):
        super().__init__()
        self.images, self.batch_size, self.val_steps = images, batch_size, val_steps
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.bar, self.epoch_seconds = None, []

    def run_left(self, epoch: int, epoch_left: float, per_step: float) -> float:
        """Seconds left in the run: this epoch's, then each later one as long as the shortest
        epoch so far (the first builds the graph), or before any, as its steps."""
        per_epoch = min(self.epoch_seconds, default=per_step * self.params["steps"])
        return epoch_left + (self.params["epochs"] - epoch - 1) * per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.start = epoch, time.perf_counter()
        self.steps_end = self.timed_from = None
        if self.live:
            self.bar = LiveBar(self.stream, self.params["steps"],
                               f"epoch {epoch + 1}/{self.params['epochs']}", "steps")
            if not self.epoch_seconds:
                self.bar.bar.set_postfix_str("building the graph: the first step is slow")

    def on_train_batch_end(self, batch, logs=None):
        self.steps_end = now = time.perf_counter()
        if not self.live:
            return
        # Time left from the steps after the epoch's first, which may have built the graph.
        if self.timed_from is None:
            self.timed_from, per_step = (now, batch), (now - self.start) / (batch + 1)
        else:
            per_step = (now - self.timed_from[0]) / (batch - self.timed_from[1])
        rate = min((batch + 1) * self.batch_size, self.images) / (now - self.start)
        left = (self.params["steps"] - batch - 1) * per_step
        self.bar.update(f"{rate:.1f} images/s, loss {logs['loss']:.4f}, "
                        f"run {duration(self.run_left(self.epoch, left, per_step))} left")

    def on_test_begin(self, logs=None):
        self.on_test_batch_end(-1)

    def on_test_batch_end(self, batch, logs=None):
        if self.bar is not None:  # fit's validation pass
            self.bar.bar.set_postfix_str(f"validating {batch + 1}/{self.val_steps}")

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        rate = self.images / (self.steps_end - self.start)
        self.epoch_seconds.append(seconds)
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        left = self.run_left(epoch, 0.0, 0.0)
        print(f"epoch {epoch + 1}/{self.params['epochs']}: {self.params['steps']} steps in "
              f"{seconds:.0f} s ({rate:.1f} images/s)"
              f"{f', run {duration(left)} left' if left else ''}"
              f"{metrics_text({k: v for k, v in logs.items() if k != 'epoch_seconds'})}",
              file=self.stream, flush=True)


class PredictionProgress(keras.callbacks.Callback):
    """``model.predict``'s progress: a bar in a terminal (batches, images/s, time left), and
    one line at the end in any case."""

    def __init__(self, label: str, images: int, batch_size: int, stream=None):
        super().__init__()
        self.label, self.images, self.batch_size = label, images, batch_size
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.bar = None

    def on_predict_begin(self, logs=None):
        self.start = time.perf_counter()
        if self.live:
            self.bar = LiveBar(self.stream, self.params["steps"], self.label, "batches")

    def on_predict_batch_end(self, batch, logs=None):
        if self.bar is not None:
            done = min((batch + 1) * self.batch_size, self.images)
            self.bar.update(f"{done / (time.perf_counter() - self.start):.1f} images/s")

    def on_predict_end(self, logs=None):
        seconds = time.perf_counter() - self.start
        if self.bar is not None:
            self.bar.close()
        print(f"{self.label}: {self.images} images in {seconds:.0f} s "
              f"({self.images / seconds:.1f} images/s)", file=self.stream, flush=True)
