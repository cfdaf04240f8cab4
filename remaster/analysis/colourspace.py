"""Colour-space facts every stage shares: the sRGB / BT.709 display transfer and luma weights.

Frames on the stream are display-referred sRGB/BT.709 values in 0..1 unless the stream info says
otherwise; stages that scale light (exposure, white balance, deflicker gains) do it on linear
values from :func:`srgb_to_linear` and go back with :func:`linear_to_srgb`."""
from __future__ import annotations

import torch

LUMA_709 = (0.2126, 0.7152, 0.0722)  # Rec.709 / sRGB luma weights
LUMA_601 = (0.299, 0.587, 0.114)  # Rec.601 (what OpenCV's RGB->grey uses)
# full-range BT.601 RGB -> Y, Cb, Cr (JPEG / analogue tape's colour-difference signals)
YCC_601 = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def srgb_to_linear(v: torch.Tensor) -> torch.Tensor:
    v = v.clamp(min=0.0)
    return torch.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: torch.Tensor) -> torch.Tensor:
    v = v.clamp(min=0.0)
    return torch.where(v <= 0.0031308, v * 12.92, 1.055 * v.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def luma(rgb: torch.Tensor, weights: tuple = LUMA_709) -> torch.Tensor:
    """Weighted sum over the last (RGB) axis."""
    return rgb[..., 0] * weights[0] + rgb[..., 1] * weights[1] + rgb[..., 2] * weights[2]
