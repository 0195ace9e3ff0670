"""File helpers shared by the stages: atomic writes, readers, and a parallel map.

Every output is written under a temporary name in the same folder and renamed into place,
so a killed stage never leaves a half-written file that DVC or a later stage would trust.
Temporary names are hidden and ignored by git and DVC (``.data.PID.tmp.json`` for data.json,
``.crops.PID.tmp`` and ``.crops.PID.old.tmp`` for a folder); the next write of the same output
removes any that a killed run left.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from inception_pipeline.errors import PipelineError

T = TypeVar("T")
R = TypeVar("R")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _temporary(path: Path, suffix: str = "") -> tuple[Path, Path]:
    """This process's temporary names for ``path`` (new version, previous version set aside),
    after removing those a killed run left: they can be as big as the output itself."""
    base = path.name[: len(path.name) - len(suffix)]
    leftover = re.compile(rf"\.{re.escape(base)}\.\d+(\.old)?\.tmp{re.escape(suffix)}")
    for entry in path.parent.iterdir():
        if leftover.fullmatch(entry.name):
            _remove(entry)
    stem = f".{base}.{os.getpid()}"
    return path.with_name(f"{stem}.tmp{suffix}"), path.with_name(f"{stem}.old.tmp{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so the rename is atomic), same suffix (Keras insists on ".keras").
    tmp, _ = _temporary(path, path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; it replaces ``path`` on success.

    The previous folder is renamed aside before it is deleted: deleting it in place could be
    killed halfway, leaving part of it where a complete output is expected.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _temporary(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
        _remove(old)


def write_json(path: str | os.PathLike, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(path: str | os.PathLike, fieldnames: list[str], rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def load_npy(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_npy_rows(path: str | os.PathLike, shape: tuple[int, ...], rows: Iterable[np.ndarray],
                   name_of: Callable[[int], str]) -> None:
    """A uint8 .npy of ``shape`` written one row after another, as ``rows`` yields them.

    Plain sequential writes, not a memory map: written pages are never mapped into this
    process, so its RSS stays flat however large the array (BENCHMARKS.md). ``name_of(i)``
    names row ``i`` in the error when it has the wrong shape.
    """
    count = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.lib.format.write_array_header_1_0(out, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
            "fortran_order": False, "shape": shape})
        for row in rows:
            if row.shape != shape[1:] or row.dtype != np.uint8:
                raise PipelineError(f"{name_of(count)}: shape {row.shape} {row.dtype}, "
                                    f"expected {shape[1:]} uint8")
            out.write(np.ascontiguousarray(row).data)
            count += 1
        if count != shape[0]:
            raise PipelineError(f"{path}: {count} rows written, {shape[0]} expected")


def worker_count(requested: int) -> int:
    """``data.workers``: 0 means every core this process may use."""
    if requested > 0:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int, desc: str,
                 initializer: Callable[[], None] | None = None) -> Iterator[R]:
    """``map(fn, items)`` over ``workers`` processes, in order, with a progress bar; each
    worker process calls ``initializer`` first (the caller has called it for itself)."""
    chunksize = max(1, min(64, len(items) // (workers * 8) or 1))
    bar = {"total": len(items), "desc": desc, "unit": "file", "mininterval": 2, "disable": None}
    if workers <= 1:
        yield from tqdm(map(fn, items), **bar)
        return
    with ProcessPoolExecutor(workers, initializer=initializer) as pool:
        yield from tqdm(pool.map(fn, items, chunksize=chunksize), **bar)
