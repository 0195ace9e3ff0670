"""What a training run is made of, besides its network and data: the loss, the optimizer and
its schedule, the logged metrics, compile, and the per-epoch callbacks.

Imported only after params are validated, since importing TensorFlow takes seconds.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="inception_pipeline")
class ProbabilityBinaryCrossentropy(keras.losses.BinaryCrossentropy):
    """Binary cross-entropy of the softmax probabilities, as standalone Keras (<= 2.3) computed
    it for a softmax classifier: ``train.loss: binary_probabilities``.

    Keras 3's BinaryCrossentropy, given a softmax output, takes the logits Keras cached on it
    and treats them as sigmoid logits (docs/study.md, "The study's metric pitfall, made visible").
    """

    def call(self, y_true, y_pred):
        # Clipping makes a new tensor, without the cached logits: the loss sees probabilities.
        epsilon = keras.config.epsilon()
        return super().call(y_true, keras.ops.clip(y_pred, epsilon, 1 - epsilon))


def make_loss(name: str, label_smoothing: float = 0.0,
              reduction: str | None = "sum_over_batch_size") -> keras.losses.Loss:
    """The loss; ``reduction=None`` gives one value per image (the multi-worker loop's)."""
    loss = {"binary": keras.losses.BinaryCrossentropy,
            "binary_probabilities": ProbabilityBinaryCrossentropy,
            "categorical": keras.losses.CategoricalCrossentropy}[name]
    return loss(label_smoothing=label_smoothing, reduction=reduction)


@keras.saving.register_keras_serializable(package="inception_pipeline")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate rises linearly from lr / steps to lr over the first ``steps`` steps,
    then follows ``after`` (a schedule or a constant), counted from the end of the warm-up.

    Adam's first updates are about lr in size for every weight whatever its gradient; a warm-up
    keeps the first steps small while batch-norm statistics settle. What it does for each
    network here is measured in docs/study.md, "Every network learns".
    """

    def __init__(self, lr: float, steps: int, after):
        self.lr, self.steps, self.after = lr, steps, after

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        after = self.after(step - self.steps) if callable(self.after) else self.after
        rising = self.lr * (step + 1) / self.steps
        return keras.ops.where(step < self.steps, rising, after)

    def get_config(self):
        after = (keras.optimizers.schedules.serialize(self.after) if callable(self.after)
                 else self.after)
        return {"lr": self.lr, "steps": self.steps, "after": after}

    @classmethod
    def from_config(cls, config):
        after = config["after"]
        if isinstance(after, dict):
            after = keras.optimizers.schedules.deserialize(after)
        return cls(config["lr"], config["steps"], after)


@keras.saving.register_keras_serializable(package="inception_pipeline")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam (and AdamW, with ``weight_decay``), each weight's update one
    ``ResourceApplyAdam`` op: TensorFlow's kernel of the same formula (BENCHMARKS.md, "First
    epoch").

    Keras writes the update as about 22 graph ops per weight; IR-v2 has 490 weights, so the
    training step's graph loses about 10,000 ops, which the first epoch traces in Python.
    Weight decay, the moving average and gradient clipping stay Keras' own (they run around
    ``update_step``); results match Keras' Adam to float rounding (tests/test_regularisers.py).
    """

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        beta_1, beta_2 = keras.ops.cast(self.beta_1, dtype), keras.ops.cast(self.beta_2, dtype)
        step = keras.ops.cast(self.iterations + 1, dtype)
        # The handles of this device's copies, also inside a distribution strategy's update.
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle, beta1_power=keras.ops.power(beta_1, step),
            beta2_power=keras.ops.power(beta_2, step), lr=keras.ops.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=keras.ops.cast(self.epsilon, dtype),
            grad=keras.ops.cast(gradient, dtype))


def make_optimizer(name: str, lr: float, schedule: str, steps_per_epoch: int, epochs: int,
                   warmup_epochs: float = 0.0, clip_norm: float = 0.0, weight_decay: float = 0.0,
                   ema: float = 0.0):
    """``name`` at learning rate ``lr`` following ``schedule`` over the run, after a linear
    warm-up of ``warmup_epochs`` (0: none), each step's gradients scaled down to a global norm
    of at most ``clip_norm`` (0: not clipped).

    ``weight_decay`` (0: none) is decoupled from the gradient: each step every weight shrinks
    by lr x weight_decay x itself (AdamW for adam, as in Keras' AdamW; Keras' SGD and RMSprop
    decay the same way);
    ``compile_model`` exempts biases and batch-norm scales and offsets. ``ema`` (0: none) keeps
    an exponential moving average of the weights with that decay (``EmaWeights`` uses it)."""
    warmup = round(warmup_epochs * steps_per_epoch)
    if schedule == "cosine":  # to 0 at the end of the run
        rate = keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, steps_per_epoch * epochs - warmup))
    elif schedule == "exponential":  # the paper: x0.94 every two epochs
        rate = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=2 * steps_per_epoch, decay_rate=0.94, staircase=True)
    else:
        rate = lr
    if warmup:
        rate = WarmUp(lr, warmup, rate)
    options = {"global_clipnorm": clip_norm} if clip_norm else {}
    if weight_decay:
        options["weight_decay"] = weight_decay
    if ema:
        options.update(use_ema=True, ema_momentum=ema)
    if name == "rmsprop":  # the paper's settings: decay 0.9, epsilon 1.0
        return keras.optimizers.RMSprop(learning_rate=rate, rho=0.9, epsilon=1.0, **options)
    optimizer = {"adam": FusedAdam, "sgd": keras.optimizers.SGD}[name]
    return optimizer(learning_rate=rate, **options)


