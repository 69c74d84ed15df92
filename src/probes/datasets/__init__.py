"""The registry of datasets an experiment can name (``dataset.name``), and what is asked of each.

``DATASETS`` maps each name to its ``Dataset`` (``base.py``), one module each; the functions
below take an experiment's ``dataset`` settings and answer for the dataset they name, so no
caller tells datasets apart. ``DOWNLOADS`` are the file sets the data rule fetches, by name,
into ``<data_dir>/<name>/`` (``acquire.py``). Adding a dataset: docs/datasets.md.
"""

from __future__ import annotations

from pathlib import Path

from . import arrays, fashion_mnist, gaussian_separable, mnist, translated_mnist
from .acquire import Download
from .base import SPLITS, Dataset, DatasetError, Pool, Splits

__all__ = ["DATASETS", "DOWNLOADS", "SPLITS", "Dataset", "DatasetError", "Pool", "Splits", "classes",
           "fetched_files", "fingerprint", "input_shape", "load_splits", "sizes", "user_files"]  # fmt: skip

DATASETS: dict[str, Dataset] = {
    "mnist": mnist.DATASET,
    "fashion_mnist": fashion_mnist.DATASET,
    "translated_mnist": translated_mnist.DATASET,
    "gaussian_separable": gaussian_separable.DATASET,
    "arrays": arrays.DATASET,
}
DOWNLOADS: dict[str, Download] = {d.name: d for ds in DATASETS.values() for d in ds.downloads}


def dataset(settings: dict) -> Dataset:
    try:
        return DATASETS[settings["name"]]
    except KeyError:
        raise DatasetError(
            f"dataset.name: unknown dataset {settings['name']!r}; expected one of {list(DATASETS)}"
        ) from None


def load_splits(settings: dict, data_dir: Path | str, repeat: int = 0) -> Splits:
    """The train / val / test splits described by an experiment's ``dataset`` settings."""
    return dataset(settings).load_splits(settings, Path(data_dir), repeat)


def input_shape(settings: dict) -> tuple[int, ...]:
    """The shape of one input example."""
    return dataset(settings).input_shape(settings)


def classes(settings: dict) -> int:
    return dataset(settings).classes(settings)


def sizes(settings: dict) -> tuple[Pool, ...]:
    """How many examples each group of splits is drawn from (none for generated data)."""
    return dataset(settings).sizes(settings)


def fingerprint(settings: dict, repeat: int = 0) -> str:
    """Identifies the data a checkpoint was trained and probed on."""
    return dataset(settings).fingerprint(settings, repeat)


def fetched_files(settings: dict, data_dir: Path | str) -> list[Path]:
    """The downloaded files the dataset is read from: the data rule's outputs."""
    return [Path(data_dir) / d.name / f for d in dataset(settings).downloads for f in d.files]


def user_files(settings: dict) -> list[Path]:
    """The user's files the dataset is read from (``arrays``)."""
    return dataset(settings).user_files(settings)
