"""Datasets as fixed train / validation / test splits.

``load_splits(settings, data_dir)`` turns an experiment's ``dataset`` settings
into ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` of float32 inputs and
int64 labels, the same arrays every time for the same settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import mnist
from .files import fingerprint

SPLITS = ("train", "val", "test")
Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def _mnist_splits(settings: dict, data_dir: Path) -> Splits:
    """MNIST: train/val drawn from the official training set by a seeded permutation.

    Pixels are rescaled from [0, 255] to [-0.5, 0.5] as in TensorFlow's
    ``convolutional.py``; images have shape ``(n, 1, 28, 28)``.
    """
    n_train, n_val, n_test = settings["n_train"], settings["n_val"], settings["n_test"]
    images, labels = mnist.load(data_dir, train=True)
    if n_train + n_val > len(images):
        raise ValueError(
            f"dataset: n_train + n_val = {n_train + n_val} exceeds the {len(images)} MNIST training images"
        )
    order = np.random.default_rng(settings["split_seed"]).permutation(len(images))
    test_images, test_labels = mnist.load(data_dir, train=False)
    if n_test > len(test_images):
        raise ValueError(f"dataset.n_test: {n_test} exceeds the {len(test_images)} MNIST test images")

    def prep(x: np.ndarray) -> np.ndarray:
        return ((x.astype(np.float32) - 127.5) / 255.0)[:, None, :, :]

    train_idx, val_idx = order[:n_train], order[n_train : n_train + n_val]
    return {
        "train": (prep(images[train_idx]), labels[train_idx].astype(np.int64)),
        "val": (prep(images[val_idx]), labels[val_idx].astype(np.int64)),
        "test": (prep(test_images[:n_test]), test_labels[:n_test].astype(np.int64)),
    }


def _gaussian_separable_splits(settings: dict, repeat: int) -> Splits:
    """Section 3.2's toy data: x ~ N(0, I_dim), y = [w . x > 0] for a random w.

    Each repeat draws a new w and new data from ``(split_seed, repeat)``.
    """
    rng = np.random.default_rng([settings["split_seed"], repeat])
    w = rng.standard_normal(settings["dim"])
    out = {}
    for split in SPLITS:
        x = rng.standard_normal((settings[f"n_{split}"], settings["dim"])).astype(np.float32)
        out[split] = (x, (x.astype(np.float64) @ w > 0).astype(np.int64))
    return out


def load_splits(settings: dict, data_dir: Path | str, repeat: int = 0) -> Splits:
    """The train / val / test splits described by an experiment's ``dataset`` settings."""
    name = settings["name"]
    if name == "mnist":
        return _mnist_splits(settings, Path(data_dir))
    if name == "gaussian_separable":
        return _gaussian_separable_splits(settings, repeat)
    raise ValueError(f"dataset.name: unknown dataset {name!r}; expected mnist or gaussian_separable")


def data_fingerprint(settings: dict, repeat: int = 0) -> str:
    """Identifies the data a checkpoint was trained and probed on."""
    if settings["name"] == "mnist":
        return fingerprint({"dataset": settings, "md5": mnist.MD5})
    return fingerprint({"dataset": settings, "repeat": repeat})
