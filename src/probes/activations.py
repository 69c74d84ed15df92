"""Probe-point activations in HDF5: written streaming, read back with checks.

One file per checkpoint holds ``<split>/<point>`` (float32, or float16 to halve the
disk where that keeps each column's spread: ``(n, width)``, chunked by rows, compressed)
and ``<split>/labels`` (int64) for every split; readers get float32 either way.
The file is written under a temporary name and renamed only when complete,
and carries ``complete=True`` among its attributes; readers refuse anything else.
Every dataset has HDF5's fletcher32 checksum per chunk, so a damaged chunk fails
the read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_output

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
FLOAT16_MAX = float(np.finfo(np.float16).max)
FLOAT16_NOISE = 0.01  # largest float16 rounding error (std) per column std that a point is stored with


class ActivationWriter:
    """Writes one checkpoint's activation file, split by split and block of rows by block
    (``write_activations``): each point's dataset is made at its first block, chunked by rows,
    with HDF5's fletcher32 checksum per chunk (bytes damaged on disk then fail the read), stored
    as ``dtype`` (``float32`` or ``float16``). With float16, a point whose first block float16
    would blur (``float16_noise``: a column's rounding error above 1% of its spread, as on a
    collapsed layer's columns that vary by 1e-10 around an offset) or that it cannot check (one
    row, no varying column) is stored as float32 in every split, logged."""

    def __init__(self, f: h5py.File, step: int, compression: str | None, level: int, shuffle: bool,
                 dtype: str = "float32") -> None:  # fmt: skip
        self.f, self.step, self.dtype = f, step, np.dtype(dtype)
        self.opts = {"compression": compression, "shuffle": shuffle, "fletcher32": True}
        if compression == "gzip":
            self.opts["compression_opts"] = level
        self.datasets: dict[tuple[str, str], h5py.Dataset] = {}
        self.stored: dict[str, np.dtype] = {}  # per point, from its first block

    def split(self, split: str, labels: np.ndarray) -> None:
        """Start ``split``: its group and its labels (int64, one per row)."""
        self.f.create_group(split).create_dataset("labels", data=labels, fletcher32=True)

    def rows(self, split: str, point: str, layer_index: int, start: int, block: np.ndarray) -> None:
        """Write ``block`` (``(rows, width)`` float32) of ``point`` at row ``start`` of ``split``.
        Stored as float16, a later block's finite value beyond float16's range (65,504) is
        refused, naming the point (one in the first block keeps the point float32)."""
        key = (split, point)
        ds = self.datasets.get(key)
        if ds is None:
            n, w = len(self.f[split]["labels"]), block.shape[1]
            if point not in self.stored:
                noise = float16_noise(block) if self.dtype == np.float16 else 0.0
                self.stored[point] = self.dtype if noise <= FLOAT16_NOISE else np.dtype(np.float32)
                if self.stored[point] != self.dtype:  # NaN noise too: a block with NaNs stays float32
                    log.info(
                        "%s: float16's rounding error would be %.2gx a column's spread: stored as float32", point, noise
                    )
            dtype = self.stored[point]
            chunks = (chunk_rows(w, n, dtype.itemsize), w)
            ds = self.f[split].create_dataset(point, shape=(n, w), dtype=dtype, chunks=chunks, **self.opts)
            ds.attrs.update(point=point, layer_index=layer_index, width=w, step=self.step)
            self.datasets[key] = ds
        if ds.dtype == np.float16 and (largest := float16_overflow(block)):
            raise ActivationError(
                f"{split}/{point}: values up to {largest:.4g} (rows from {start}) exceed "
                f"float16's range ({FLOAT16_MAX:g}); store it as float32 (extract.dtype: float32)"
            )
        ds[start : start + len(block)] = block


@contextmanager
def write_activations(path: Path, attrs: dict, compression: str | None, level: int, shuffle: bool,
                      dtype: str = "float32") -> Iterator[ActivationWriter]:  # fmt: skip
    """An ``ActivationWriter`` on ``path``, written under a temporary name, its ``attrs`` (with
    ``step``) set first and ``complete=True`` last, renamed into place only when the block ends."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w", rdcc_nbytes=16 << 20) as f:
        f.attrs.update(**attrs, complete=False)
        yield ActivationWriter(f, attrs["step"], compression, level, shuffle, dtype)
        f.attrs["complete"] = True


