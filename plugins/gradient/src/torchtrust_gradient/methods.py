"""Gradient-based attributions computed with plain autograd."""

from __future__ import annotations

import torch

from toolkit_core.attribution import logits_of, resolve_target
from toolkit_core.methods import AttributionMethod


def target_gradient(model: torch.nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """``d logit_target / d x`` for every sample, in one forward and one backward pass."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = logits_of(model, x)
        t = resolve_target(target, logits)
        (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), x)
    return grad


class Gradient(AttributionMethod):
    """Saliency: ``R(x) = d f_t(x) / d x`` (Simonyan, Vedaldi & Zisserman 2014).

    ``absolute=True`` returns ``|d f_t / d x|`` as in the original saliency maps.
    """

    name = "gradient"
    summary = "Plain gradient of the target logit with respect to the input (saliency)."
    citation = "arXiv:1312.6034"
    plain_gradient_times_input = False  # layerwise(): the gradient rule at every layer

    def __init__(self, absolute: bool = False):
        self.absolute = absolute

    def attribute(self, model, x, target):
        grad = target_gradient(model, x, target)
        return grad.abs() if self.absolute else grad


class InputXGradient(AttributionMethod):
    """Input x gradient: ``R(x) = x * d f_t(x) / d x`` (Shrikumar et al. 2016).

    For a bias-free ReLU network this equals LRP-0 and sums to the target logit.
    """

    name = "input_x_gradient"
    summary = "Input times the gradient of the target logit (equals LRP-0 on bias-free ReLU nets)."
    citation = "arXiv:1605.01713"
    plain_gradient_times_input = True  # layerwise(): the gradient rule at every layer, times the input

    def attribute(self, model, x, target):
        return x.detach() * target_gradient(model, x, target)
