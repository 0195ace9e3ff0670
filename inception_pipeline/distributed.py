"""``train.strategy``: one device, mirrored over local devices, or multi_worker: one model
trained together by the processes TF_CONFIG lists.

Keras 3's fit() fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so
``fit_multi_worker`` is the loop fit would run, written out with the same pieces:

- Each step takes the global batch of ``train.batch_size`` rows that a one-device run takes
  (``Batches``, same order); every replica reads only its consecutive share of it
  (``Batches.replica_part``), B / replicas rows.
- Each replica's loss is the sum of its per-image losses over the rows of the whole global
  batch; the optimizer sums the replicas' gradients (an all-reduce over every worker), which
  gives the gradient of the global batch's mean loss, as on one device. Exactly so only for a
  network without batch statistics: BatchNormalization normalises each replica's share with
  the share's own mean and variance, so the replicas differentiate a slightly different loss.
  (tests/test_distribute.py checks the sum against one device on a network without it.)
- The curves are Keras metrics created under the strategy: reading one sums its totals over all
  replicas of all workers, so every worker gets the same numbers. They carry fit's names and
  go through the same callbacks (EpochTimer, MainHeadLogNames, DVCLive).
- Only the chief writes into the project (the curves and the model). The other workers save
  the model too, into a temporary folder that is deleted: TensorFlow's multi-worker guide has
  every worker save, since saving can involve collective operations.
- Then every worker waits for all the others (``wait_for_all_workers``) and they exit
  together: the coordination service runs inside the chief, and a worker that exits while
  another still works is an error for that one (tensorflow/tensorflow#58434).

Every worker runs the same steps in the same order: each step waits for all of them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from inception_pipeline.batches import Batches
from inception_pipeline.errors import PipelineError
from inception_pipeline.io import atomic_path
from inception_pipeline.training import metrics
from models import save_classifier

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
# Seconds without a heartbeat after which the coordination service declares a worker dead
# and fails the others. TensorFlow's default, 10 s, with a heartbeat every 5 s that itself
# fails after 5 s, is shorter than a busy machine can starve a process: two workers sharing
# 2 cores failed with "heartbeat timeout" in their first step. A dead worker's peers notice
# sooner anyway: its connections close.
HEARTBEAT_ENV, HEARTBEAT_DEFAULT = "MULTI_WORKER_HEARTBEAT_SECONDS", 120
# A worker that stops sending heartbeats fails the exit barrier earlier than this.
EXIT_BARRIER_SECONDS = 3600


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """``train.strategy``: default (one device), mirrored (one replica per local GPU) or
    multi_worker (one replica per device of every worker that TF_CONFIG lists).

    Without GPUs, mirrored uses every CPU device TensorFlow lists: one, unless it was
    configured as several logical devices, as the tests do. multi_worker is
    MultiWorkerMirroredStrategy, which reads TF_CONFIG (checked here first, so that a missing
    or malformed one is one line, not a TensorFlow traceback); Keras 3's fit() fails under it
    (keras-team/keras#20585), so the train stage runs ``fit_multi_worker``
    instead. Create the strategy before any other TensorFlow work: MultiWorkerMirroredStrategy
    has to start the cluster's servers before the runtime is initialised.
    """
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        read_tf_config()  # raises a PipelineError naming the problem
        configure_coordination_service()  # its heartbeat timeout (MULTI_WORKER_HEARTBEAT_SECONDS)
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


@dataclass(frozen=True)
class Task:
    type: str  # "chief" or "worker"
    index: int
    workers: int  # tasks in the cluster, the chief included
    is_chief: bool  # the "chief" task, or worker 0 when the cluster names no chief


def read_tf_config(text: str | None = None) -> Task:
    """This process's task in TF_CONFIG (``text``, else the environment variable)."""
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        raise PipelineError("train.strategy=multi_worker: set TF_CONFIG, e.g. "
                            f"TF_CONFIG='{TF_CONFIG_EXAMPLE}' (docs/scaling.md: Several machines)")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], task["index"]
        tasks = {name: list(cluster[name]) for name in ("chief", "worker") if name in cluster}
    except (ValueError, KeyError, TypeError) as err:
        raise PipelineError(f"TF_CONFIG: malformed ({type(err).__name__}: {err}); expected "
                            f"{TF_CONFIG_EXAMPLE}") from None
    if set(cluster) - {"chief", "worker"} or len(tasks.get("chief", [])) > 1:
        raise PipelineError(f"TF_CONFIG: multi_worker takes at most one chief and workers, not "
                            f"{sorted(cluster)}")
    if kind not in tasks or not isinstance(index, int) or not 0 <= index < len(tasks[kind]):
        raise PipelineError(f"TF_CONFIG: task {kind!r} {index!r} is not in the cluster "
                            f"({', '.join(f'{len(v)} {k}' for k, v in tasks.items())})")
    for address in (a for addresses in tasks.values() for a in addresses):
        if not isinstance(address, str) or not address.rpartition(":")[2].isdigit():
            raise PipelineError(f"TF_CONFIG: {address!r} is not host:port")
    is_chief = kind == "chief" or ("chief" not in tasks and index == 0)
    return Task(kind, index, sum(map(len, tasks.values())), is_chief)


