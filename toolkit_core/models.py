"""Small reference models trained locally (no downloaded weights)."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """A small CNN for 1-channel digits: two conv blocks, a hidden dense layer, a linear head.

    ``forward(x)`` takes images in [0, 1]; the penultimate features are the input of ``head``.
    """

    def __init__(self, size: int = 16, width: int = 16, hidden: int = 64, num_classes: int = 10, bias: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=bias),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=bias),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * width * (size // 4) ** 2, hidden, bias=bias)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(hidden, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.fc(self.flatten(self.features(x)))))


class MLP(nn.Module):
    """A ReLU multilayer perceptron; ``dims = (in, hidden..., out)``."""

    def __init__(self, dims: tuple[int, ...] = (2, 128, 128, 2), bias: bool = True, flatten: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()] if flatten else []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b, bias=bias))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
