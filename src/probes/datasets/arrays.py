"""Arrays the user provides: inputs and integer labels in ``.npz`` or HDF5 (``.h5``, ``.hdf5``) files.

Either one file per split, ``dataset.files: {train, val, test}``, each split the first
``n_<split>`` rows of its file; or one file, ``dataset.file``, split by a permutation seeded with
``split_seed`` into ``n_train``, ``n_val`` and ``n_test`` rows (as MNIST's train / val). Each file
holds the inputs ``x``, shape ``(rows, ...)``, any numbers (used as float32), and the labels ``y``,
shape ``(rows,)``, integers of any values; ``dataset.x`` / ``dataset.y`` name other arrays (an
HDF5 path such as ``group/images`` too). The classes are the distinct label values of all the
files, sorted: value ``values[i]`` is class ``i`` in every split (each job that loads the data
logs the mapping).

At start-up only the arrays' headers (npz) or shapes (HDF5), and the labels, are read: a file
with inputs or labels of the wrong shape, labels that are not integers, or unequal numbers of
input and label rows is refused, naming it, before any job runs; every load checks again.
"""

from __future__ import annotations

import functools
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import file_digest, fingerprint
from .base import SPLITS, Dataset, DatasetError, Pool, Splits

log = logging.getLogger(__name__)
FORMATS = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5"}
ONE_FILE = "file"  # the key of the only file when one file holds every split


def _paths(settings: dict) -> dict[str, Path]:
    """Each split's file, or ``{ONE_FILE: path}``."""
    if ("files" in settings) == ("file" in settings):
        raise DatasetError("dataset: an arrays dataset takes files: {train, val, test} (a file per split) or "
                           f"file: (one file, split by split_seed); expected one of them, got {settings.get('files')!r} "
                           f"and {settings.get('file')!r}")  # fmt: skip
    if "files" in settings:
        return {s: Path(settings["files"][s]) for s in SPLITS}
    return {ONE_FILE: Path(settings["file"])}


def _format(path: Path) -> str:
    if path.suffix not in FORMATS:
        raise DatasetError(f"{path}: not an .npz or HDF5 file; expected a name ending in {', '.join(FORMATS)}")
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    return FORMATS[path.suffix]


