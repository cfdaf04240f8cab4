"""Training pairs for the restorer: short clean/damaged sequences with flow on the damaged side.

A *degradation* is any callable ``degrade(frames, frame_index, seed) -> damaged`` taking
``[n,H,W,3]`` float 0..1 frames whose first is number ``frame_index`` of its clip, returning the
damaged frames of the same shape; the same (index, seed) always gives the same damage. Built in:

* ``simple``: a blur, grain-like noise, a slight per-frame brightness flicker and JPEG
  compression (per-clip strengths drawn from the seed).
* ``film:<preset>`` (e.g. ``film:16mm``, ``film:vhs``): the pack's physical film/tape damage
  simulator, when it is installed (``remaster.stages.film_damage``).

Pairs also come from the user: a damaged video and its clean counterpart with the same frame
count (the scale is the size ratio).

A *sample* is ``T`` consecutive frames cropped at one place: the damaged input ``[T,3,h,w]``, the
clean target ``[T,3,h*s,w*s]``, and per frame the flow to the previous input frame with its
confidence, computed on the damaged frames (what inference sees), plus the same on the clean
target for the temporal loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..analysis import flow as flowlib
from ..analysis.flow import motion_confidence

Degradation = Callable[[torch.Tensor, int, int], torch.Tensor]


def simple_degradation(frames: torch.Tensor, frame_index: int, seed: int) -> torch.Tensor:
    """Blur + noise + per-frame brightness flicker + JPEG (see the module docstring)."""
    clip = np.random.default_rng([seed, 7])
    sigma = clip.uniform(0.4, 1.2)
    noise = clip.uniform(0.015, 0.04)
    quality = int(clip.integers(30, 60))
    out = []
    for k in range(frames.shape[0]):
        g = np.random.default_rng([seed, frame_index + k, 11])
        x = frames[k].numpy().astype(np.float32)
        x = cv2.GaussianBlur(x, (0, 0), sigma)
        x = x * (1.0 + g.normal(0, 0.02)) + g.normal(0, noise, x.shape[:2])[..., None].astype(np.float32)
        u8 = np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(u8[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        x = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        out.append(torch.from_numpy(np.ascontiguousarray(x)).float().div_(255))
    return torch.stack(out)


def film_degradation(preset: str = "16mm", severity: float = 1.0) -> Degradation:
    """The film damage simulator as a degradation (``ImportError`` if it is not installed)."""
    from dataclasses import replace

    from ..stages import film_damage as fd

    base = fd.DamageSettings(preset=preset, severity=float(severity))
    base.validate()

    def degrade(frames: torch.Tensor, frame_index: int, seed: int) -> torch.Tensor:
        st = replace(base, seed=int(seed))
        return torch.stack([torch.from_numpy(fd.damage_frame(frames[k].numpy(), frame_index + k, st)[0])
                            for k in range(frames.shape[0])])

    return degrade


def degradation(name: str) -> Degradation:
    """``simple`` or ``film:<preset>`` (see the module docstring)."""
    if name == "simple":
        return simple_degradation
    if name.startswith("film"):
        preset = name.split(":", 1)[1] if ":" in name else "16mm"
        try:
            return film_degradation(preset)
        except ImportError as exc:
            raise ValueError(f"degradation '{name}' needs the film damage simulator, which is not installed; "
                             "use 'simple' or provide damaged/clean pairs") from exc
    raise ValueError(f"unknown degradation '{name}'; use 'simple' or 'film:<preset>' (e.g. film:16mm)")


def _flows(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame: flow to the previous frame ``[T,h,w,2]`` and confidence ``[T,1,h,w]`` (0 for frame 0)."""
    T, h, w, _ = frames.shape
    fl = torch.zeros(T, h, w, 2)
    cf = torch.zeros(T, 1, h, w)
    prev = None
    for t in range(T):
        g = flowlib.to_gray_u8(frames[t])
        if prev is not None:
            f, c = motion_confidence(g, prev, "dis_medium")
            fl[t], cf[t, 0] = torch.from_numpy(f), torch.from_numpy(c)
        prev = g
    return fl, cf


