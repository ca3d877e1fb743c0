"""Grad-CAM and Grad-CAM++: channel weights from the gradient of the target logit at one layer."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from toolkit_core.attribution import resolve_target
from toolkit_core.feature_maps import capture, expand_to_input, upsample
from toolkit_core.methods import AttributionMethod

__all__ = ["GradCAM", "GradCAMPlusPlus", "cam_weights", "gradient_cam"]


def cam_weights(a: Tensor, g: Tensor, kind: Literal["gradcam", "gradcam_pp"], eps: float = 1e-6) -> Tensor:
    """Channel weights ``(B, K)`` from activations ``A`` and gradients ``g = dS/dA``, both ``(B, K, *S)``.

    * Grad-CAM: ``w_k = mean_ij g_kij``.
    * Grad-CAM++ (closed form of Chattopadhyay et al. eq. 19 with an exponential score, whose
      higher derivatives are powers of the first):
      ``alpha_kij = g^2 / (2 g^2 + sum_ab A_kab * g^3 + eps)`` (0 where ``g = 0``) and
      ``w_k = sum_ij alpha_kij * relu(g_kij)``.
    """
    dims = tuple(range(2, a.dim()))
    if kind == "gradcam":
        return g.mean(dim=dims)
    g2 = g * g
    g3 = g2 * g
    sum_a = a.sum(dim=dims, keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + eps)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    return (alpha * g.clamp_min(0)).sum(dim=dims)


def gradient_cam(model, x: Tensor, target, layer: str | None, kind: str, relu: bool, eps: float = 1e-6) -> Tensor:
    """The (B, 1, *S_input) map ``relu(sum_k w_k A_k)`` upsampled to the input's spatial size."""
    cap = capture(model, x, layer)
    t = resolve_target(target, cap.logits)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(cap.logits.gather(1, t[:, None]).sum(), cap.activation)
    a = cap.activation.detach()
    w = cam_weights(a, g, kind, eps)
    cam = (w.view(*w.shape, *([1] * (a.dim() - 2))) * a).sum(1, keepdim=True)
    if relu:
        cam = cam.clamp_min(0)
    return upsample(cam, tuple(x.shape[2:]))


class GradCAM(AttributionMethod):
    """Grad-CAM: ``L = relu(sum_k w_k A^k)``, ``w_k = 1/Z sum_ij d y^c / d A^k_ij`` (Selvaraju et al. 2017).

    ``A`` is the output of ``layer`` (a name from ``model.named_modules()``; ``None``: the last
    module whose output is a spatial feature map, in execution order). The map, computed at the
    layer's resolution, is upsampled bilinearly (half-pixel centres) to the input size and repeated
    over the input channels. ``relu=False`` keeps the signed map. Values are not rescaled (the
    pytorch-grad-cam package min-max scales each map to [0, 1]; rescale yourself to compare).
    """

    name = "gradcam"
    summary = "Grad-CAM: layer feature maps weighted by the spatially averaged gradient, upsampled."
    citation = "arXiv:1610.02391"

    def __init__(self, layer: str | None = None, relu: bool = True):
        self.layer, self.relu = layer, relu

    def attribute(self, model, x, target):
        return expand_to_input(gradient_cam(model, x.detach(), target, self.layer, "gradcam", self.relu), x)


class GradCAMPlusPlus(AttributionMethod):
    """Grad-CAM++: ``w_k = sum_ij alpha_kij relu(dS/dA^k_ij)`` with the closed-form ``alpha`` (eq. 19).

    ``alpha_kij = g^2 / (2 g^2 + sum_ab A^k_ab g^3 + eps)`` with ``g = dS/dA^k_ij`` (the paper's
    exponential-score identity; the positive factor ``exp(S)`` cancels after rescaling, so the raw
    gradient is used, as in pytorch-grad-cam). Layer choice, upsampling and ``relu`` as in ``gradcam``.
    """

    name = "gradcam_pp"
    summary = "Grad-CAM++: feature maps weighted by positive gradients with pixel-wise alpha weights."
    citation = "arXiv:1710.11063"

    def __init__(self, layer: str | None = None, relu: bool = True, eps: float = 1e-6):
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.layer, self.relu, self.eps = layer, relu, eps

    def attribute(self, model, x, target):
        return expand_to_input(
            gradient_cam(model, x.detach(), target, self.layer, "gradcam_pp", self.relu, self.eps), x)
