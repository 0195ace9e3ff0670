"""The crop stage's output: every crop's raw RGB pixels in a few shard files, and manifest.csv
giving each crop's source, box, label, shard, offset and size.

Raw pixels cost disk (height x width x 3 bytes per crop, more than the JPEG they came from) but
no PNG encode in crop and decode in resize, and a few shards instead of a file per crop keep
``dvc status`` fast (BENCHMARKS.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Self

import numpy as np

from inception_pipeline.errors import PipelineError

MANIFEST_FIELDS = ["crop", "source", "xmin", "ymin", "xmax", "ymax", "label", "source_sha256",
                   "shard", "offset", "height", "width"]
SHARD_NAME = "crops"


class ShardWriter:
    """uint8 arrays appended to raw shard files ``NAME-000.bin``, ``NAME-001.bin``, ... in a
    folder, a new shard once one holds ``max_bytes``: a few big files instead of one file per
    array, which is what keeps ``dvc status`` fast. ``write`` returns the array's shard and
    offset; with its shape, ``read_shard_array`` reads it back."""

    def __init__(self, directory: Path, name: str, max_bytes: int = 2**30):
        self.directory, self.name, self.max_bytes = directory, name, max_bytes
        self.index, self.file = -1, None

    def write(self, array: np.ndarray) -> tuple[str, int]:
        if array.dtype != np.uint8:
            raise ValueError(f"shards hold uint8 arrays, not {array.dtype}")
        used = None if self.file is None else self.file.tell()
        if used is None or (used and used + array.nbytes > self.max_bytes):
            self.close()
            self.index += 1
            self.file = open(self.directory / self.shard, "wb")  # noqa: SIM115 (closed by close)
        offset = self.file.tell()
        self.file.write(np.ascontiguousarray(array).data)
        return self.shard, offset

    @property
    def shard(self) -> str:
        return f"{self.name}-{self.index:03d}.bin"

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_shard_array(directory: Path, shard: str, offset: int, shape: tuple[int, ...]
                     ) -> np.ndarray:
    """The uint8 array of ``shape`` that ShardWriter wrote at ``offset`` of ``shard``."""
    path = directory / shard
    count = math.prod(shape)
    array = np.fromfile(path, dtype=np.uint8, count=count, offset=offset)
    if array.size != count:
        raise PipelineError(f"{path}: truncated ({array.size} of {count} bytes at offset {offset})")
    return array.reshape(shape)


def crop_name(source: str, index: int) -> str:
    """Name of box ``index`` of ``source``: ``c/sub/x.jpg`` -> ``c/sub__x.jpg-0``; a file at
    the top of data.dir (coco, yolo) -> ``x.jpg-0``."""
    folder, _, rest = source.partition("/")
    return f"{folder}/{rest.replace('/', '__')}-{index}" if rest else f"{source}-{index}"


def load_crop(row: dict, directory: Path) -> np.ndarray:
    """The RGB pixels of the crop that manifest row ``row`` describes."""
    return read_shard_array(directory, row["shard"], int(row["offset"]),
                            (int(row["height"]), int(row["width"]), 3))
