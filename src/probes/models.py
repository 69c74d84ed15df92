"""The paper's models, in plain PyTorch, each exposing its named probe points.

A model's ``points`` names its probe points in the paper's order;
``forward_points(x)`` returns each one's activation (a ``(batch, ...)`` tensor),
``forward(x)`` the logits, and ``objective(x, y, weight_decay)`` the training
objective, its cross-entropy part and the logits. ``build_model(settings)``
builds a model from its config description.
"""

from __future__ import annotations

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

    def objective(
        self, x: torch.Tensor, y: torch.Tensor, weight_decay: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training objective, its cross-entropy part, and the logits.

        The objective adds ``weight_decay * sum(p^2) / 2`` over the fully
        connected weights and biases (TF's ``5e-4 * l2_loss``).
        """
        logits = self(x)
        ce = F.cross_entropy(logits, y)
        penalty = sum(p.pow(2).sum() for p in (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias))
        return ce + weight_decay * penalty / 2, ce, logits


class DeepMLP(nn.Module):
    """``depth`` fully connected layers of ``width`` units with leaky ReLU, then a linear classifier.

    Probe points: ``input`` (layer 0) and ``layer1`` ... ``layer<depth>`` (post-activation).
    Glorot-normal weights, zero biases. Options, from section 3.4 of the paper:
    ``aux_every`` adds a linear auxiliary classifier after every ``aux_every``-th
    hidden layer (before the last), whose cross-entropy is added to the objective;
    ``skip_to`` feeds layer ``skip_to`` the concatenation of layer ``skip_to - 1``'s
    output with the (flattened) input.
    """

    def __init__(
        self,
        depth: int = 128,
        width: int = 128,
        n_in: int = 784,
        n_classes: int = 10,
        negative_slope: float = 0.01,
        aux_every: int = 0,
        skip_to: int = 0,
    ) -> None:
        super().__init__()
        if skip_to and not 1 < skip_to <= depth:
            raise ValueError(f"model.skip_to: {skip_to} must lie in 2..depth ({depth}), or be 0 for no skip")
        self.depth, self.negative_slope, self.skip_to = depth, negative_slope, skip_to
        fan_in = [n_in] + [width] * (depth - 1)
        if skip_to:
            fan_in[skip_to - 1] = width + n_in
        self.layers = nn.ModuleList(nn.Linear(f, width) for f in fan_in)
        self.head = nn.Linear(width, n_classes)
        self.aux_at = [i for i in range(aux_every, depth, aux_every)] if aux_every else []
        self.aux = nn.ModuleDict({str(i): nn.Linear(width, n_classes) for i in self.aux_at})
        for layer in [*self.layers, self.head, *self.aux.values()]:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.points = ("input", *(f"layer{i}" for i in range(1, depth + 1)))

    def forward_points(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``input`` and every hidden layer's output (``aux_logits`` and ``logits`` too)."""
        x = x.flatten(1)
        out, h = {"input": x}, x
        for i, layer in enumerate(self.layers, start=1):
            if i == self.skip_to:
                h = torch.cat([h, x], dim=1)
            h = F.leaky_relu(layer(h), self.negative_slope)
            out[f"layer{i}"] = h
        out["aux_logits"] = [self.aux[str(i)](out[f"layer{i}"]) for i in self.aux_at]
        out["logits"] = self.head(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_points(x)["logits"]

    def objective(
        self, x: torch.Tensor, y: torch.Tensor, weight_decay: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-entropy of the head plus that of every auxiliary head (plus optional L2 on all weights)."""
        out = self.forward_points(x)
        ce = F.cross_entropy(out["logits"], y)
        total = ce + sum(F.cross_entropy(a, y) for a in out["aux_logits"])
        if weight_decay:
            total = (
                total
                + weight_decay * sum(p.pow(2).sum() for n, p in self.named_parameters() if n.endswith("weight")) / 2
            )
        return total, ce, out["logits"]


MODELS: dict[str, type[nn.Module]] = {"mnist_convnet": MnistConvnet, "deep_mlp": DeepMLP}


def build_model(settings: dict) -> nn.Module:
    """Build the model described by ``settings`` (``{"name": ..., **kwargs}``)."""
    kwargs = dict(settings)
    name = kwargs.pop("name")
    if name not in MODELS:
        raise ValueError(f"model.name: unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)
