"""Per-channel 1D curves: a ``[M, 3]`` table applied by linear interpolation (LUT shapers, the
auto colour stage's tone curves), and the highlight shoulder that brightening stages share."""
from __future__ import annotations

import torch


def normalise_range(x: torch.Tensor, lo: tuple, hi: tuple) -> torch.Tensor:
    if lo == (0.0, 0.0, 0.0) and hi == (1.0, 1.0, 1.0):
        return x.clamp(0.0, 1.0)
    lo_t = torch.tensor(lo, dtype=x.dtype, device=x.device)
    hi_t = torch.tensor(hi, dtype=x.dtype, device=x.device)
    return ((x - lo_t) / (hi_t - lo_t)).clamp(0.0, 1.0)


def apply_1d(x: torch.Tensor, table: torch.Tensor, lo=(0.0,) * 3, hi=(1.0,) * 3, block: int = 262144) -> torch.Tensor:
    """Per-channel linear interpolation in a ``[M, 3]`` table. ``x`` is ``[..., 3]``."""
    shape = x.shape
    flat = x.reshape(-1, 3)
    t = table.to(x.device, x.dtype).t().contiguous()
    if x.device.type != "cpu":
        block = max(block, 1 << 24)
    out = torch.empty_like(flat)
    for s in range(0, flat.shape[0], block):
        p = torch.stack(normalise_range(flat[s:s + block], lo, hi).unbind(1), 0)
        res = interp_1d_planar(p, t)
        dst = out[s:s + block]
        for c in range(3):
            dst[:, c].copy_(res[c])
    return out.reshape(shape)


def interp_1d_planar(p: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Planar ``p`` ``[3, P]`` in 0..1 through planar per-channel tables ``[3, M]``."""
    m = table.shape[1]
    s = p * (m - 1)
    i0 = s.floor().clamp_(max=m - 2)
    f = s - i0
    i0 = i0.long()
    a = table.gather(1, i0)
    b = table.gather(1, i0 + 1)
    return a.addcmul_(b - a, f)


def shoulder(top: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Where a brightest channel ``top`` was pushed above ``base`` (< 1), the value it rolls off to
    instead of clipping: ``base`` plus the room left below 1, filled exponentially (slope 1 at
    ``base``, never reaching 1). Multiply all three channels by ``shoulder / top``: no hue shift."""
    room = (1.0 - base).clamp(min=1e-4)
    return base + room * (1.0 - torch.exp((base - top) / room))


def roll_off_pixels(rgb: torch.Tensor, before: torch.Tensor, knee: float = 0.85) -> None:
    """Roll brightened pixels of ``rgb`` ``[..., 3]`` off below white in place: a pixel whose
    brightest channel rose past ``max(knee, its brightest channel before)`` is scaled down to the
    :func:`shoulder` value; the others are untouched (computed only on the pixels it changes)."""
    flat = rgb.view(-1, 3)
    top = flat.amax(-1)
    base = before.reshape(-1).to(top.dtype).clamp(min=knee, max=0.999)
    idx = torch.nonzero(top > base).squeeze(1)
    if idx.numel() == 0:
        return
    t, b = top[idx], base[idx]
    flat[idx] *= (shoulder(t, b) / t.clamp(min=1e-6)).unsqueeze(1)