def configure_coordination_service() -> None:
    """Set the coordination service's heartbeat timeout to MULTI_WORKER_HEARTBEAT_SECONDS
    (default 120). Call before creating MultiWorkerMirroredStrategy: it starts the service
    with this configuration, as it would its own (TF 2.21, collective_all_reduce_strategy.py),
    and only when none is configured yet. TensorFlow has no public setting for it."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import multi_worker_util
    from tensorflow.python.eager import context

    text = os.environ.get(HEARTBEAT_ENV, str(HEARTBEAT_DEFAULT))
    if not text.isdigit() or int(text) == 0:
        raise PipelineError(f"{HEARTBEAT_ENV}={text!r}: expected a whole number of seconds > 0")
    cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    context.context().configure_coordination_service(
        service_type="standalone",
        service_leader=multi_worker_util.coordination_leader(cluster),
        heartbeat_timeout_in_ms=int(text) * 1000,
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name=job,
                                                                 num_tasks=cluster.num_tasks(job))
                          for job in ("chief", "worker") if job in cluster.jobs])


def wait_for_all_workers(barrier: str) -> None:
    """Return once every worker has called this with ``barrier``."""
    from tensorflow.python.eager import context

    context.context().wait_at_barrier(barrier, EXIT_BARRIER_SECONDS * 1000)


def check_batch_size(batch_size: int, train_rows: int, replicas: int) -> None:
    """Every replica gets an equal share of each full batch, and some rows of the last one."""
    if batch_size % replicas:
        raise PipelineError(f"train.batch_size={batch_size}: must be divisible by the "
                            f"{replicas} replicas of train.strategy=multi_worker")
    if 0 < train_rows % batch_size < replicas:
        # An empty share would give BatchNormalization the statistics of no rows at all.
        raise PipelineError(f"train.batch_size={batch_size}: the last batch of the "
                            f"{train_rows} training images would have {train_rows % batch_size} "
                            f"row(s), fewer than the {replicas} replicas; choose another size")


def fit_multi_worker(model: keras.Model, strategy: tf.distribute.Strategy, train: Batches,
                     val: Batches, epochs: int, loss: keras.losses.Loss,
                     loss_weights: dict[str, float],
                     callbacks: list[keras.callbacks.Callback]) -> None:
    """``model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks)`` under
    ``strategy``. ``loss`` gives one value per image (``make_loss(..., reduction=None)``);
    with several outputs, the total is the sum over outputs of ``loss_weights[name] * loss``.

    One difference from fit: with several outputs, fit's curve of each output's own loss is a
    mean over batches (a short last batch weighs as much as a full one); here it is a mean over
    images, like every other curve. They agree when every batch is full.
    """
    outputs = model.output_names
    with strategy.scope():
        # Built here: variables cannot be created inside a replica's step.
        model.optimizer.build(model.trainable_variables)
        train_curves, val_curves = epoch_metrics(outputs), epoch_metrics(outputs)

    def image_losses(labels, predictions, weights):
        """Each output's loss for each image times its sample weight (train.class_weight, else
        1), and their weighted total."""
        predictions = dict(zip(outputs, predictions)) if len(outputs) > 1 else {
            outputs[0]: predictions}
        each = {name: loss(labels, p) * weights for name, p in predictions.items()}
        total = sum(loss_weights.get(name, 1.0) * value for name, value in each.items())
        return predictions["predictions"], each, total

    def update(curves, labels, predictions, each, total):
        for name, curve in curves.items():
            if name == "loss":
                curve.update_state(total)
            elif name.endswith("_loss"):  # one output's loss
                curve.update_state(each[name.removesuffix("_loss")])
            else:  # training.metrics(), of the main head
                curve.update_state(labels, predictions)

    train_data, val_data = distribute(strategy, train), distribute(strategy, val)

    # Traced once, for any batch size: the signature's batch dimension is None.
    @tf.function(input_signature=train_data.element_spec)
    def train_step(images, labels, weights, global_rows):
        def replica_step(images, labels, weights, global_rows):
            with tf.GradientTape() as tape:
                predictions, each, total = image_losses(labels, model(images, training=True),
                                                        weights)
                step_loss = tf.nn.compute_average_loss(total, global_batch_size=global_rows)
                if model.losses:  # weight regularisation, none in this project's networks
                    step_loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                scaled = model.optimizer.scale_loss(step_loss)  # mixed_float16; else unchanged
            gradients = tape.gradient(scaled, model.trainable_variables)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            update(train_curves, labels, predictions, each, total)
        strategy.run(replica_step, args=(images, labels, weights, global_rows))

    @tf.function(input_signature=val_data.element_spec)
    def val_step(images, labels, weights, global_rows):  # the row count matters to gradients only
        def replica_step(images, labels, weights):
            predictions, each, total = image_losses(labels, model(images, training=False),
                                                    weights)
            update(val_curves, labels, predictions, each, total)
        strategy.run(replica_step, args=(images, labels, weights))

    callbacks = keras.callbacks.CallbackList(callbacks, model=model)
    callbacks.on_train_begin()
    for epoch in range(epochs):
        start = time.perf_counter()
        # fit's order: Keras 3's fit calls on_epoch_end once before its first epoch, so its
        # epoch e reads Batches' order e + 1.
        train.set_epoch(epoch + 1)
        for curve in [*train_curves.values(), *val_curves.values()]:
            curve.reset_state()
        callbacks.on_epoch_begin(epoch)
        for step in train_data:
            train_step(*step)
        callbacks.on_test_begin()  # as fit: EmaWeights validates the averaged weights
        for step in val_data:
            val_step(*step)
        callbacks.on_test_end()
        # Reading a curve sums it over every replica: all workers log the same numbers.
        logs = {name: float(curve.result()) for name, curve in train_curves.items()}
        logs |= {f"val_{name}": float(curve.result()) for name, curve in val_curves.items()}
        print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - start:.0f}s - "
              + " - ".join(f"{name}: {value:.4f}" for name, value in logs.items()), flush=True)
        callbacks.on_epoch_end(epoch, logs)
    model.optimizer.finalize_variable_values(model.trainable_variables)  # as fit (train.ema)
    callbacks.on_train_end()


def epoch_metrics(outputs: list[str]) -> dict[str, keras.metrics.Metric]:
    """fit's curves: the total loss, each output's loss (with several outputs; fit logs them)
    and ``training.metrics()`` of the main head."""
    curves = [keras.metrics.Mean(name="loss"), *metrics()]
    if len(outputs) > 1:
        curves += [keras.metrics.Mean(name=f"{name}_loss") for name in outputs]
    return {curve.name: curve for curve in curves}


def distribute(strategy: tf.distribute.Strategy, batches: Batches):
    """``batches`` as a distributed dataset: at step i, replica r of R gets
    ``batches.replica_part(i, r, R)`` (images, labels, sample weights) and the global batch's
    row count (for the loss). Each
    worker reads only the shares of its own replicas. Iterate it anew every epoch."""
    def worker_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        replicas = context.num_replicas_in_sync
        local = replicas // context.num_input_pipelines  # this worker's devices
        first = context.input_pipeline_id * local  # its first replica's global number

        def shares():  # consecutive elements go to the worker's consecutive replicas
            for i in range(len(batches)):
                global_rows = len(batches.rows(i))
                for replica in range(first, first + local):
                    yield *batches.replica_part(i, replica, replicas), global_rows

        return tf.data.Dataset.from_generator(shares, output_signature=(
            tf.TensorSpec((None, *batches.images.shape[1:]), batches.images.dtype),
            tf.TensorSpec((None, batches.num_classes), tf.float32),
            tf.TensorSpec((None,), tf.float32),
            tf.TensorSpec((), tf.int64)))

    return strategy.distribute_datasets_from_function(worker_dataset)


def save_model(model: keras.Model, path: Path, is_chief: bool) -> None:
    """The chief saves ``model`` to ``path`` for inference; the others to a temporary folder,
    deleted."""
    if is_chief:
        with atomic_path(path) as tmp:
            save_classifier(model, tmp)
        return
    with tempfile.TemporaryDirectory() as folder:
        save_classifier(model, Path(folder) / path.name)

