"""Tools for the stream's mask: temporal smoothing, grow/shrink, feather, threshold, invert,
combine two masks, and a guided-filter refine that snaps matte edges to the image.

All work on soft masks (float 0..1) and keep the frames untouched. Every tool is a plain function
on tensors plus a stream wrapper; the stream wrappers need a stream that carries a mask.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from ..stream import Chunk, FrameStream, Temporal, rebatch
from . import scenes

COMBINE_MODES = ("union", "intersect", "subtract", "add", "multiply", "difference")


def require_mask(stream: FrameStream, what: str) -> None:
    if not stream.info.has_mask:
        raise ValueError(
            f"{what}: the input stream has no mask. Put a masking node first (Video Matting, "
            "Portrait Matting or SAM2 Video Mask), or attach a MASK to the frames."
        )


# ---------------------------------------------------------------------------------------------
# plain tensor functions (mask [n,H,W] float)
# ---------------------------------------------------------------------------------------------
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


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[n,C,H,W]`` with replicated borders."""
    if sigma <= 0:
        return x
    k = _gauss_kernel(sigma).to(x.device, x.dtype)
    r = (k.numel() - 1) // 2
    c = x.shape[1]
    kh = k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    kv = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = F.pad(x, (r, r, 0, 0), mode="replicate") if x.shape[-1] > r else F.pad(x, (r, r, 0, 0), mode="constant")
    x = F.conv2d(x, kh, groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate") if x.shape[-2] > r else F.pad(x, (0, 0, r, r), mode="constant")
    return F.conv2d(x, kv, groups=c)


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Soften edges: Gaussian blur with sigma = radius / 2."""
    if radius <= 0:
        return mask
    return gaussian_blur(mask.unsqueeze(1), radius / 2.0).squeeze(1).clamp_(0, 1)


def threshold(mask: torch.Tensor, low: float = 0.5, high: Optional[float] = None) -> torch.Tensor:
    """Hard threshold at ``low`` (high None), or a linear ramp from ``low`` (0) to ``high`` (1)."""
    if high is None or high <= low:
        return (mask >= low).to(mask.dtype)
    return ((mask - low) / (high - low)).clamp(0, 1)


def combine(a: torch.Tensor, b: torch.Tensor, mode: str = "union") -> torch.Tensor:
    if mode == "union":
        return torch.maximum(a, b)
    if mode == "intersect":
        return torch.minimum(a, b)
    if mode == "subtract":
        return a * (1 - b)
    if mode == "add":
        return (a + b).clamp(0, 1)
    if mode == "multiply":
        return a * b
    if mode == "difference":
        return (a - b).abs()
    raise ValueError(f"unknown combine mode '{mode}'; choose one of {', '.join(COMBINE_MODES)}")


def guided_refine(frames: torch.Tensor, mask: torch.Tensor, radius: int = 8, eps: float = 1e-3,
                  max_side: int = 1024) -> torch.Tensor:
    """Snap a soft mask to image edges with a guided filter (He et al.) using the frame as guide.

    Large frames are filtered at a reduced size (fast guided filter) and the linear coefficients
    are upsampled, so the cost is bounded whatever the resolution.
    """
    from kornia.filters import guided_blur

    guide = frames.permute(0, 3, 1, 2)
    m = mask.unsqueeze(1)
    h, w = m.shape[2:]
    sub = max(1, int(round(max(h, w) / max_side)))
    k = 2 * max(1, int(radius // sub)) + 1
    out = guided_blur(guide, m, k, eps, border_type="reflect", subsample=sub)
    return out.squeeze(1).clamp_(0, 1)


class TemporalSmoother:
    """Motion-adaptive exponential smoothing of a mask sequence that does not lag motion.

    Each pixel blends towards the new value with a weight that grows with how much the mask
    changed there: small changes (flicker, noise below ``tolerance``) are averaged with weight
    ``1 - strength``; a change of ``tolerance`` or more (a moving edge) is taken at once. Where
    the frames themselves change (motion in the image), the new value is taken too. A static mask
    passes through unchanged; the state resets at scene cuts.
    """

    def __init__(self, strength: float = 0.6, tolerance: float = 0.3, image_tolerance: float = 0.08) -> None:
        if not 0 <= strength < 1:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        if tolerance <= 0:
            raise ValueError(f"tolerance must be positive, got {tolerance}")
        self.strength = float(strength)
        self.tolerance = float(tolerance)
        self.image_tolerance = float(image_tolerance)
        self.prev_mask: Optional[torch.Tensor] = None
        self.prev_frame: Optional[torch.Tensor] = None

    def reset(self) -> None:
        self.prev_mask = self.prev_frame = None

    def step(self, frame: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.prev_mask is None:
            out = mask
        else:
            diff = mask - self.prev_mask
            follow = (diff.abs() / self.tolerance)
            if self.image_tolerance > 0 and self.prev_frame is not None:
                motion = (frame - self.prev_frame).abs().amax(-1)
                follow = torch.maximum(follow, motion / self.image_tolerance)
            weight = torch.clamp(follow, min=1.0 - self.strength, max=1.0)
            out = self.prev_mask + weight * diff
        self.prev_mask = out
        self.prev_frame = frame
        return out


# ---------------------------------------------------------------------------------------------
# stream wrappers
# ---------------------------------------------------------------------------------------------
def _map_mask(stream: FrameStream, name: str, params: dict, fn) -> FrameStream:
    require_mask(stream, name)

    def make():
        def apply(chunk: Chunk) -> Chunk:
            return chunk.with_(mask=fn(chunk.frames, chunk.mask.float()))

        return apply

    return stream.map(name, params, make, frames_unchanged=True)


def smooth_stream(stream: FrameStream, strength: float = 0.6, tolerance: float = 0.3,
                  image_tolerance: float = 0.08, reset_at_cuts: bool = True) -> FrameStream:
    require_mask(stream, "Mask temporal smoothing")
    TemporalSmoother(strength, tolerance, image_tolerance)  # validate now, not at pull time
    params = {"strength": strength, "tolerance": tolerance, "image_tolerance": image_tolerance,
              "reset_at_cuts": reset_at_cuts}

    def producer(up: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        sm = TemporalSmoother(strength, tolerance, image_tolerance)
        cuts = set(scenes.scene_cuts(up)) if reset_at_cuts else set()
        for chunk in up.chunks(chunk_size):
            out = torch.empty_like(chunk.mask, dtype=torch.float32)
            for i in range(len(chunk)):
                if chunk.start + i in cuts:
                    sm.reset()
                out[i] = sm.step(chunk.frames[i], chunk.mask[i].float())
            yield chunk.with_(mask=out)

    # recurrent: the previous value weighs at most ``strength`` per frame, so a range render's
    # warm-up of enough frames to bring strength**n under 1e-6 reproduces the full render
    import math

    warm = int(math.ceil(math.log(1e-6) / math.log(max(strength, 1e-3)))) + 1 if strength > 0 else 1
    t = Temporal(behind=min(warm, 600), recurrent=True, cut_aware=reset_at_cuts)
    return stream.derive("mask_smooth", params, producer, frames_unchanged=True, temporal=t)


def grow_stream(stream: FrameStream, pixels: int) -> FrameStream:
    return _map_mask(stream, "mask_grow", {"pixels": int(pixels)}, lambda f, m: grow(m, int(pixels)))


def feather_stream(stream: FrameStream, radius: float) -> FrameStream:
    return _map_mask(stream, "mask_feather", {"radius": float(radius)}, lambda f, m: feather(m, float(radius)))


def threshold_stream(stream: FrameStream, low: float = 0.5, high: float = 0.0) -> FrameStream:
    hi = high if high > low else None
    return _map_mask(stream, "mask_threshold", {"low": low, "high": high}, lambda f, m: threshold(m, low, hi))


def invert_stream(stream: FrameStream) -> FrameStream:
    return _map_mask(stream, "mask_invert", {}, lambda f, m: 1.0 - m)


def refine_stream(stream: FrameStream, radius: int = 8, eps: float = 1e-3) -> FrameStream:
    return _map_mask(stream, "mask_refine", {"radius": int(radius), "eps": float(eps)},
                     lambda f, m: guided_refine(f, m, int(radius), float(eps)))


def combine_streams(a: FrameStream, b: FrameStream, mode: str = "union") -> FrameStream:
    """Frames of ``a`` with ``combine(mask_a, mask_b)``; ``b`` must have the same length and size
    (its frames are ignored)."""
    require_mask(a, "Combine masks (first input)")
    require_mask(b, "Combine masks (second input)")
    combine(torch.zeros(1), torch.zeros(1), mode)  # validate the mode now
    ia, ib = a.info, b.info
    if (ia.width, ia.height) != (ib.width, ib.height):
        raise ValueError(f"Combine masks: sizes differ ({ia.width}x{ia.height} vs {ib.width}x{ib.height}); resize one stream")
    if ia.frame_count != ib.frame_count:
        raise ValueError(f"Combine masks: frame counts differ ({ia.frame_count} vs {ib.frame_count}); trim one stream")

    def producer(up: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        other = rebatch(b.chunks(chunk_size), chunk_size)
        for chunk, ob in zip(rebatch(up.chunks(chunk_size), chunk_size), other):
            yield chunk.with_(mask=combine(chunk.mask.float(), ob.mask.float(), mode))

    return a.derive("mask_combine", {"mode": mode, "other": b.fingerprint}, producer)
