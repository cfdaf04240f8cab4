"""Per-frame statistics measured in one analysis pass, then smoothed over time within each shot.

Stages that must not flicker (automatic colour, deflicker) work in two passes over their
upstream: :func:`measure_pass` iterates the stream once, keeps a small vector of numbers per frame
(never frames) and finds the scene cuts from the same decoded chunks; :func:`smooth_per_shot`
then smooths those numbers over time without crossing a cut. The second pass applies the
correction chunk by chunk.

Smoothing is a Gaussian-weighted local *linear* fit rather than a plain Gaussian blur: a steady
shot gets the blur's calm, while a straight ramp (a fade, a slow pan into light) passes through
unchanged, also at the ends of a shot.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import host
from ..stream import Chunk, FrameStream
from . import scenes


def thumbnails(frames: torch.Tensor, max_side: int = 192) -> torch.Tensor:
    """Area-downscaled copies ``[n, h, w, 3]`` (measuring on these is cheap and noise-free)."""
    n, h, w, _ = frames.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return frames.float()
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = F.interpolate(frames.float().permute(0, 3, 1, 2), size=size, mode="area")
    return x.permute(0, 2, 3, 1)


def mask_thumbnails(mask: torch.Tensor, size: tuple) -> torch.Tensor:
    return F.interpolate(mask.float().unsqueeze(1), size=size, mode="area").squeeze(1)


def measure_pass(stream: FrameStream, chunk_size: int,
                 measure: Callable[[Chunk], np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """One pass: ``measure(chunk) -> [n, K]`` for every chunk, plus the stream's scene cuts
    (attached ones, or detected from the same chunks)."""
    rows: list = []
    need_cuts = stream.info.scene_cuts is None

    def tap() -> Iterator[Chunk]:
        for chunk in stream.chunks(chunk_size):
            host.check_interrupt()
            rows.append(np.asarray(measure(chunk), dtype=np.float64))
            yield chunk

    if need_cuts:
        cuts = scenes.cuts_from_scores(scenes.frame_scores(tap()))
    else:
        for _ in tap():
            pass
        cuts = [int(c) for c in stream.info.scene_cuts]
    stats = np.concatenate(rows, 0) if rows else np.zeros((0, 0))
    return stats, cuts


def shot_ranges(cuts: list[int], n: int) -> list[tuple[int, int]]:
    edges = [0] + sorted(c for c in set(cuts) if 0 < c < n) + [n]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _local_linear(y: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted local linear regression of ``y`` ``[T, K]`` along time."""
    t = y.shape[0]
    if t < 3 or sigma <= 0:
        return y.copy()
    r = int(min(t - 1, max(1, round(3 * sigma))))
    d = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (d / sigma) ** 2)
    ones = np.ones(t)

    def corr(v: np.ndarray, kern: np.ndarray) -> np.ndarray:
        # sum_j v[j] * kern[j - i] over the shot only (zero outside)
        return np.correlate(np.pad(v, r), kern, mode="valid")

    s0, s1, s2 = corr(ones, k), corr(ones, k * d), corr(ones, k * d * d)
    den = s0 * s2 - s1 * s1
    out = np.empty_like(y)
    for j in range(y.shape[1]):
        t0, t1 = corr(y[:, j], k), corr(y[:, j], k * d)
        mean = t0 / s0
        lin = (s2 * t0 - s1 * t1) / np.where(np.abs(den) > 1e-12, den, 1.0)
        out[:, j] = np.where(np.abs(den) > 1e-9 * s0 * s0, lin, mean)
    return out


def _running_median(y: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0 or y.shape[0] < 3:
        return y.copy()
    t = y.shape[0]
    out = np.empty_like(y)
    for i in range(t):
        a, b = max(0, i - radius), min(t, i + radius + 1)
        out[i] = np.median(y[a:b], axis=0)
    return out


def smooth_per_shot(values: np.ndarray, cuts: list[int], sigma_frames: float, median_radius: int = 0,
                    constant: bool = False) -> np.ndarray:
    """Smooth ``values`` ``[N, K]`` over time inside each shot; ``constant`` gives every frame of
    a shot the shot's median."""
    out = np.empty_like(values)
    for a, b in shot_ranges(cuts, values.shape[0]):
        seg = values[a:b]
        if constant:
            out[a:b] = np.median(seg, axis=0, keepdims=True)
            continue
        seg = _running_median(seg, median_radius)
        out[a:b] = _local_linear(seg, sigma_frames)
    return out


def per_frame(values: np.ndarray, chunk: Chunk, device: Optional[torch.device] = None) -> torch.Tensor:
    """Rows of ``values`` for the frames of ``chunk`` as a float32 tensor."""
    t = torch.from_numpy(np.ascontiguousarray(values[chunk.start:chunk.stop])).float()
    return t if device is None else t.to(device)
