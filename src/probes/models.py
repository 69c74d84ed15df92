"""The paper's models, in plain PyTorch: two model factories (``factory.py``).

Each names its modules after the probe points the paper uses, so hooks on those module paths
capture them (``capture.py``), and declares them as ``points`` (what ``points: all`` means);
``objective(x, y, weight_decay)`` is the training objective, its cross-entropy part and the logits.
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
    0.1 elsewhere. Each module is named after the paper's probe point it outputs
    (``conv1_preact``, ``conv1_postact``, ..., ``logits``).
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
        self.conv1_preact = nn.Conv2d(1, conv1_filters, 5, padding=2)
        self.conv1_postact = nn.ReLU()
        self.conv1_postpool = nn.MaxPool2d(2)
        self.conv2_preact = nn.Conv2d(conv1_filters, conv2_filters, 5, padding=2)
        self.conv2_postact = nn.ReLU()
        self.conv2_postpool = nn.MaxPool2d(2)
        self.fc1_preact = nn.Linear(7 * 7 * conv2_filters, fc_units)
        self.fc1_postact = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Linear(fc_units, n_classes)
        for layer, bias in ((self.conv1_preact, 0.0), (self.conv2_preact, 0.1), (self.fc1_preact, 0.1),
                            (self.logits, 0.1)):  # fmt: skip
            truncated_normal_(layer.weight, init_std)
            nn.init.constant_(layer.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1_postpool(self.conv1_postact(self.conv1_preact(x)))
        h = self.conv2_postpool(self.conv2_postact(self.conv2_preact(h)))
        h = self.fc1_postact(self.fc1_preact(h.flatten(1)))
        return self.logits(self.dropout(h))

    def objective(
        self, x: torch.Tensor, y: torch.Tensor, weight_decay: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training objective, its cross-entropy part, and the logits.

        The objective adds ``weight_decay * sum(p^2) / 2`` over the fully
        connected weights and biases (TF's ``5e-4 * l2_loss``).
        """
        logits = self(x)
        ce = F.cross_entropy(logits, y)
        fc = (self.fc1_preact.weight, self.fc1_preact.bias, self.logits.weight, self.logits.bias)
        return ce + weight_decay * sum(p.pow(2).sum() for p in fc) / 2, ce, logits


class Dense(nn.Module):
    """A fully connected layer with leaky ReLU: one hidden layer of ``DeepMLP``, its output a probe point."""

    def __init__(self, fan_in: int, width: int, negative_slope: float) -> None:
        super().__init__()
        self.linear = nn.Linear(fan_in, width)
        self.negative_slope = negative_slope

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.linear(h), self.negative_slope)


class DeepMLP(nn.Module):
    """``depth`` fully connected layers of ``width`` units with leaky ReLU, then a linear classifier.

    Probe points: ``input`` (layer 0) and ``layer1`` ... ``layer<depth>`` (each hidden layer's
    post-activation output: modules of those names). Glorot-normal weights, zero biases.
    Options, from section 3.4 of the paper: ``aux_every`` adds a linear auxiliary classifier
    after every ``aux_every``-th hidden layer (before the last), whose cross-entropy is added to
    the objective; ``skip_to`` feeds layer ``skip_to`` the concatenation of layer ``skip_to - 1``'s
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
        self.depth, self.skip_to = depth, skip_to
        fan_in = [n_in] + [width] * (depth - 1)
        if skip_to:
            fan_in[skip_to - 1] = width + n_in
        for i, f in enumerate(fan_in, start=1):
            self.add_module(f"layer{i}", Dense(f, width, negative_slope))
        self.head = nn.Linear(width, n_classes)
        self.aux_at = [i for i in range(aux_every, depth, aux_every)] if aux_every else []
        self.aux = nn.ModuleDict({str(i): nn.Linear(width, n_classes) for i in self.aux_at})
        for layer in [*(self.hidden(i).linear for i in range(1, depth + 1)), self.head, *self.aux.values()]:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.points = ("input", *(f"layer{i}" for i in range(1, depth + 1)))

    def hidden(self, i: int) -> Dense:
        """Hidden layer ``i`` (1-based)."""
        return getattr(self, f"layer{i}")

    def hidden_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden layer's output, in order."""
        x = x.flatten(1)
        outs, h = [], x
        for i in range(1, self.depth + 1):
            if i == self.skip_to:
                h = torch.cat([h, x], dim=1)
            h = self.hidden(i)(h)
            outs.append(h)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden_outputs(x)[-1])

    def objective(
        self, x: torch.Tensor, y: torch.Tensor, weight_decay: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cross-entropy of the head plus that of every auxiliary head (plus optional L2 on all weights)."""
        hidden = self.hidden_outputs(x)
        logits = self.head(hidden[-1])
        ce = F.cross_entropy(logits, y)
        total = ce + sum(F.cross_entropy(self.aux[str(i)](hidden[i - 1]), y) for i in self.aux_at)
        if weight_decay:
            total = (
                total
                + weight_decay * sum(p.pow(2).sum() for n, p in self.named_parameters() if n.endswith("weight")) / 2
            )
        return total, ce, logits
