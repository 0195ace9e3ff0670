"""sample: generate the embedded demo dataset (synthetic, deterministic from ``sample.seed``)."""

from __future__ import annotations

from inception_pipeline.errors import run
from inception_pipeline.io import atomic_dir, parallel_map, worker_count
from inception_pipeline.layout import SAMPLE_DIR
from inception_pipeline.params import load_params
from inception_pipeline.synthetic import CLASSES, write_scene


def main() -> None:
    params = load_params()
    cfg = params["sample"]
    classes = list(CLASSES.items())[: cfg["classes"]]
    with atomic_dir(SAMPLE_DIR) as tmp:
        for label, _ in classes:
            (tmp / label).mkdir()
        jobs = [(tmp, cfg["seed"], c, i, label, glyph)
                for c, (label, glyph) in enumerate(classes) for i in range(cfg["images_per_class"])]
        workers = worker_count(params["data"]["workers"])
        for _ in parallel_map(write_scene, jobs, workers, "sample"):
            pass
    print(f"sample: wrote {len(jobs)} images of {len(classes)} classes to {SAMPLE_DIR}/")


if __name__ == "__main__":
    run(main)
