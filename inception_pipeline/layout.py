"""Every path the pipeline reads or writes, relative to the project root (where DVC runs a stage).

dvc.yaml names the same paths as deps and outs; tests/test_layout.py checks that the two agree.
"""

from pathlib import Path

PARAMS = Path("params.yaml")
DVC_YAML = Path("dvc.yaml")

# sample: the embedded demo dataset (params.yaml's default data.dir)
SAMPLE_DIR = Path("data/sample")
# inside data.dir, by data.annotations: csv, coco, yolo (its class names: one of the two)
CSV_ANNOTATIONS = "annotations.csv"
COCO_ANNOTATIONS = "annotations.json"
YOLO_CLASSES = "classes.txt"
YOLO_DATA = "data.yaml"

# crop: raw-pixel shards + their manifest, and the data-quality records
CROPS_DIR = Path("data/crops")
MANIFEST = "manifest.csv"  # the crops' manifest, in crop's and resize's folders alike
REJECTS = Path("metrics/rejects.csv")
DUPLICATES = Path("metrics/duplicates.csv")
DATA_METRICS = Path("metrics/data.json")

# resize: every crop at resize.size, one array in manifest order
RESIZED_DIR = Path("data/resized")
RESIZED_IMAGES = RESIZED_DIR / "images.npy"

# pack: the arrays training reads
PACKED_DIR = Path("data/packed")
IMAGES = PACKED_DIR / "images.npy"
LABELS = PACKED_DIR / "labels.npy"
CLASSES = PACKED_DIR / "classes.json"
ITEMS = PACKED_DIR / "items.csv"

# split: indices into images.npy
SPLIT_DIR = Path("data/split")
SPLITS = ("train", "val", "test")
SPLIT_INDICES = {name: SPLIT_DIR / f"{name}.npy" for name in SPLITS}
SPLIT_METRICS = Path("metrics/split.json")

# train
MODEL = Path("data/model/model.keras")
TRAIN_LIVE_DIR = Path("metrics/train")  # DVCLive's folder: metrics.json and the curves
TRAIN_METRICS = TRAIN_LIVE_DIR / "metrics.json"  # the last epoch's curves; best_epoch
TRAIN_PLOTS_DIR = TRAIN_LIVE_DIR / "plots"
CURVES_DIR = TRAIN_PLOTS_DIR / "metrics"
CHECKPOINT_DIR = Path(".checkpoints/train")  # not an output: it must outlive a killed run

# export: the trained classifier in serving formats, and the .keras file's sha256 they came from
EXPORT_DIR = Path("data/export")
SAVED_MODEL = EXPORT_DIR / "saved_model"
TFLITE_MODEL = EXPORT_DIR / "model.tflite"
ONNX_MODEL = EXPORT_DIR / "model.onnx"
EXPORT_INFO = EXPORT_DIR / "export.json"

# evaluate
EVALUATE_METRICS = Path("metrics/evaluate.json")
PER_CLASS = Path("metrics/per_class.csv")
PREDICTIONS = Path("plots/predictions.csv")

# report
REPORTS_DIR = Path("reports")