@dataclass
class Sample:
    inp: torch.Tensor  # [T,3,h,w] damaged
    target: torch.Tensor  # [T,3,H,W] clean
    flow: torch.Tensor  # [T,h,w,2] input frame t -> t-1
    conf: torch.Tensor  # [T,1,h,w]
    tflow: torch.Tensor  # [T,H,W,2] same on the target
    tconf: torch.Tensor  # [T,1,H,W]


def downscale(frames: torch.Tensor, scale: int) -> torch.Tensor:
    """``[n,H,W,3]`` shrunk by ``scale`` with an area filter."""
    if scale == 1:
        return frames
    x = F.interpolate(frames.permute(0, 3, 1, 2), scale_factor=1.0 / scale, mode="area")
    return x.permute(0, 2, 3, 1).contiguous()


def make_sample(clean: torch.Tensor, damaged: torch.Tensor) -> Sample:
    """``clean`` ``[T,H,W,3]``, ``damaged`` ``[T,h,w,3]`` (already cropped and aligned)."""
    fl, cf = _flows(damaged)
    tfl, tcf = _flows(clean)
    return Sample(damaged.permute(0, 3, 1, 2).contiguous(), clean.permute(0, 3, 1, 2).contiguous(), fl, cf, tfl, tcf)


def sample_from_clip(frames: torch.Tensor, scale: int, degrade: Degradation, count: int, seq_len: int = 3,
                     patch: int = 64, seed: int = 0, first_index: int = 0) -> list[Sample]:
    """``count`` samples from clean ``frames`` ``[N,H,W,3]``: random start and place, damaged by
    ``degrade`` (after shrinking by ``scale``); ``patch`` is the input crop size."""
    n, H, W, _ = frames.shape
    rng = np.random.default_rng(seed)
    hp = patch * scale
    if n < seq_len or H < hp or W < hp:
        raise ValueError(f"clip too small for training samples: need {seq_len} frames of at least {hp}x{hp} pixels, "
                         f"got {n} of {W}x{H}; lower patch or use a bigger clip")
    out = []
    for _ in range(count):
        t0 = int(rng.integers(0, n - seq_len + 1))
        y = int(rng.integers(0, (H - hp) // scale + 1)) * scale
        x = int(rng.integers(0, (W - hp) // scale + 1)) * scale
        clean = frames[t0 : t0 + seq_len, y : y + hp, x : x + hp].contiguous()
        damaged = degrade(downscale(clean, scale), first_index + t0, seed).clamp(0, 1)
        out.append(make_sample(clean, damaged))
    return out


def sample_from_pairs(damaged: torch.Tensor, clean: torch.Tensor, count: int, seq_len: int = 3, patch: int = 64,
                      seed: int = 0) -> list[Sample]:
    """Samples from a user pair: ``damaged`` ``[N,h,w,3]`` and ``clean`` ``[N,h*s,w*s,3]``."""
    if damaged.shape[0] != clean.shape[0]:
        raise ValueError(f"the damaged clip has {damaged.shape[0]} frames and the clean one {clean.shape[0]}: "
                         "pairs must have the same frame count")
    s = clean.shape[1] / damaged.shape[1]
    scale = int(round(s))
    if scale not in (1, 2, 4) or abs(clean.shape[2] / damaged.shape[2] - s) > 0.02 or abs(s - scale) > 0.02:
        raise ValueError(f"clean {clean.shape[2]}x{clean.shape[1]} must be 1, 2 or 4 times damaged "
                         f"{damaged.shape[2]}x{damaged.shape[1]}")
    n, h, w, _ = damaged.shape
    if n < seq_len or h < patch or w < patch:
        raise ValueError(f"pairs too small: need {seq_len} frames of at least {patch}x{patch}; lower patch")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        t0 = int(rng.integers(0, n - seq_len + 1))
        y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
        d = damaged[t0 : t0 + seq_len, y : y + patch, x : x + patch].contiguous()
        c = clean[t0 : t0 + seq_len, y * scale : (y + patch) * scale, x * scale : (x + patch) * scale].contiguous()
        out.append(make_sample(c, d))
    return out


def collate(samples: list[Sample]) -> Sample:
    return Sample(*(torch.stack([getattr(s, f) for s in samples]) for f in Sample.__dataclass_fields__))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
