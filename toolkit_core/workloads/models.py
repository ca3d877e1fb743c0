"""The user's model, named in a config: ``[model]`` -> a module that takes images in [0, 1].

``arch`` names where the network comes from:

* ``"torchvision:<name>"``: any classification model of ``torchvision.models`` (``resnet18``,
  ``vgg16``, ``mobilenet_v3_small``, ...), built with ``weights=None`` unless ``weights`` names
  pretrained ones (``"DEFAULT"`` or an enum member like ``"ResNet18_Weights.IMAGENET1K_V1"``;
  torchvision downloads those on first use, so only on a machine that can). ``num_classes`` sets
  the size of the classifier head; ``small_input = true`` gives ResNets the usual CIFAR stem
  (3x3 stride-1 first convolution, no max pool) for 32x32 inputs.
* ``"timm:<name>"``: a timm model, when timm is installed (an optional extra, never required).
* ``"package.module:factory"``: your own code; ``factory(**kwargs)`` returns an ``nn.Module``
  (``num_classes`` is passed when given).

``checkpoint = "path.pth"`` loads a state dict (``torch.load(..., weights_only=True)``; a dict holding
a ``"state_dict"`` or ``"model"`` entry and a ``module.`` prefix left by DataParallel are accepted);
a mismatch raises :class:`CheckpointMismatchError` naming the missing and unexpected keys.

The input preprocessing (``mean``, ``std``, ``input_size``) goes *inside* the model:
:class:`Preprocessed` computes ``net((x - mean) / std)``, so attacks, defenses and attributions all
see pixels in [0, 1] and an ``eps`` means the same thing for every model. The wrapper declares
``input_range = (0.0, 1.0)``; the attribution engine folds the ``(x - mean) / std`` into the first
layer and uses that range for bounded rules (zB), so relevance lives on pixels, not on normalized
values. :func:`input_bounds` gives the bounds of the normalized input, ``(0 - mean) / std`` and
``(1 - mean) / std``, for code that works on the inner network.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import TorchtrustError

__all__ = ["CheckpointMismatchError", "ModelSpec", "Preprocessed", "build_model", "input_bounds",
           "load_checkpoint"]


class CheckpointMismatchError(TorchtrustError, RuntimeError):
    """A checkpoint whose keys or shapes do not fit the model built from the config."""


@dataclasses.dataclass
class ModelSpec:
    """What ``[model]`` says. ``arch`` is required; the rest have defaults (see the module docstring)."""

    arch: str
    num_classes: int | None = None
    weights: str | None = None
    checkpoint: str | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    input_size: int | None = None
    small_input: bool = False
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        name = self.arch.split(":", 1)[1] if self.arch.startswith(("torchvision:", "timm:")) else self.arch
        return name + (f" ({Path(self.checkpoint).name})" if self.checkpoint else "")

    def check(self) -> list[str]:
        """Problems with the spec itself (nothing is built or imported)."""
        problems = []
        if not isinstance(self.arch, str) or ":" not in self.arch:
            problems.append(f"model.arch must be 'torchvision:<name>', 'timm:<name>' or 'package.module:factory', "
                            f"got {self.arch!r}")
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 2):
            problems.append(f"model.num_classes must be an integer >= 2, got {self.num_classes!r}")
        if (self.mean is None) != (self.std is None):
            problems.append("model.mean and model.std go together: give both or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                problems.append(f"model.mean has {len(self.mean)} values but model.std has {len(self.std)}")
            if any(not isinstance(s, (int, float)) or s <= 0 for s in self.std):
                problems.append(f"model.std must be positive numbers, got {list(self.std)}")
        if self.input_size is not None and (not isinstance(self.input_size, int) or self.input_size < 1):
            problems.append(f"model.input_size must be a positive integer, got {self.input_size!r}")
        if self.checkpoint is not None and not Path(self.checkpoint).expanduser().is_file():
            problems.append(f"model.checkpoint {self.checkpoint!r} is not a file")
        return problems


class Preprocessed(nn.Module):
    """``net((x - mean) / std)`` for ``x`` in [0, 1]: the normalization lives inside the model.

    ``input_range``: the range of the inputs this module expects, ``(0.0, 1.0)``. ``mean`` / ``std``:
    ``(1, C, 1, 1)`` buffers (identity when the config gives none). ``input_size``: the side length
    the data is resized to (``None``: as stored).
    """

    input_range = (0.0, 1.0)

    def __init__(self, net: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 input_size: int | None = None):
        super().__init__()
        self.net = net
        self.input_size = input_size
        self.normalizes = mean is not None
        m = torch.tensor(list(mean) if mean is not None else [0.0], dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(list(std) if std is not None else [1.0], dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("mean", m)
        self.register_buffer("std", s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalizes:
            x = (x - self.mean) / self.std
        return self.net(x)


def input_bounds(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(low, high)`` of the normalized input a :class:`Preprocessed` model's network receives.

    ``low = (0 - mean) / std``, ``high = (1 - mean) / std``, shaped ``(1, C, 1, 1)``; ``None`` for
    other models.
    """
    if not isinstance(model, Preprocessed):
        return None
    return (0.0 - model.mean) / model.std, (1.0 - model.mean) / model.std


