"""Eigen-CAM: project a layer's activations on their first principal component, batched."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from toolkit_core.attribution import resolve_target
from toolkit_core.feature_maps import capture, expand_to_input, upsample
from toolkit_core.methods import AttributionMethod

__all__ = ["EigenCAM", "first_component_projection"]


def first_component_projection(
    a: Tensor, center: bool = True, solver: Literal["svd", "power"] = "svd", iters: int = 100, tol: float = 1e-7,
) -> Tensor:
    """``(B, K, *S)`` activations -> ``(B, 1, *S)`` projections on the first principal component.

    Per sample, ``M`` is the ``(P, K)`` matrix of the ``P`` positions' channel vectors (centred over
    positions when ``center``); ``v`` is its first right singular vector and the map is ``M v``.
    Sign convention: ``v`` is flipped so that ``sum_k v_k >= 0``, which makes ``M v`` correlate
    non-negatively with the channel-summed activation ``M 1`` (``<M v, M 1> = s_1^2 <v, 1>``), i.e.
    positions with strong total activation get positive values.

    ``solver="svd"``: one batched ``torch.linalg.svd`` of the ``(B, P, K)`` stack.
    ``solver="power"``: batched power iteration on the ``(B, K, K)`` Gram matrices ``M^T M``, started
    from the all-ones vector, until the update changes by less than ``tol`` or after ``iters`` steps
    (fast when ``K`` is small; exact up to ``tol`` when the top singular value is separated).
    No per-sample Python loop either way.
    """
    b, k = a.shape[:2]
    spatial = a.shape[2:]
    m = a.reshape(b, k, -1).transpose(1, 2).to(torch.float64 if a.dtype == torch.float64 else torch.float32)
    if center:
        m = m - m.mean(dim=1, keepdim=True)
    if solver == "svd":
        v = torch.linalg.svd(m, full_matrices=False).Vh[:, 0, :]  # (B, K)
    elif solver == "power":
        gram = m.transpose(1, 2) @ m  # (B, K, K)
        v = torch.ones(b, k, dtype=m.dtype, device=m.device) / k**0.5
        for _ in range(iters):
            nv = (gram @ v[..., None])[..., 0]
            nv = nv / nv.norm(dim=1, keepdim=True).clamp_min(torch.finfo(m.dtype).tiny)
            done = (nv - v).abs().max() < tol
            v = nv
            if done:
                break
    else:
        raise ValueError(f"solver must be 'svd' or 'power', got {solver!r}")
    sign = torch.where(v.sum(1, keepdim=True) < 0, -1.0, 1.0).to(v.dtype)
    v = v * sign
    proj = (m @ v[..., None])[..., 0]  # (B, P)
    return proj.reshape(b, 1, *spatial).to(a.dtype)


class EigenCAM(AttributionMethod):
    """Eigen-CAM: ``L = M v_1`` with ``v_1`` the first right singular vector of ``M`` (Muhammad & Yeasin 2020).

    ``M`` holds the feature vectors of ``layer``'s output at every position (``layer=None``: the
    last spatial feature map in execution order), centred over positions (``center=True``, as
    pytorch-grad-cam does; ``False`` is the paper's uncentred projection). The sign of ``v_1`` is
    fixed so that ``sum_k v_k >= 0`` (see :func:`first_component_projection`). ``relu=True`` keeps
    the positive part, as pytorch-grad-cam. The map is class-agnostic (``target`` is only
    validated), upsampled bilinearly to the input size and repeated over the input channels.
    """

    name = "eigencam"
    summary = "Eigen-CAM: projection of a layer's feature maps on their first principal component."
    citation = "arXiv:2008.00299"

    def __init__(self, layer: str | None = None, center: bool = True, relu: bool = True,
                 solver: Literal["svd", "power"] = "svd"):
        self.layer, self.center, self.relu, self.solver = layer, center, relu, solver

    def attribute(self, model, x, target):
        x = x.detach()
        with torch.no_grad():
            cap = capture(model, x, self.layer, grad=False)
        resolve_target(target, cap.logits)  # class-agnostic, but an invalid target still raises
        cam = first_component_projection(cap.activation, center=self.center, solver=self.solver)
        if self.relu:
            cam = cam.clamp_min(0)
        return expand_to_input(upsample(cam, tuple(x.shape[2:])), x)
