"""Label-preserving input transforms for hypothesis invariance (ITID), batched and seeded.

A transform is a set of per-sample parameters (:class:`TransformParams`): rotation (degrees), scale,
translation (pixels), brightness offset, contrast factor and Gaussian-noise std. :func:`apply` warps
the batch with one affine ``grid_sample`` (bilinear, zero padding; content is rotated by ``angle``,
zoomed by ``scale`` and shifted by ``(tx, ty)`` pixels; integer shifts are exact), then applies
``contrast`` around each image's mean, adds ``brightness`` and noise, and clamps to ``[0, 1]``.

Fixed transforms are written as short specs, e.g. ``"translate=2,0"``, ``"rotate=-10"``,
``"scale=0.9"``, ``"brightness=0.1"``, ``"contrast=0.8"``, ``"noise=0.05"`` (see :func:`parse`);
:func:`sample` draws random composite transforms for invariance enhancement.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: The default label-preserving transforms: translations +-2 px, rotations +-10 deg, scaling 0.9/1.1,
#: brightness +-0.1, contrast 0.8/1.2, Gaussian noise std 0.05.
DEFAULT_TRANSFORMS: tuple[str, ...] = (
    "translate=2,0", "translate=-2,0", "translate=0,2", "translate=0,-2",
    "rotate=10", "rotate=-10",
    "scale=0.9", "scale=1.1",
    "brightness=0.1", "brightness=-0.1",
    "contrast=0.8", "contrast=1.2",
    "noise=0.05",
)


@dataclasses.dataclass
class TransformParams:
    """Per-sample transform parameters; each field is a float or a ``(B,)`` tensor."""

    angle: float | Tensor = 0.0  # degrees, counter-clockwise
    scale: float | Tensor = 1.0
    tx: float | Tensor = 0.0  # pixels, +x = right
    ty: float | Tensor = 0.0  # pixels, +y = down
    brightness: float | Tensor = 0.0
    contrast: float | Tensor = 1.0
    noise: float | Tensor = 0.0

    def is_geometric(self) -> bool:
        return any(_nonconst(v, c) for v, c in ((self.angle, 0.0), (self.scale, 1.0), (self.tx, 0.0), (self.ty, 0.0)))


def _nonconst(v, c) -> bool:
    return bool((torch.as_tensor(v) != c).any())


_FIELDS = {
    "translate": ("tx", "ty"), "rotate": ("angle",), "scale": ("scale",),
    "brightness": ("brightness",), "contrast": ("contrast",), "noise": ("noise",),
}


def parse(spec: str) -> TransformParams:
    """``"rotate=10"`` -> :class:`TransformParams` (``translate`` takes ``dx,dy`` in pixels)."""
    kind, sep, value = spec.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in _FIELDS:
        raise ValueError(
            f"unknown transform {spec!r}; write one of {', '.join(k + '=...' for k in _FIELDS)}, "
            "e.g. 'translate=2,0', 'rotate=10', 'scale=0.9', 'brightness=0.1', 'contrast=0.8', 'noise=0.05'"
        )
    try:
        nums = [float(v) for v in value.split(",")]
    except ValueError:
        raise ValueError(f"transform {spec!r}: {value!r} is not a number (list)") from None
    fields = _FIELDS[kind]
    if len(nums) != len(fields):
        raise ValueError(f"transform {spec!r} takes {len(fields)} number(s) ({', '.join(fields)}), got {len(nums)}")
    if kind == "scale" and nums[0] <= 0:
        raise ValueError(f"transform {spec!r}: the scale must be positive")
    if kind == "noise" and nums[0] < 0:
        raise ValueError(f"transform {spec!r}: the noise std must be non-negative")
    return TransformParams(**dict(zip(fields, nums)))


def _vec(v, n: int, x: Tensor) -> Tensor:
    """A float or a (B,) tensor as a (B,) tensor on x's device and dtype."""
    return torch.as_tensor(v, dtype=x.dtype).to(x.device).expand(n)


def apply(x: Tensor, p: TransformParams, generator: torch.Generator | None = None) -> Tensor:
    """Transform the batch ``x``; geometric parameters need images ``(B, C, H, W)``."""
    n = len(x)
    out = x
    if p.is_geometric():
        if x.dim() != 4:
            raise ValueError(
                f"geometric transforms (translate/rotate/scale) need images (B, C, H, W), got shape "
                f"{tuple(x.shape)}; use photometric transforms only, e.g. transforms=('noise=0.05',)"
            )
        h, w = x.shape[-2:]
        a = _vec(p.angle, n, x) * (math.pi / 180)
        s = _vec(p.scale, n, x)
        # output pixel q samples the input at A (q - t): content shifted by t, zoomed by s, rotated by a
        t = torch.stack([2 * _vec(p.tx, n, x) / w, 2 * _vec(p.ty, n, x) / h], 1)
        cos, sin = torch.cos(a), torch.sin(a)
        rinv = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1) / s[:, None, None]
        theta = torch.cat([rinv, -(rinv @ t[:, :, None])], 2)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    photometric = _nonconst(p.contrast, 1.0) or _nonconst(p.brightness, 0.0) or _nonconst(p.noise, 0.0)
    if photometric:
        shape = (n,) + (1,) * (x.dim() - 1)
        mean = out.flatten(1).mean(1).view(shape)
        out = (out - mean) * _vec(p.contrast, n, x).view(shape) + mean + _vec(p.brightness, n, x).view(shape)
        if _nonconst(p.noise, 0.0):
            eps = torch.randn(out.shape, generator=generator, dtype=out.dtype).to(out.device)
            out = out + _vec(p.noise, n, x).view(shape) * eps
        out = out.clamp(0, 1)
    return out if out is not x else x.clone()


def sample(
    n: int,
    generator: torch.Generator,
    max_translate: int = 2,
    max_rotate: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
    brightness: float = 0.1,
    contrast: tuple[float, float] = (0.8, 1.2),
    noise: float = 0.05,
) -> TransformParams:
    """``n`` random composite transforms: integer shifts in ``[-max_translate, max_translate]``,
    angle ``U(-max_rotate, max_rotate)``, scale, brightness offset and contrast uniform in their ranges,
    noise std ``U(0, noise)``."""

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    shifts = torch.randint(-max_translate, max_translate + 1, (2, n), generator=generator).float()
    return TransformParams(
        angle=u(-max_rotate, max_rotate), scale=u(*scale), tx=shifts[0], ty=shifts[1],
        brightness=u(-brightness, brightness), contrast=u(*contrast), noise=u(0.0, noise),
    )
