"""Probe-point activations in HDF5: written streaming, read back with checks.

One file per checkpoint holds ``<split>/<point>`` (float32, ``(n, width)``,
chunked by rows, compressed) and ``<split>/labels`` (int64) for every split.
The file is written under a temporary name and renamed only when complete,
and carries ``complete=True`` among its attributes; readers refuse anything else.
Every dataset has HDF5's fletcher32 checksum per chunk, so a damaged chunk fails
the read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_output

CHUNK_BYTES = 1 << 20


class ActivationWriter:
    """Writes one checkpoint's activation file, split by split and block of rows by block
    (``write_activations``): each point's dataset is made at its first block, chunked by rows,
    with HDF5's fletcher32 checksum per chunk (bytes damaged on disk then fail the read)."""

    def __init__(self, f: h5py.File, step: int, compression: str | None, level: int, shuffle: bool) -> None:
        self.f, self.step = f, step
        self.opts = {"compression": compression, "shuffle": shuffle, "fletcher32": True}
        if compression == "gzip":
            self.opts["compression_opts"] = level
        self.datasets: dict[tuple[str, str], h5py.Dataset] = {}

    def split(self, split: str, labels: np.ndarray) -> None:
        """Start ``split``: its group and its labels (int64, one per row)."""
        self.f.create_group(split).create_dataset("labels", data=labels, fletcher32=True)

    def rows(self, split: str, point: str, layer_index: int, start: int, block: np.ndarray) -> None:
        """Write ``block`` (``(rows, width)`` float32) of ``point`` at row ``start`` of ``split``."""
        key = (split, point)
        if key not in self.datasets:
            n, w = len(self.f[split]["labels"]), block.shape[1]
            ds = self.f[split].create_dataset(point, shape=(n, w), dtype="f4", chunks=(chunk_rows(w, n), w),
                                              **self.opts)  # fmt: skip
            ds.attrs.update(point=point, layer_index=layer_index, width=w, step=self.step)
            self.datasets[key] = ds
        self.datasets[key][start : start + len(block)] = block


@contextmanager
def write_activations(path: Path, attrs: dict, compression: str | None, level: int, shuffle: bool
                      ) -> Iterator[ActivationWriter]:  # fmt: skip
    """An ``ActivationWriter`` on ``path``, written under a temporary name, its ``attrs`` (with
    ``step``) set first and ``complete=True`` last, renamed into place only when the block ends."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w", rdcc_nbytes=16 << 20) as f:
        f.attrs.update(**attrs, complete=False)
        yield ActivationWriter(f, attrs["step"], compression, level, shuffle)
        f.attrs["complete"] = True


class ActivationError(RuntimeError):
    """An activation file that is incomplete, damaged or from elsewhere."""


def chunk_rows(width: int, n: int) -> int:
    """Rows per HDF5 chunk so that a chunk holds about 1 MiB."""
    return max(1, min(n, CHUNK_BYTES // (4 * width)))


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
