"""Mask operations several stages share (masks are ``[n,H,W]`` float 0..1, 1 = person)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..stream import FrameStream


def require_mask(stream: FrameStream, what: str) -> None:
    if not stream.info.has_mask:
        raise ValueError(
            f"{what}: the input stream has no mask. Put a masking node first (Video Matting, "
            "Portrait Matting or SAM2 Video Mask), or attach a MASK to the frames."
        )


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (pixels > 0) or erode (pixels < 0) a soft mask by ``|pixels|`` with a disc-like
    footprint (repeated 3x3 max in alternating square/cross shapes)."""
    if pixels == 0:
        return mask
    x = mask.unsqueeze(1)
    sign = 1.0 if pixels > 0 else -1.0
    x = x * sign
    for i in range(abs(int(pixels))):
        if i % 2 == 0:
            x = F.max_pool2d(x, 3, 1, 1)
        else:  # a cross step keeps the footprint round rather than square
            h = F.max_pool2d(x, (1, 3), 1, (0, 1))
            v = F.max_pool2d(x, (3, 1), 1, (1, 0))
            x = torch.maximum(h, v)
    return (x * sign).squeeze(1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``[n,C,H,W]`` (kernel radius 3 sigma, replicated borders)."""
    if sigma <= 0:
        return x
    import kornia

    k = 2 * max(1, int(round(3 * sigma))) + 1
    return kornia.filters.gaussian_blur2d(x, (k, k), (float(sigma), float(sigma)), border_type="replicate")


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Soften edges: Gaussian blur with sigma = radius / 2."""
    if radius <= 0:
        return mask
    return gaussian_blur(mask.unsqueeze(1), radius / 2.0).squeeze(1).clamp_(0, 1)
