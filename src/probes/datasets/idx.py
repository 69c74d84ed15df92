"""IDX image datasets (MNIST's format): reading the files, and the splits drawn from them.

An ``IdxImages`` dataset is a ``Download`` of the four files ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``; every
read verifies the file's MD5. Train and val are drawn from the training files by a permutation
seeded with ``split_seed``, test is the first ``n_test`` of the test files. Pixels are rescaled
from [0, 255] to [-0.5, 0.5] as in TensorFlow's ``convolutional.py``; images have shape
``(n, 1, H, W)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import fingerprint
from .acquire import Download
from .base import Dataset, DatasetError, Pool, Splits

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3 dimensions


def read_idx(path: Path, data: bytes | None = None) -> np.ndarray:
    """Read an uncompressed IDX file of unsigned bytes (images or labels); ``data``, its bytes if
    already read."""
    path = Path(path)
    data = path.read_bytes() if data is None else data
    if len(data) < 8:
        raise DatasetError(f"{path}: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _MAGIC:
        raise DatasetError(f"{path}: magic number {magic}, expected 2049 (labels) or 2051 (images)")
    ndim = _MAGIC[magic]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DatasetError(f"{path}: {len(data)} bytes, expected {expected} for an IDX array of shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load(download: Download, directory: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, H, W)`` uint8 and labels ``(n,)`` of the ``train`` or ``t10k`` files, verified."""
    arrays = []
    for kind in ("images-idx3", "labels-idx1"):
        path = Path(directory) / f"{part}-{kind}-ubyte"
        arrays.append(read_idx(path, download.read_verified(path)))
    images, labels = arrays
    if len(images) != len(labels):
        raise DatasetError(f"{directory}: {part} has {len(images)} images but {len(labels)} labels")
    return images, labels


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images ``(n, H, W)`` as float32 ``(n, 1, H, W)`` in [-0.5, 0.5]."""
    return ((images.astype(np.float32) - 127.5) / 255.0)[:, None, :, :]


class IdxImages(Dataset):
    """Greyscale images of ``classes`` classes, ``train`` training and ``test`` test images of
    shape ``image``, in the four IDX files of ``download``."""

    def __init__(self, download: Download, classes: int, image: tuple[int, int], train: int, test: int):
        assert set(download.files) == set(FILES), download.files
        self.download, self.n_classes, self.image, self.n = download, classes, image, {"train": train, "t10k": test}
        self.downloads = (download,)

    def input_shape(self, settings: dict) -> tuple[int, ...]:
        return (1, *self.image)

    def classes(self, settings: dict) -> int:
        return self.n_classes

    def sizes(self, settings: dict) -> tuple[Pool, ...]:
        name = settings["name"]
        return (Pool(("train", "val"), self.n["train"], f"training examples of {name!r}"),
                Pool(("test",), self.n["t10k"], f"test examples of {name!r}"))  # fmt: skip

    def examples(self, images: np.ndarray, labels: np.ndarray, rows: np.ndarray, settings: dict,
                 part: str) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The inputs and labels of ``rows`` of the ``part`` files."""
        return pixels(images[rows]), labels[rows].astype(np.int64)

    def load_splits(self, settings: dict, data_dir: Path, repeat: int) -> Splits:
        n_train, n_val, n_test = settings["n_train"], settings["n_val"], settings["n_test"]
        directory = Path(data_dir) / self.download.name
        images, labels = load(self.download, directory, "train")
        if n_train + n_val > len(images):
            raise DatasetError(f"dataset: n_train + n_val = {n_train + n_val} exceeds the {len(images)} "
                               f"{settings['name']} training images")  # fmt: skip
        order = np.random.default_rng(settings["split_seed"]).permutation(len(images))
        test_images, test_labels = load(self.download, directory, "t10k")
        if n_test > len(test_images):
            raise DatasetError(
                f"dataset.n_test: {n_test} exceeds the {len(test_images)} {settings['name']} test images"
            )
        return {
            "train": self.examples(images, labels, order[:n_train], settings, "train"),
            "val": self.examples(images, labels, order[n_train : n_train + n_val], settings, "train"),
            "test": self.examples(test_images, test_labels, np.arange(n_test), settings, "t10k"),
        }

    def fingerprint(self, settings: dict, repeat: int) -> str:
        return fingerprint({"dataset": settings, "md5": self.download.md5})