class ActivationError(RuntimeError):
    """An activation file that is incomplete, damaged or from elsewhere."""


def float16_noise(block: np.ndarray, rows: int = 256) -> float:
    """The largest ratio, over the varying columns of ``block``'s first ``rows`` rows, of float16's
    rounding error (std) to the column's std; infinite where float16 cannot be checked or kept:
    a finite value beyond its range, fewer than two rows, no varying column."""
    x = block[:rows].astype(np.float64)
    if float16_overflow(x):
        return float("inf")
    spread = x.std(axis=0)
    varying = spread > 0
    if len(x) < 2 or not varying.any():
        return float("inf")
    error = (x.astype(np.float16).astype(np.float64) - x)[:, varying].std(axis=0)
    return float((error / spread[varying]).max())


def float16_overflow(block: np.ndarray) -> float:
    """The largest finite magnitude in ``block`` beyond float16's range, 0 if none (inf is kept:
    float16 has it)."""
    magnitude = np.abs(block)
    beyond = magnitude[np.isfinite(magnitude) & (magnitude > FLOAT16_MAX)]
    return float(beyond.max()) if beyond.size else 0.0


def chunk_rows(width: int, n: int, itemsize: int = 4) -> int:
    """Rows per HDF5 chunk so that a chunk holds about 1 MiB."""
    return max(1, min(n, CHUNK_BYTES // (itemsize * width)))


class CheckedDataset:
    """An HDF5 dataset whose read errors (a checksum mismatch, a truncated chunk) name its
    file and dataset: ``shape``, ``dtype``, ``nbytes``, slicing and ``read_direct``."""

    def __init__(self, ds: h5py.Dataset, where: str) -> None:
        self._ds, self.where = ds, where
        self.shape, self.dtype, self.nbytes = ds.shape, ds.dtype, ds.nbytes

    def _read(self, read, *args):
        try:
            return read(*args)
        except OSError as exc:
            raise ActivationError(f"{self.where} is damaged ({exc})") from exc

    def __getitem__(self, key) -> np.ndarray:
        return self._read(self._ds.__getitem__, key)

    def read_direct(self, out: np.ndarray) -> None:
        self._read(self._ds.read_direct, out)


@contextmanager
def open_point(
    path: Path, split: str, point: str, expect: dict | None = None
) -> Iterator[tuple[CheckedDataset, np.ndarray]]:
    """The checked dataset ``(n, width)`` and labels ``(n,)`` of one split and point, file kept open.

    ``expect`` maps file attributes (e.g. ``model_fingerprint``) to the values
    they must have.
    """
    try:
        # No HDF5 file lock: the file is immutable once renamed into place, so concurrent
        # readers are safe without one, and some shared file systems reject the lock.
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise ActivationError(f"{path}: unreadable HDF5 file ({exc})") from exc
    with f:
        if not f.attrs.get("complete", False):
            raise ActivationError(f"{path}: not marked complete; its extraction did not finish")
        for key, value in (expect or {}).items():
            if f.attrs.get(key) != value:
                raise ActivationError(f"{path}: attribute {key} is {f.attrs.get(key)!r}, expected {value!r}")
        name = f"{split}/{point}"
        if name not in f:
            raise ActivationError(
                f"{path}: no dataset {name!r}; it has {sorted(f[split]) if split in f else sorted(f)}"
            )
        ds = CheckedDataset(f[name], f"{path}: {name}")
        labels = CheckedDataset(f[f"{split}/labels"], f"{path}: {split}/labels")[:]
        if ds.shape[0] != len(labels):
            raise ActivationError(f"{path}: {name} has {ds.shape[0]} rows but {len(labels)} labels")
        yield ds, labels


def read_point(path: Path, split: str, point: str, expect: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Activations ``(n, width)`` float32 and labels ``(n,)`` of one split and point, read into memory
    (straight into one preallocated array)."""
    with open_point(path, split, point, expect) as (ds, labels):
        x = np.empty(ds.shape, dtype=np.float32)
        ds.read_direct(x)
    return x, labels
