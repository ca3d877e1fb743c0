"""Small reference models trained locally (no downloaded weights)."""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from .threads import torch_threads


class DigitsCNN(nn.Module):
    """A small CNN for 1-channel digits: two conv blocks, a hidden dense layer, a linear head.

    ``forward(x)`` takes images in [0, 1]; the penultimate features are the input of ``head``.
    """

    #: images in [0, 1]: the declared input range (used by zB, see toolkit_core.attribution.rules.ZBox)
    input_range = (0.0, 1.0)

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


@functools.lru_cache(maxsize=8)
def _train_digits(
    size: int, epochs: int, seed: int, width: int, hidden: int, lr: float, batch_size: int
) -> dict[str, torch.Tensor]:
    import torch.nn.functional as F

    from .data import load_digits

    with torch_threads(1):  # a tiny model trains ~10x faster single-threaded on a shared CPU
        g = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DigitsCNN(size=size, width=width, hidden=hidden)
        x, y = load_digits(size, "train", seed=0).tensors
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), batch_size):
                idx = perm[i : i + batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def digits_model(
    size: int = 16, epochs: int = 8, seed: int = 0, width: int = 8, hidden: int = 32, lr: float = 3e-3,
    batch_size: int = 64,
) -> nn.Module:
    """A small undefended :class:`DigitsCNN` trained on the digits train split.

    Plain cross-entropy, Adam, seeded; a few seconds on one CPU core. Returned in eval mode; the
    trained weights are cached per argument tuple and every call returns a fresh copy. Test-split
    accuracy is about 0.9 at the defaults (``toolkit_core.data.load_digits(size, "test")``).
    """
    state = _train_digits(size, epochs, seed, width, hidden, float(lr), batch_size)
    model = DigitsCNN(size=size, width=width, hidden=hidden)
    model.load_state_dict(copy.deepcopy(state))
    return model.eval()
