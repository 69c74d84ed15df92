"""Shapes known without building anything: probe points and their widths, input shapes, schedule lengths.

The workflow reads these for every experiment whenever Snakemake starts, so
this module imports neither torch nor the models: ``point_widths`` computes
from a model description what ``models.py`` builds (tests/test_models.py
checks the two agree, point for point, by a forward pass).
"""

from __future__ import annotations

import math

# the keyword arguments each model of models.py takes (tests check them against the constructors)
MODEL_ARGS = {
    "mnist_convnet": ("conv1_filters", "conv2_filters", "fc_units", "dropout", "init_std", "n_classes"),
    "deep_mlp": ("depth", "width", "n_in", "n_classes", "negative_slope", "aux_every", "skip_to"),
}


# what each dataset offers: its classes and, for a fixed dataset, the examples its train / val splits
# are drawn from and those its test split is
DATASET_SIZES = {"mnist": {"classes": 10, "train_val": 60000, "test": 10000}, "gaussian_separable": {"classes": 2}}
MODEL_DEFAULTS = {"mnist_convnet": {"n_classes": 10}, "deep_mlp": {"n_in": 784, "n_classes": 10}}


def input_shape(dataset: dict) -> tuple[int, ...]:
    """The shape of one input example of a dataset."""
    return (1, 28, 28) if dataset["name"] == "mnist" else (dataset["dim"],)


def steps_per_epoch(dataset: dict, train: dict) -> int:
    return math.ceil(dataset["n_train"] / train["batch_size"])


def total_steps(dataset: dict, train: dict) -> int:
    return train["epochs"] * steps_per_epoch(dataset, train)


def point_widths(model: dict, in_shape: tuple[int, ...]) -> dict[str, int]:
    """Every probe point of the model described by ``model``, in order, with its flattened width."""
    kwargs = dict(model)
    name = kwargs.pop("name")
    if name not in MODEL_ARGS:
        raise ValueError(f"model.name: unknown model {name!r}; expected one of {sorted(MODEL_ARGS)}")
    unknown = sorted(set(kwargs) - set(MODEL_ARGS[name]))
    if unknown:
        raise TypeError(f"model {name!r} takes no {unknown}; it takes {list(MODEL_ARGS[name])}")
    n_in = math.prod(in_shape)
    if name == "mnist_convnet":  # 5x5 'same' convolutions, each followed by 2x2 max pooling
        c1, c2, fc = kwargs.get("conv1_filters", 32), kwargs.get("conv2_filters", 64), kwargs.get("fc_units", 512)
        pixels = math.prod(in_shape[1:])
        return {"input": n_in, "conv1_preact": c1 * pixels, "conv1_postact": c1 * pixels,
                "conv1_postpool": c1 * pixels // 4, "conv2_preact": c2 * pixels // 4,
                "conv2_postact": c2 * pixels // 4, "conv2_postpool": c2 * pixels // 16,
                "fc1_preact": fc, "fc1_postact": fc, "logits": kwargs.get("n_classes", 10)}  # fmt: skip
    depth, width, skip_to = kwargs.get("depth", 128), kwargs.get("width", 128), kwargs.get("skip_to", 0)
    if skip_to and not 1 < skip_to <= depth:
        raise ValueError(f"model.skip_to: {skip_to} must lie in 2..depth ({depth}), or be 0 for no skip")
    return {"input": n_in, **{f"layer{i}": width for i in range(1, depth + 1)}}
