"""sample: generate the embedded synthetic dataset (deterministic from ``sample.seed``): the easy
demo or, with ``sample.difficulty: hard``, the hard benchmark."""

from __future__ import annotations

from inception_pipeline.errors import PipelineError, run
from inception_pipeline.io import atomic_dir, parallel_map, worker_count
from inception_pipeline.layout import SAMPLE_DIR
from inception_pipeline.params import load_params
from inception_pipeline.synthetic import DEMO, write_scene
from inception_pipeline.synthetic_hard import HARD

KINDS = {"easy": DEMO, "hard": HARD}


def main() -> None:
    params = load_params()
    cfg = params["sample"]
    kind = KINDS[cfg["difficulty"]]
    if cfg["classes"] > len(kind.classes):
        raise PipelineError(f"sample.classes={cfg['classes']}: sample.difficulty="
                            f"{cfg['difficulty']} has {len(kind.classes)} classes")
    classes = list(kind.classes.items())[: cfg["classes"]]
    with atomic_dir(SAMPLE_DIR) as tmp:
        for label, _ in classes:
            (tmp / label).mkdir()
        jobs = [(tmp, kind, cfg["seed"], c, i, label, glyph)
                for c, (label, glyph) in enumerate(classes) for i in range(cfg["images_per_class"])]
        workers = worker_count(params["data"]["workers"])
        for _ in parallel_map(write_scene, jobs, workers, "sample"):
            pass
    print(f"sample: wrote {len(jobs)} {cfg['difficulty']} images of {len(classes)} classes to "
          f"{SAMPLE_DIR}/")


if __name__ == "__main__":
    run(main)