def _npz_header(path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of array ``name`` of an npz file, from its header alone."""
    with zipfile.ZipFile(path) as zf:
        members = [m.removesuffix(".npy") for m in zf.namelist()]
        if name not in members:
            raise DatasetError(f"{path}: no array {name!r}; it has {members}")
        with zf.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise DatasetError(f"{path}: array {name!r} is in .npy format {version}; expected 1.0 or 2.0")
            shape, _, dtype = read[version](f)
    return tuple(shape), dtype


def _hdf5_array(f, path: Path, name: str):
    import h5py

    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        raise DatasetError(f"{path}: no array {name!r}; it has {sorted(f)}")
    return obj


def _read(path: Path, names: tuple[str, str], whole: tuple[bool, bool]) -> list:
    """For the inputs and labels arrays ``names``: the array if ``whole``, else its (shape, dtype)."""
    kind = _format(path)
    try:
        if kind == "npz":
            with np.load(path) as z:
                return [_npz_arr(z, path, n) if w else _npz_header(path, n) for n, w in zip(names, whole)]
        import h5py

        with h5py.File(path, "r") as f:
            arrays = [_hdf5_array(f, path, n) for n in names]
            return [a[()] if w else (a.shape, a.dtype) for a, w in zip(arrays, whole)]
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file, named with what failed
        raise DatasetError(f"{path}: cannot read it as {kind} ({type(exc).__name__}: {exc})") from exc


def _npz_arr(z, path: Path, name: str) -> np.ndarray:
    if name not in z.files:
        raise DatasetError(f"{path}: no array {name!r}; it has {z.files}")
    return z[name]


def _check(path: Path, names: tuple[str, str], x: tuple, y: tuple) -> None:
    """Refuse inputs ``x`` and labels ``y`` (each a shape and dtype) that are not one example and
    one integer label per row."""
    (xs, xd), (ys, yd), (xn, yn) = x, y, names
    if len(xs) < 2:
        raise DatasetError(f"{path}: inputs {xn!r} have shape {xs}; expected (rows, ...), one row per example")
    if xd.kind not in "biuf":
        raise DatasetError(f"{path}: inputs {xn!r} are {xd}; expected numbers")
    if len(ys) != 1:
        raise DatasetError(f"{path}: labels {yn!r} have shape {ys}; expected (rows,), one label per example")
    if yd.kind not in "biu":
        raise DatasetError(f"{path}: labels {yn!r} are {yd}; expected integers (class labels of any values: "
                           "save them as y.astype(int))")  # fmt: skip
    if xs[0] != ys[0]:
        raise DatasetError(
            f"{path}: {xs[0]} rows of inputs {xn!r} but {ys[0]} labels {yn!r}; expected one label per row"
        )


def _same_example_shape(shapes: dict[Path, tuple[int, ...]], xn: str) -> tuple[int, ...]:
    (first, shape), *rest = shapes.items()
    for path, other in rest:
        if other != shape:
            raise DatasetError(f"{path}: inputs {xn!r} are examples of shape {other}, but {first}'s are {shape}; "
                               "expected the same in every split's file")  # fmt: skip
    return shape


@dataclass(frozen=True)
class Layout:
    """What start-up knows of the files: one example's shape, each file's rows, the label values."""

    shape: tuple[int, ...]
    rows: dict[str, int]
    values: tuple[int, ...]


@functools.lru_cache(maxsize=32)
def _layout(paths: tuple[tuple[str, Path], ...], names: tuple[str, str], stamps: tuple) -> Layout:
    """``Layout`` of the files (``stamps``: their sizes and times, so a changed file is read again)."""
    shapes, rows, labels = {}, {}, []
    for key, path in paths:
        x, y = _read(path, names, (False, True))
        _check(path, names, x, (y.shape, y.dtype))
        shapes[path], rows[key] = x[0][1:], x[0][0]
        labels.append(y)
    values = np.unique(np.concatenate(labels))
    return Layout(_same_example_shape(shapes, names[0]), rows, tuple(int(v) for v in values))


def _names(settings: dict) -> tuple[str, str]:
    return settings.get("x", "x"), settings.get("y", "y")


def layout(settings: dict) -> Layout:
    paths = _paths(settings)
    for path in paths.values():
        _format(path)
    stamps = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths.values())
    return _layout(tuple(paths.items()), _names(settings), stamps)


class Arrays(Dataset):
    def user_files(self, settings: dict) -> list[Path]:
        return list(dict.fromkeys(_paths(settings).values()))

    def input_shape(self, settings: dict) -> tuple[int, ...]:
        return layout(settings).shape

    def classes(self, settings: dict) -> int:
        return len(layout(settings).values)

    def sizes(self, settings: dict) -> tuple[Pool, ...]:
        rows, paths = layout(settings).rows, _paths(settings)
        if ONE_FILE in paths:
            return (Pool(SPLITS, rows[ONE_FILE], f"rows of {paths[ONE_FILE]}"),)
        return tuple(Pool((s,), rows[s], f"rows of {paths[s]}") for s in SPLITS)

    def load_splits(self, settings: dict, data_dir: Path, repeat: int) -> Splits:
        paths, names = _paths(settings), _names(settings)
        arrays = {key: _read(path, names, (True, True)) for key, path in paths.items()}
        for key, (x, y) in arrays.items():
            _check(paths[key], names, (x.shape, x.dtype), (y.shape, y.dtype))
        _same_example_shape({paths[k]: x.shape[1:] for k, (x, _) in arrays.items()}, names[0])
        values = np.unique(np.concatenate([y for _, y in arrays.values()]))
        log.info("labels %s are classes 0..%d", values.tolist(), len(values) - 1)
        n = {s: settings[f"n_{s}"] for s in SPLITS}
        for pool in self.sizes(settings):
            if sum(n[s] for s in pool.splits) > pool.size:
                raise DatasetError(f"dataset: {' + '.join(f'n_{s}' for s in pool.splits)} = "
                                   f"{sum(n[s] for s in pool.splits)} exceeds the {pool.size} {pool.what}")  # fmt: skip
        if ONE_FILE in arrays:
            x, y = arrays[ONE_FILE]
            order = np.random.default_rng(settings["split_seed"]).permutation(len(x))
            ends = np.cumsum([n[s] for s in SPLITS])
            rows = dict(zip(SPLITS, np.split(order[: ends[-1]], ends[:-1])))
            picked = {s: (x[rows[s]], y[rows[s]]) for s in SPLITS}
        else:
            picked = {s: (arrays[s][0][: n[s]], arrays[s][1][: n[s]]) for s in SPLITS}
        return {s: (x.astype(np.float32), np.searchsorted(values, y).astype(np.int64)) for s, (x, y) in picked.items()}

    def fingerprint(self, settings: dict, repeat: int) -> str:
        return fingerprint({"dataset": settings, "sha256": {str(p): file_digest(p) for p in self.user_files(settings)}})


DATASET = Arrays()
