"""What the workflow asks of a dataset (``Dataset``), and the error its files raise.

A dataset turns an experiment's ``dataset`` settings into fixed train / validation / test
splits, ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` of float32 inputs and int64 class
indices 0..k-1, the same arrays every time for the same settings; and it answers, without
loading the data, what the configuration is checked against at start-up: its input shape, its
classes and how many examples each split can be drawn from.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .acquire import Download

SPLITS = ("train", "val", "test")
Splits = dict[str, tuple[np.ndarray, np.ndarray]]


class DatasetError(ValueError):
    """A dataset file that is missing, damaged or not what its dataset expects."""


@dataclass(frozen=True)
class Pool:
    """The examples some splits are drawn from, disjointly: ``size`` of them, ``what`` they are
    (for messages: "training examples of 'mnist'")."""

    splits: tuple[str, ...]
    size: int
    what: str


class Dataset(ABC):
    """One kind of data an experiment can name (``dataset.name``): see ``datasets/__init__.py``."""

    downloads: tuple[Download, ...] = ()
    """The file sets the data rule fetches for it into ``<data_dir>/<download.name>/``."""

    def user_files(self, settings: dict) -> list[Path]:
        """The files of the user's that it reads (none: only downloads, or generated data)."""
        return []

    def sizes(self, settings: dict) -> tuple[Pool, ...]:
        """How many examples each group of splits is drawn from (none: generated, any number)."""
        return ()

    @abstractmethod
    def input_shape(self, settings: dict) -> tuple[int, ...]:
        """The shape of one input example."""

    @abstractmethod
    def classes(self, settings: dict) -> int:
        """The number of classes (labels are 0..classes-1)."""

    @abstractmethod
    def load_splits(self, settings: dict, data_dir: Path, repeat: int) -> Splits:
        """The train / val / test splits the settings describe; ``data_dir`` holds the downloads."""

    @abstractmethod
    def fingerprint(self, settings: dict, repeat: int) -> str:
        """Identifies the data a checkpoint was trained and probed on."""
