"""Geometry of an edit: crops around the mask, model sizes, feathered masks, rectangle masks."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...stream import Chunk, FrameStream


def crop_box(mask: torch.Tensor, context: float = 0.25, margin: int = 16) -> Optional[tuple]:
    """``(x0, y0, x1, y1)`` around the mask ``[H,W]`` grown by ``context`` × its size (at least
    ``margin`` pixels) on each side, clamped to the frame; None when the mask is empty."""
    ys, xs = torch.nonzero(mask > 0, as_tuple=True)
    if len(ys) == 0:
        return None
    H, W = mask.shape
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    pad = max(int(margin), int(round(context * max(y1 - y0, x1 - x0))))
    return max(0, x0 - pad), max(0, y0 - pad), min(W, x1 + pad), min(H, y1 + pad)


def model_size(w: int, h: int, resolution: int, multiple: int = 8) -> tuple:
    """The size a ``w``×``h`` crop is resized to: long side ≈ ``resolution``, both multiples of ``multiple``."""
    s = resolution / max(w, h)
    mw = max(multiple, int(round(w * s / multiple)) * multiple)
    mh = max(multiple, int(round(h * s / multiple)) * multiple)
    return mw, mh


def resize_hw(x: torch.Tensor, size_hw: tuple) -> torch.Tensor:
    """``[n,h,w,c]`` → ``[n,H,W,c]``, antialiased when shrinking."""
    if tuple(x.shape[1:3]) == tuple(size_hw):
        return x
    y = F.interpolate(x.permute(0, 3, 1, 2).float(), size=size_hw, mode="bilinear", align_corners=False,
                      antialias=True)
    return y.permute(0, 2, 3, 1)


def feather(mask: torch.Tensor, grow: int = 4, radius: int = 8) -> torch.Tensor:
    """Soft compositing alpha ``[n,H,W]`` from a mask: dilate by ``grow`` px, then a box blur of
    ``radius`` px applied twice. It is exactly 0 farther than ``grow + 2·radius`` px from the mask
    (see :func:`edit_region`)."""
    m = mask.detach().float().cpu().numpy()
    if m.ndim == 2:
        m = m[None]
    out = np.empty_like(m)
    kd = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8) if grow > 0 else None
    for i in range(m.shape[0]):
        a = (m[i] > 0.5).astype(np.float32)
        if kd is not None:
            a = cv2.dilate(a, kd)
        if radius > 0:
            k = (2 * radius + 1, 2 * radius + 1)
            a = cv2.blur(cv2.blur(a, k, borderType=cv2.BORDER_REPLICATE), k, borderType=cv2.BORDER_REPLICATE)
            a[a < 1e-4] = 0.0
        out[i] = np.clip(a, 0.0, 1.0)
    t = torch.from_numpy(out)
    return t if mask.ndim == 3 else t[0]


def edit_region(mask: torch.Tensor, grow: int = 4, radius: int = 8) -> torch.Tensor:
    """Boolean ``[n,H,W]``: where an edit may touch pixels (the mask dilated by ``grow + 2·radius``)."""
    m = mask.detach().float().cpu().numpy()
    r = grow + 2 * radius
    k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    if m.ndim == 2:
        m = m[None]
    out = np.stack([cv2.dilate((x > 0.5).astype(np.uint8), k) > 0 for x in m])
    return torch.from_numpy(out)


def rectangle_mask(stream: FrameStream, x: float, y: float, width: float, height: float,
                   combine: str = "replace") -> FrameStream:
    """The stream with a rectangle (fractions of the frame) as its mask, the same on every frame."""
    if combine not in ("replace", "add", "intersect"):
        raise ValueError(f"rectangle mask: 'combine' must be replace, add or intersect, got '{combine}'")
    if width <= 0 or height <= 0:
        raise ValueError("rectangle mask: 'width' and 'height' must be above 0")
    H, W = stream.info.height, stream.info.width
    x0, y0 = int(round(x * W)), int(round(y * H))
    x1, y1 = min(W, int(round((x + width) * W))), min(H, int(round((y + height) * H)))
    rect = torch.zeros(H, W)
    rect[y0:y1, x0:x1] = 1.0

    def make():
        def fn(chunk: Chunk) -> Chunk:
            r = rect.expand(len(chunk), H, W)
            if chunk.mask is None or combine == "replace":
                m = r.clone()
            elif combine == "add":
                m = torch.maximum(chunk.mask, r)
            else:
                m = torch.minimum(chunk.mask, r)
            return chunk.with_(mask=m)

        return fn

    params = {"box": [x0, y0, x1, y1], "combine": combine}
    return stream.map("rectangle_mask", params, make, stream.info.with_(has_mask=True), cheap=True)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255)
