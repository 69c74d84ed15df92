"""Schedule lengths: minibatches per epoch and in all of training, known without building anything."""

from __future__ import annotations

import math


def steps_per_epoch(dataset: dict, train: dict) -> int:
    return math.ceil(dataset["n_train"] / train["batch_size"])


def total_steps(dataset: dict, train: dict) -> int:
    return train["epochs"] * steps_per_epoch(dataset, train)
