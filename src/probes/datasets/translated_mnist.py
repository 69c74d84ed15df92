"""Translated MNIST: each MNIST digit placed at a random offset in a 40x40 canvas, a harder
variant (the digit's position varies; input shape ``(1, 40, 40)``).

Read from MNIST's files, with MNIST's splits (``idx.py``). The offsets of a file's rows are drawn
at once from ``(split_seed, the file)``: a row's offset is a function of ``split_seed`` and the
row alone, whichever split and sizes take it. The background is pixel value 0, as MNIST's.
"""

from __future__ import annotations

import numpy as np

from .idx import IdxImages, pixels
from .mnist import DOWNLOAD

CANVAS = 40
_PART = {"train": 1, "t10k": 2}


def offsets(split_seed: int, part: str, rows: int, digit: int = 28) -> np.ndarray:
    """``(rows, 2)`` offsets (top, left) in ``0..CANVAS - digit`` of every row of the ``part`` file."""
    rng = np.random.default_rng([split_seed, CANVAS, _PART[part]])
    return rng.integers(0, CANVAS - digit + 1, size=(rows, 2))


def place(images: np.ndarray, at: np.ndarray) -> np.ndarray:
    """uint8 ``(n, CANVAS, CANVAS)`` canvases with each image's top left corner at ``at``."""
    n, h, w = images.shape
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.uint8)
    ys = at[:, :1] + np.arange(h)  # (n, h)
    xs = at[:, 1:] + np.arange(w)  # (n, w)
    canvas[np.arange(n)[:, None, None], ys[:, :, None], xs[:, None, :]] = images
    return canvas


class TranslatedImages(IdxImages):
    """``IdxImages`` whose examples are placed in a ``CANVAS`` x ``CANVAS`` canvas."""

    def input_shape(self, settings: dict) -> tuple[int, ...]:
        return (1, CANVAS, CANVAS)

    def examples(self, images: np.ndarray, labels: np.ndarray, rows: np.ndarray, settings: dict,
                 part: str) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        at = offsets(settings["split_seed"], part, len(images), images.shape[1])[rows]
        return pixels(place(images[rows], at)), labels[rows].astype(np.int64)


DATASET = TranslatedImages(DOWNLOAD, classes=10, image=(28, 28), train=60000, test=10000)