def metrics() -> list[keras.metrics.Metric]:
    """Logged whatever the loss, so runs with different losses compare on the same curves.

    ``accuracy`` is always categorical (top-1, argmax); ``binary_accuracy`` is the element-wise
    metric old Keras silently substituted for it when the loss was binary cross-entropy.
    """
    return [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"),
        keras.metrics.BinaryAccuracy(name="binary_accuracy"),
        keras.metrics.CategoricalCrossentropy(name="categorical_crossentropy"),
        keras.metrics.BinaryCrossentropy(name="binary_crossentropy"),
    ]


def compile_model(model: keras.Model, optimizer, loss: keras.losses.Loss,
                  aux_loss_weight: float, jit_compile: bool = False) -> None:
    """Compile for training; with auxiliary heads, total = main + w * aux1 + w * aux2.

    Metrics are computed on the main head only: that is the classifier that gets evaluated.
    """
    if len(model.outputs) == 1:
        losses, weights, metric_map = loss, None, metrics()
    else:
        losses = {name: loss for name in model.output_names}
        weights = loss_weights(model.output_names, aux_loss_weight)
        metric_map = {"predictions": metrics()}
    # XLA off by default (Keras' "auto" would turn it on): with oneDNN on it is no faster on
    # CPU and compiles longer (bench/train_step.py, BENCHMARKS.md).
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, metrics=metric_map,
                  jit_compile=jit_compile)
    if optimizer.weight_decay:  # decided before the optimizer is built
        optimizer.exclude_from_weight_decay(var_list=not_decayed(model))
    # Built now, not in the first traced step: variables created there make tf.function trace
    # the step twice and guard each one's initial value with a cond (IR-v2: 980 of them)
    # (bench/startup.py, BENCHMARKS.md "Start-up costs").
    model.optimizer.build(model.trainable_variables)


def not_decayed(model: keras.Model) -> list:
    """The weights weight decay leaves alone: every 1-D one, i.e. biases and batch norms'
    scales (gamma) and offsets (beta), which set a layer's scale rather than fit the data."""
    return [v for v in model.trainable_variables if len(v.shape) <= 1]


def loss_weights(output_names: list[str], aux_loss_weight: float) -> dict[str, float]:
    """Each output's weight in the total loss: 1 for the main head, ``aux_loss_weight`` else."""
    return {name: 1.0 if name == "predictions" else aux_loss_weight for name in output_names}


class MainHeadLogNames(keras.callbacks.Callback):
    """With auxiliary heads Keras logs "predictions_accuracy"; log it as "accuracy", like every
    other network, so that curves of all networks share names in ``dvc plots diff``."""

    def on_epoch_end(self, epoch, logs=None):
        for key in [k for k in logs if "predictions_" in k]:
            logs[key.replace("predictions_", "")] = logs.pop(key)


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` to each epoch's logs, ahead of the DVCLive callback."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.start


class EmaWeights(keras.callbacks.Callback):
    """With the optimizer's exponential moving average of the weights (``train.ema``), makes
    the averaged weights the ones that count: validated every epoch, kept by early stopping,
    saved at the end.

    Keras swaps the average in only once, at the end of fit (``finalize_variable_values``).
    This swaps it in for each validation and the raw weights back for the next epoch's
    training; at the end of training it swaps it in again, after ``EarlyStop`` (place this
    after it) has restored the best epoch's weights and optimizer state. Epoch checkpoints
    keep the raw weights and, in the optimizer's state, the average: a resumed run goes on
    with both.
    """

    def on_test_begin(self, logs=None):
        self.raw = [v.numpy() for v in self.model.trainable_variables]
        self.model.optimizer.finalize_variable_values(self.model.trainable_variables)

    def on_test_end(self, logs=None):
        for variable, value in zip(self.model.trainable_variables, self.raw, strict=True):
            variable.assign(value)
        del self.raw

    def on_train_end(self, logs=None):
        self.model.optimizer.finalize_variable_values(self.model.trainable_variables)
