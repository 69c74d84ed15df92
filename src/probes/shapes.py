"""Facts known without building anything: each dataset's classes, sizes and input shape, and schedule lengths.

The workflow reads these for every experiment whenever Snakemake starts (a model's probe
points and widths come from the model itself: ``layers.py``).
"""

from __future__ import annotations

import math

# what each dataset offers: its classes and, for a fixed dataset, the examples its train / val splits
# are drawn from and those its test split is
DATASET_SIZES = {"mnist": {"classes": 10, "train_val": 60000, "test": 10000}, "gaussian_separable": {"classes": 2}}


def input_shape(dataset: dict) -> tuple[int, ...]:
    """The shape of one input example of a dataset."""
    return (1, 28, 28) if dataset["name"] == "mnist" else (dataset["dim"],)


def steps_per_epoch(dataset: dict, train: dict) -> int:
    return math.ceil(dataset["n_train"] / train["batch_size"])


def total_steps(dataset: dict, train: dict) -> int:
    return train["epochs"] * steps_per_epoch(dataset, train)
