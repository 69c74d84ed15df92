"""The paper's models, in plain PyTorch, each exposing its named probe points.

A model's ``forward_points(x)`` returns every probe point's activation, in the
paper's order, as a dict of ``(batch, ...)`` tensors; ``forward(x)`` returns the
logits. ``build_model(settings)`` builds a model from its config description.
"""

from __future__ import annotations

import hashlib
import json

import torch
import torch.nn.functional as F
from torch import nn


def truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """TensorFlow's ``truncated_normal``: N(0, std^2) redrawn beyond two std."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


class MnistConvnet(nn.Module):
    """The convnet of TensorFlow's ``models/image/mnist/convolutional.py``.

    conv 5x5/32 SAME -> ReLU -> maxpool 2 -> conv 5x5/64 SAME -> ReLU -> maxpool 2
    -> fc 3136->512 -> ReLU (dropout while training) -> fc 512->10, initialised
    as in that file: truncated normal (std 0.1) weights, biases 0 for conv1 and
    0.1 elsewhere.
    """

    points = (
        "input",
        "conv1_preact",
        "conv1_postact",
        "conv1_postpool",
        "conv2_preact",
        "conv2_postact",
        "conv2_postpool",
        "fc1_preact",
        "fc1_postact",
        "logits",
    )

    def __init__(
        self,
        conv1_filters: int = 32,
        conv2_filters: int = 64,
        fc_units: int = 512,
        dropout: float = 0.5,
        init_std: float = 0.1,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, conv1_filters, 5, padding=2)
        self.conv2 = nn.Conv2d(conv1_filters, conv2_filters, 5, padding=2)
        self.fc1 = nn.Linear(7 * 7 * conv2_filters, fc_units)
        self.fc2 = nn.Linear(fc_units, n_classes)
        self.dropout = nn.Dropout(dropout)
        for layer, bias in ((self.conv1, 0.0), (self.conv2, 0.1), (self.fc1, 0.1), (self.fc2, 0.1)):
            truncated_normal_(layer.weight, init_std)
            nn.init.constant_(layer.bias, bias)

    def forward_points(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All probe points for a batch of ``(batch, 1, 28, 28)`` images."""
        out = {"input": x}
        out["conv1_preact"] = self.conv1(x)
        out["conv1_postact"] = F.relu(out["conv1_preact"])
        out["conv1_postpool"] = F.max_pool2d(out["conv1_postact"], 2)
        out["conv2_preact"] = self.conv2(out["conv1_postpool"])
        out["conv2_postact"] = F.relu(out["conv2_preact"])
        out["conv2_postpool"] = F.max_pool2d(out["conv2_postact"], 2)
        out["fc1_preact"] = self.fc1(out["conv2_postpool"].flatten(1))
        out["fc1_postact"] = F.relu(out["fc1_preact"])
        out["logits"] = self.fc2(self.dropout(out["fc1_postact"]))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_points(x)["logits"]

    def penalised_parameters(self) -> list[torch.Tensor]:
        """Parameters under the L2 penalty: the fully connected layers, as in the TF file."""
        return [self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias]


MODELS: dict[str, type[nn.Module]] = {"mnist_convnet": MnistConvnet}


def build_model(settings: dict) -> nn.Module:
    """Build the model described by ``settings`` (``{"name": ..., **kwargs}``)."""
    kwargs = dict(settings)
    name = kwargs.pop("name")
    if name not in MODELS:
        raise ValueError(f"model.name: unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def model_points(settings: dict) -> tuple[str, ...]:
    """The probe points a model described by ``settings`` offers, in order."""
    return MODELS[settings["name"]].points


def point_widths(settings: dict, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Flattened width of every probe point, from one forward pass on zeros."""
    model = build_model(settings).eval()
    with torch.no_grad():
        out = model.forward_points(torch.zeros((1, *input_shape)))
    return {name: int(t[0].numel()) for name, t in out.items()}


def fingerprint(obj: object) -> str:
    """A short stable hash of a JSON-serialisable description."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
