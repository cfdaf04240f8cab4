"""Deflicker: steady brightness and colour over time, for any upstream result.

An analysis pass measures each frame's mean linear-light red, green and blue (on a thumbnail).
They are smoothed over time inside each shot with a short running median (throws out
single-frame spikes) and a Gaussian-weighted local linear fit (keeps ramps such as fades and slow
light changes intact, also at the ends of a shot). Each frame is then multiplied, in linear light,
by the gain that brings its measured means onto the smoothed ones. Only whole-frame gains are
applied, never a blend of neighbouring frames, so motion cannot smear. Shots are handled
separately (scene cuts attached to the stream, or found once per chain). One pass over the
upstream: see :func:`remaster.stages.shotstats.shot_smoothed`.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import host
from ..stream import Chunk, FrameStream
from . import shotstats
from .lut import linear_to_srgb, srgb_to_linear

MODES = ("brightness_and_colour", "brightness")
LUMA = np.array([0.2126, 0.7152, 0.0722])


class DeflickerError(ValueError):
    pass


def measure(chunk: Chunk) -> np.ndarray:
    th = shotstats.thumbnails(chunk.frames, max_side=128)
    return srgb_to_linear(th.float()).mean((1, 2)).double().numpy()


def gains(means: np.ndarray, cuts: list[int], fps: float, window_seconds: float = 0.5,
          mode: str = "brightness_and_colour", strength: float = 1.0, max_gain: float = 2.0) -> np.ndarray:
    """Per-frame linear-light gains ``[N, 3]`` from per-frame mean linear RGB ``[N, 3]``."""
    m = np.maximum(means @ LUMA, 1e-5)[:, None] if mode == "brightness" else np.maximum(means, 1e-5)
    target = np.maximum(shotstats.smooth_per_shot(m, cuts, window_seconds * fps, median_radius=2), 1e-5)
    g = np.log(target / m)
    if g.shape[1] == 1:
        g = np.repeat(g, 3, axis=1)
    lim = np.log(max_gain)
    return np.exp(np.clip(g * strength, -lim, lim))


def apply_gains(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return linear_to_srgb(srgb_to_linear(x) * g[:, None, None, :]).clamp(0.0, 1.0)


def deflicker(stream: FrameStream, window_seconds: float = 0.5, mode: str = "brightness_and_colour",
              strength: float = 1.0, max_gain: float = 2.0) -> FrameStream:
    """A new stream with frame-to-frame brightness/colour flicker removed (one pass upstream)."""
    if mode not in MODES:
        raise DeflickerError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if not 0.04 <= window_seconds <= 10:
        raise DeflickerError(f"window_seconds must be within 0.04..10, got {window_seconds}")
    if not 0 <= strength <= 1:
        raise DeflickerError(f"strength must be within 0..1, got {strength}")
    if not 1 < max_gain <= 8:
        raise DeflickerError(f"max_gain must be within 1..8 (exclusive of 1), got {max_gain}")

    fps = float(stream.info.fps)
    device = host.torch_device()

    def plan(stats: np.ndarray, cuts: list) -> np.ndarray:
        return gains(stats, cuts, fps, window_seconds, mode, strength, max_gain)

    def apply(chunk: Chunk, rows: np.ndarray) -> Chunk:
        x = chunk.frames.to(device, torch.float32)
        g = torch.from_numpy(np.ascontiguousarray(rows)).float().to(device)
        return chunk.with_(frames=apply_gains(x, g).cpu())

    params = dict(window_seconds=float(window_seconds), mode=mode, strength=float(strength), max_gain=float(max_gain))
    radius = shotstats.smoothing_radius(window_seconds * fps, median_radius=2)
    return shotstats.shot_smoothed(stream, "deflicker", params, measure, plan, apply, radius, label="Deflicker")