def _torchvision(name: str, spec: ModelSpec) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = [a for a in available if name.split("_")[0] in a][:8]
        raise ValueError(f"torchvision has no classification model {name!r}"
                         + (f"; similar: {', '.join(close)}" if close else "")
                         + "; see torchvision.models.list_models()")
    kwargs = dict(spec.kwargs)
    weights = spec.weights
    if weights:
        kwargs["weights"] = torchvision.models.get_weight(weights) if "." in weights else weights
        if spec.num_classes is not None:
            # pretrained heads have a fixed size: build as published, replace the head below
            net = torchvision.models.get_model(name, **kwargs)
            return _replace_head(net, spec.num_classes)
    else:
        kwargs["weights"] = None
        if spec.num_classes is not None:
            kwargs["num_classes"] = spec.num_classes
    net = torchvision.models.get_model(name, **kwargs)
    if spec.small_input:
        _small_input_stem(net, name)
    return net


def _replace_head(net: nn.Module, num_classes: int) -> nn.Module:
    for attr in ("fc", "classifier", "head", "heads"):
        head = getattr(net, attr, None)
        if isinstance(head, nn.Linear):
            setattr(net, attr, nn.Linear(head.in_features, num_classes))
            return net
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            head[-1] = nn.Linear(head[-1].in_features, num_classes)
            return net
    raise ValueError(f"cannot find the classifier head of {type(net).__name__} to resize it to {num_classes} "
                     "classes; load a checkpoint with the right head instead of pretrained weights")


def _small_input_stem(net: nn.Module, name: str) -> None:
    conv = getattr(net, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or not hasattr(net, "maxpool"):
        raise ValueError(f"model.small_input applies to ResNet-style models (conv1 + maxpool), not {name}")
    net.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()


def _timm(name: str, spec: ModelSpec) -> nn.Module:
    try:
        import timm
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"model.arch = 'timm:{name}' needs timm, an optional extra: pip install timm") \
            from None
    kwargs = dict(spec.kwargs)
    if spec.num_classes is not None:
        kwargs["num_classes"] = spec.num_classes
    return timm.create_model(name, pretrained=bool(spec.weights), **kwargs)


def _factory(target: str, spec: ModelSpec) -> nn.Module:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"model.arch {target!r}: cannot import {module_name!r} ({exc}); is it installed "
                                  "or on PYTHONPATH?") from None
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise AttributeError(f"model.arch {target!r}: {module_name} has no attribute {attr!r}")
        factory = getattr(factory, part)
    kwargs = dict(spec.kwargs)
    if spec.num_classes is not None:
        kwargs["num_classes"] = spec.num_classes
    net = factory(**kwargs)
    if not isinstance(net, nn.Module):
        raise TypeError(f"model.arch {target!r} returned {type(net).__name__}, not a torch.nn.Module")
    return net


def load_checkpoint(net: nn.Module, path: str | Path) -> None:
    """Load a state dict into ``net`` (``weights_only=True``); raise naming missing/unexpected keys."""
    path = Path(path).expanduser()
    from ..training.checkpoint import load_file

    state = load_file(path, map_location="cpu",
                      what="save the weights again with torch.save(model.state_dict(), path) and pass that file")
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointMismatchError(f"{path} does not hold a state dict (a mapping of parameter names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def some(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {some(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {some(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {some(shapes)}")
        raise CheckpointMismatchError(
            f"the checkpoint {path} does not fit the model built from [model]: " + "; ".join(parts)
            + ". Check model.arch, model.num_classes and model.small_input against how the checkpoint was trained.")
    net.load_state_dict(state)


def build_model(spec: ModelSpec) -> Preprocessed:
    """Build the network ``spec`` names, load its checkpoint, wrap it in :class:`Preprocessed` (eval mode)."""
    problems = spec.check()
    if problems:
        raise ValueError("; ".join(problems))
    source, _, name = spec.arch.partition(":")
    if source == "torchvision":
        net = _torchvision(name, spec)
    elif source == "timm":
        net = _timm(name, spec)
    else:
        net = _factory(spec.arch, spec)
    if spec.checkpoint:
        load_checkpoint(net, spec.checkpoint)
    return Preprocessed(net, spec.mean, spec.std, spec.input_size).eval()
