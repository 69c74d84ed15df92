"""Section 3.2's toy data (Figure 3): x ~ N(0, I_dim), y = [w . x > 0] for a random w.

Each repeat draws a new w and new data from ``(split_seed, repeat)``; ``dataset.dim`` is the
input dimension. Nothing is read from disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import fingerprint
from .base import SPLITS, Dataset, Splits


class GaussianSeparable(Dataset):
    def input_shape(self, settings: dict) -> tuple[int, ...]:
        return (settings["dim"],)

    def classes(self, settings: dict) -> int:
        return 2

    def load_splits(self, settings: dict, data_dir: Path, repeat: int) -> Splits:
        rng = np.random.default_rng([settings["split_seed"], repeat])
        w = rng.standard_normal(settings["dim"])
        out = {}
        for split in SPLITS:
            x = rng.standard_normal((settings[f"n_{split}"], settings["dim"])).astype(np.float32)
            out[split] = (x, (x.astype(np.float64) @ w > 0).astype(np.int64))
        return out

    def fingerprint(self, settings: dict, repeat: int) -> str:
        return fingerprint({"dataset": settings, "repeat": repeat})


DATASET = GaussianSeparable()
