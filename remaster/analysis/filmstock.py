"""Film stock facts shared by the damage simulator and the restoration stages: silver grain whose
strength follows brightness, and how each colour stock's dyes fade (cyan layer first)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .colourspace import LUMA_709 as LUMA


STOCKS = {
    "none": dict(keep=(1.0, 1.0, 1.0), fog=(0.0, 0.0, 0.0), chroma=1.0),
    "eastmancolor": dict(keep=(0.55, 0.92, 0.68), fog=(0.02, 0.03, 0.05), chroma=0.8),  # magenta/pink
    "ektachrome": dict(keep=(0.72, 0.85, 0.55), fog=(0.0, 0.02, 0.08), chroma=0.8),  # red-magenta
    "agfacolor": dict(keep=(0.62, 0.70, 0.92), fog=(0.03, 0.02, 0.0), chroma=0.75),  # yellow-brown
    "kodachrome": dict(keep=(0.93, 0.95, 0.88), fog=(0.0, 0.0, 0.02), chroma=0.95),  # very stable
}


def grain(frames: torch.Tensor, first_index: int, amount: float, size: float = 1.5, colour: float = 0.0,
          seed: int = 0) -> torch.Tensor:
    """Add grain to ``frames`` ``[n, H, W, 3]`` whose first frame is number ``first_index``."""
    if amount <= 0:
        return frames
    n, h, w, _ = frames.shape
    gh, gw = max(1, round(h / max(size, 0.5))), max(1, round(w / max(size, 0.5)))
    out = []
    lw = torch.tensor(LUMA, device=frames.device, dtype=frames.dtype)
    for i in range(n):
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + first_index + i) & 0x7FFFFFFFFFFF)
        noise = torch.randn(4, gh, gw, generator=g)  # one mono plane + three colour planes
        if (gh, gw) != (h, w):
            noise = F.interpolate(noise.unsqueeze(0), size=(h, w), mode="bicubic", align_corners=False)[0]
        noise = noise / noise.flatten(1).std(1).clamp(min=1e-6)[:, None, None]  # unit strength at any size
        noise = noise.to(frames.device, frames.dtype)
        mono, chroma = noise[0], noise[1:].permute(1, 2, 0)
        n3 = mono.unsqueeze(-1) * (1.0 - colour) + chroma * colour
        x = frames[i]
        y = (x * lw).sum(-1, keepdim=True)
        # strongest in the mid-tones, falling off toward black and white
        response = 0.15 + 0.85 * (4.0 * y * (1.0 - y)).clamp(0, 1).sqrt()
        out.append(x + n3 * response * amount)
    return torch.stack(out).clamp(0.0, 1.0)
