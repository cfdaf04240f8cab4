"""The tiled runner: one super-resolution model on one device, frames cut into overlapping tiles
blended without seams, batch and tile size taken from free memory and halved after an
out-of-memory error."""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ... import host
from .precision import autotune_cpu, pick_precision

log = logging.getLogger("remaster.upscale")


# ---------------------------------------------------------------------------------------------
# tiling
# ---------------------------------------------------------------------------------------------
def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``min(tile, length)`` covering ``length`` with at least
    ``overlap`` shared pixels between neighbours, spread evenly."""
    if length <= tile:
        return [0]
    overlap = min(overlap, tile // 2)
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(n_out: int, before: int, after: int, margin_frac: float = 0.25) -> torch.Tensor:
    """1-D blend weights for one tile of ``n_out`` output pixels that shares ``before``/``after``
    output pixels with its neighbours. The outer quarter of an overlap gets weight 0 (the model
    saw padding there), the middle half cross-fades linearly; neighbours' weights sum to 1."""
    w = torch.ones(n_out)
    pos = torch.arange(n_out, dtype=torch.float32) + 0.5
    if before > 0:
        m = before * margin_frac
        w = torch.minimum(w, ((pos - m) / max(before - 2 * m, 1e-6)).clamp(0, 1))
    if after > 0:
        m = after * margin_frac
        rpos = n_out - pos
        w = torch.minimum(w, ((rpos - m) / max(after - 2 * m, 1e-6)).clamp(0, 1))
    return w


def upscale_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
) -> torch.Tensor:
    """Run ``fn`` (``[n,3,h,w] -> [n,3,h*scale,w*scale]``) over ``x`` in overlapping tiles and
    blend them. ``x`` is on the compute device in the compute dtype; the result is float32 there."""
    n, c, H, W = x.shape
    ys, xs = tile_starts(H, tile, overlap), tile_starts(W, tile, overlap)
    th, tw = min(tile, H), min(tile, W)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x).float()
    out = torch.zeros(n, c, H * scale, W * scale, device=x.device, dtype=torch.float32)

    def weights(starts: list[int], size: int, i: int) -> torch.Tensor:
        before = starts[i - 1] + size - starts[i] if i > 0 else 0
        after = starts[i] + size - starts[i + 1] if i + 1 < len(starts) else 0
        return _ramp(size * scale, before * scale, after * scale)

    for iy, y0 in enumerate(ys):
        wy = weights(ys, th, iy)
        for ix, x0 in enumerate(xs):
            wx = weights(xs, tw, ix)
            w2 = (wy[:, None] * wx[None, :]).to(x.device)
            y = fn(x[:, :, y0 : y0 + th, x0 : x0 + tw]).float()
            out[:, :, y0 * scale : (y0 + th) * scale, x0 * scale : (x0 + tw) * scale].add_(y * w2)
            host.check_interrupt()
    return out


def resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[n,c,h,w]`` float to ``height x width``: antialiased bicubic (a proper low-pass when
    shrinking), clamped to 0..1; untouched when the size already matches."""
    if frames.shape[-2:] == (height, width):
        return frames
    return F.interpolate(frames, size=(height, width), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)


# ---------------------------------------------------------------------------------------------
# the runner: one model on one device, batch and tile size adapted to memory
# ---------------------------------------------------------------------------------------------
def _feat(desc) -> int:
    m = desc.model
    for attr in ("num_feat", "nf", "num_out_ch"):
        v = getattr(m, attr, None)
        if isinstance(v, int) and v > 3:
            return v
    return 64


@dataclass
class Plan:
    tile: int
    batch: int


class Upscaler:
    """One SR model ready on a device; ``__call__`` upscales ``[n,H,W,3]`` float32 CPU frames to
    the model's native scale (``[n,H*s,W*s,3]``, float32, CPU)."""

    MIN_TILE = 32

    def __init__(self, desc, device: Optional[torch.device] = None, precision: str = "auto",
                 tile: int = 0, overlap: int = 24, max_batch: int = 8) -> None:
        self.device = device or host.torch_device()
        self.dtype, self.channels_last = pick_precision(self.device, precision, desc)
        self.autotune = (precision == "auto" and self.device.type == "cpu"
                         and os.environ.get("REMASTER_UPSCALE_AUTOTUNE", "1") != "0")
        self.tuned_tile = 0
        self.desc = desc
        self.scale = int(desc.scale)
        self.tile_request = int(tile)
        self.overlap = int(overlap)
        self.max_batch = max(1, int(max_batch))
        self._plan: Optional[Plan] = None
        self._ready = False

    def _prepare(self) -> None:
        if self._ready:
            return
        desc = self.desc
        if self.autotune:
            self.dtype, self.channels_last, self.tuned_tile = autotune_cpu(desc, self.overlap)
            self._plan = None
        host.make_room(self.device, sum(p.numel() * 2 for p in desc.model.parameters()))
        desc.to(self.device)
        desc.model.to(dtype=self.dtype)
        if self.channels_last:
            desc.model.to(memory_format=torch.channels_last)
        desc.model.eval()
        self._ready = True

    def bytes_per_pixel(self) -> int:
        """Rough peak bytes per input pixel of one frame in a forward pass (activations of the
        widest layers at input and output resolution, plus the float32 accumulator)."""
        elem = torch.finfo(self.dtype).bits // 8
        f = _feat(self.desc)
        act = f * max(8, 3 * self.scale * self.scale) * elem
        return act + 2 * 3 * self.scale * self.scale * 4

    def plan(self, n: int, H: int, W: int) -> Plan:
        if self._plan is not None:
            return Plan(min(self._plan.tile, max(H, W)), min(self._plan.batch, n))
        if self.device.type == "cuda":
            budget = int(host.free_memory(self.device) * 0.6)
        else:  # CPU: memory is rarely short, but a huge working set thrashes the caches
            budget = min(int(host.free_memory(self.device) * 0.25), 2 * 2**30)
        bpp = self.bytes_per_pixel()
        if self.tile_request > 0:
            tile = self.tile_request
        else:
            side = int(math.sqrt(max(1, budget // bpp)))
            # CPU: tiles whose activations stay cache-sized win despite more overlap (measured on
            # an AVX-512-BF16 EPYC: 192 px tiles took 25% less CPU time than 512 px on 640x360)
            cap = 2048 if self.device.type == "cuda" else (self.tuned_tile or 192)
            tile = max(self.MIN_TILE, min(side, cap))
        tile = min(tile, max(H, W))
        th, tw = min(tile, H), min(tile, W)
        # CPU: at most two frames a forward, so progress and interrupt come every few seconds
        max_batch = self.max_batch if self.device.type == "cuda" else min(self.max_batch, 2)
        batch = max(1, min(n, max_batch, budget // max(1, bpp * th * tw)))
        return Plan(tile, batch)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.desc(x)

    def __call__(self, frames: torch.Tensor, size: Optional[tuple[int, int]] = None,
                 on_batch: Optional[Callable[[int], None]] = None) -> torch.Tensor:
        """``frames`` ``[n,H,W,3]``; ``size`` (H, W) resizes the model output (on the device).
        ``on_batch(k)`` is called after each forward batch of ``k`` frames (progress, interrupt)."""
        n, H, W, _ = frames.shape
        oh, ow = size if size is not None else (H * self.scale, W * self.scale)
        # allocated outside inference mode so that later stages may modify the frames in place
        result = torch.empty(n, oh, ow, 3, dtype=torch.float32)
        with torch.inference_mode():
            self._run(frames, size, result, on_batch)
        return result

    def _run(self, frames: torch.Tensor, size: Optional[tuple[int, int]], result: torch.Tensor,
             on_batch: Optional[Callable[[int], None]] = None) -> None:
        self._prepare()
        n, H, W, _ = frames.shape
        i = 0
        plan = self.plan(n, H, W)
        while i < n:
            b = min(plan.batch, n - i)
            x = frames[i : i + b].to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self.dtype)
            try:
                y = upscale_tiled(self._forward, x, self.scale, plan.tile, self.overlap)
            except Exception as exc:
                if not host.is_oom(exc):
                    raise
                del x
                host.empty_cache()
                if plan.batch > 1:
                    plan = Plan(plan.tile, plan.batch // 2)
                elif plan.tile // 2 >= self.MIN_TILE:
                    plan = Plan(plan.tile // 2, 1)
                else:
                    raise
                log.warning("upscale: out of memory, retrying with tile %d, batch %d", plan.tile, plan.batch)
                self._plan = plan
                continue
            if size is not None:
                y = resize(y, *size)
            result[i : i + b].copy_(y.clamp_(0, 1).permute(0, 2, 3, 1))
            i += b
            if on_batch is not None:
                on_batch(b)
