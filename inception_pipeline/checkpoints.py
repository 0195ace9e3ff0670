"""Per-epoch checkpoints, so that a killed training run resumes where it stopped.

Not a DVC output: DVC deletes a stage's outputs before rerunning it, and a checkpoint has to
outlive a killed run. A checkpoint belongs to one run: its fingerprint covers the run's settings
and every file the train stage depends on in dvc.yaml (``stage_dependencies``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import keras
import yaml

from inception_pipeline.errors import PipelineError
from inception_pipeline.io import atomic_dir, read_json, write_json


def run_fingerprint(settings: dict, files: list[Path]) -> str:
    """A digest of everything a training run depends on: its settings and its input files."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def stage_dependencies(dvc_yaml: Path, stage: str) -> list[Path]:
    """Every file ``stage`` lists under ``deps`` in ``dvc_yaml`` (folders expanded, sorted)."""
    deps = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"][stage]["deps"]
    files = []
    for dep in map(Path, deps):
        files += sorted(p for p in dep.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                        ) if dep.is_dir() else [dep]
    return files


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, saves what a killed run needs to resume where it stopped.

    Each checkpoint is a folder ``epoch-NNNN`` (weights with the optimizer's state, the random
    generators' state, the DVCLive folder so far, and the run's fingerprint), written under a
    temporary name and renamed into place; older ones are deleted only after that, so a kill
    at any moment leaves at least one whole checkpoint. A checkpoint whose fingerprint differs
    from the run's (other params, code or data) is never resumed.
    """

    def __init__(self, directory: Path, live_dir: Path, fingerprint: str):
        super().__init__()
        self.directory, self.live_dir, self.fingerprint = directory, live_dir, fingerprint

    def latest(self) -> tuple[int, Path] | None:
        """(epochs done, folder) of the newest checkpoint of this run, if any."""
        for folder in sorted(self.directory.glob("epoch-[0-9][0-9][0-9][0-9]"), reverse=True):
            state = self.read(folder / "state.json", read_json)
            if state.get("fingerprint") == self.fingerprint:
                return state["epochs_done"], folder
        return None

    def restore(self, model: keras.Model) -> int:
        """Load the newest checkpoint into ``model`` and ``live_dir``; the epochs it had done."""
        found = self.latest()
        if found is None:
            self.discard()  # checkpoints of another run (other params, code or data)
            return 0
        epochs_done, folder = found
        model.optimizer.build(model.trainable_variables)
        self.read(folder / "state.weights.h5", model.load_weights)
        states = self.read(folder / "state.json", read_json)["seed_generators"]
        for variable, state in zip(seed_generator_states(model), states, strict=True):
            variable.assign(state)
        if self.live_dir.exists():
            shutil.rmtree(self.live_dir)
        shutil.copytree(folder / "live", self.live_dir)
        return epochs_done

    def read(self, path: Path, reader):
        """``reader(path)``; a checkpoint file that is missing, truncated or not what it should
        be (a disk filled up, a hand edit) stops the run in one line."""
        try:
            return reader(path)
        except Exception as err:  # noqa: BLE001 (h5py, Keras and json raise many types)
            raise PipelineError(f"{path}: damaged checkpoint, cannot resume from it "
                                f"({type(err).__name__}); delete {self.directory}/ to train "
                                f"from epoch 1") from None

    def on_epoch_end(self, epoch, logs=None):
        # Runs after the DVCLive callback, so the copied folder holds this epoch's curves.
        with atomic_dir(self.directory / f"epoch-{epoch + 1:04d}") as tmp:
            self.model.save_weights(tmp / "state.weights.h5")
            shutil.copytree(self.live_dir, tmp / "live")
            write_json(tmp / "state.json", {
                "epochs_done": epoch + 1, "fingerprint": self.fingerprint,
                # A list in the model's order: the variables' paths are not unique.
                "seed_generators": [v.numpy().tolist()
                                    for v in seed_generator_states(self.model)]})
        for folder in self.directory.glob("epoch-*"):
            if folder.name != f"epoch-{epoch + 1:04d}":
                shutil.rmtree(folder)

    def discard(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def seed_generator_states(model: keras.Model) -> list:
    """The augmentation and dropout layers' random states, which save_weights leaves out."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class EarlyStop(keras.callbacks.Callback):
    """Early stopping on validation top-1 (``train.patience``) that survives a resume.

    Stops once ``patience`` epochs have passed without a better ``val_accuracy`` than the best
    so far, and ends training with the best epoch's weights. Its state (every epoch's score,
    the best epoch's weights) lives beside the epoch checkpoints, so a killed run resumes with
    it; what a later epoch wrote before the kill is dropped with that epoch.
    """

    def __init__(self, directory: Path, patience: int):
        super().__init__()
        self.directory, self.patience = directory, patience
        self.scores: list[float] = []

    @property
    def best_epoch(self) -> int:
        """The 1-based epoch of the best score so far (the first, on ties)."""
        return max(range(len(self.scores)), key=lambda i: (self.scores[i], -i)) + 1

    def _weights(self, epoch: int) -> Path:
        return self.directory / f"best-{epoch:04d}.weights.h5"

    def restore(self, epochs_done: int) -> None:
        """Take up the state of the first ``epochs_done`` epochs (what the checkpoint holds)."""
        state = self.directory / "early_stop.json"
        self.scores = read_json(state)["scores"][:epochs_done] if state.exists() else []
        for path in self.directory.glob("best-*.weights.h5"):
            if int(path.name[5:9]) > epochs_done:
                path.unlink()

    def on_epoch_end(self, epoch, logs=None):
        self.scores.append(float(logs["val_accuracy"]))
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.best_epoch == epoch + 1:
            self.model.save_weights(self._weights(epoch + 1))
            for path in self.directory.glob("best-*.weights.h5"):
                if path != self._weights(epoch + 1):
                    path.unlink()
        write_json(self.directory / "early_stop.json", {"scores": self.scores})
        if len(self.scores) - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.scores and self.best_epoch != len(self.scores):
            self.model.load_weights(self._weights(self.best_epoch))
