"""How much an edit jumps in time: the frame-to-frame change of an edited video inside its mask,
net of the change the source itself has there (measured while the edit renders, and again when a
comparison is packaged)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


class JumpMeter:
    """Does the edited video change inside the mask more than the source does?

    Per frame ``t`` (not the first of a shot): ``excess = d(out_t, out_t-1) - d(src_t, src_t-1)``,
    ``d`` = mean absolute difference inside the union of both frames' masks, on a copy downscaled
    to ``side``. A group's score is the largest excess over its frames (its first frame measures
    the jump at its start). ``plan`` gives ``cuts``, ``frame_count`` and ``groups`` (frame
    ranges), as an inpainting :class:`~remaster.stages.inpaint.KeyframePlan` does.
    """

    def __init__(self, plan, side: int = 256) -> None:
        self.plan, self.side = plan, side
        self.cuts = set(plan.cuts)
        self.prev = None
        self.excess = [0.0] * plan.frame_count

    def _small(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[:2]
        s = min(1.0, self.side / max(H, W))
        size = (max(1, round(H * s)), max(1, round(W * s)))
        y = x.permute(2, 0, 1)[None] if x.ndim == 3 else x[None, None]
        return F.interpolate(y.float(), size=size, mode="area")[0]

    def add(self, index: int, src: torch.Tensor, out: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
        s, o = self._small(src), self._small(out)
        m = self._small(mask)[0] > 0.05 if mask is not None else torch.ones(s.shape[1:], dtype=torch.bool)
        if self.prev is not None and index not in self.cuts and self.prev[0] == index - 1:
            _, ps, po, pm = self.prev
            region = m | pm
            if region.any():
                ds = float((s - ps).abs().mean(0)[region].mean())
                do = float((o - po).abs().mean(0)[region].mean())
                self.excess[index] = max(0.0, do - ds)
        self.prev = (index, s, o, m)

    def group_scores(self) -> list:
        return [max(self.excess[a:b]) if b > a else 0.0 for a, b in self.plan.groups]
