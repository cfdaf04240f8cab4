"""Scene-cut detection usable by any stage: shot boundaries as frame indices.

The detector compares each frame with the previous one on a small thumbnail (colour histogram
distance plus mean absolute difference). A cut is declared where the score is both above an
absolute threshold and well above the recent typical score, so fast motion inside a shot does
not count as a cut. Results are memoised by the stream fingerprint, so several stages asking for
the cuts of the same stream cost one pass.
"""
from __future__ import annotations

from collections import deque
from typing import Iterable, Optional

import torch
import torch.nn.functional as F

from ..stream import FrameStream

_cache: dict = {}


def _thumb(frames: torch.Tensor, size=(36, 64)) -> torch.Tensor:
    x = frames.permute(0, 3, 1, 2)
    return F.interpolate(x, size=size, mode="area")


def _hist(thumbs: torch.Tensor, bins: int = 8) -> torch.Tensor:
    q = (thumbs.clamp(0, 1) * (bins - 1)).round().long()
    idx = q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2]
    h = torch.zeros(thumbs.shape[0], bins**3)
    h.scatter_add_(1, idx.flatten(1), torch.ones_like(idx.flatten(1), dtype=torch.float32))
    return h / h.sum(1, keepdim=True)


def frame_scores(chunks: Iterable) -> list[float]:
    """Per-frame change score against the previous frame (0 for frame 0)."""
    scores: list[float] = []
    prev_t = prev_h = None
    for chunk in chunks:
        t = _thumb(chunk.frames.float())
        h = _hist(t)
        for i in range(t.shape[0]):
            if prev_t is None:
                scores.append(0.0)
            else:
                mad = float((t[i] - prev_t).abs().mean())
                hd = 0.5 * float((h[i] - prev_h).abs().sum())
                scores.append(0.5 * hd + mad)
            prev_t, prev_h = t[i], h[i]
    return scores


def cuts_from_scores(scores: list[float], threshold: float = 0.25, ratio: float = 3.0, min_shot: int = 8,
                     window: int = 24) -> list[int]:
    cuts: list[int] = []
    recent: deque = deque(maxlen=window)
    last = 0
    for i, s in enumerate(scores):
        if i > 0:
            typical = sorted(recent)[len(recent) // 2] if recent else 0.0
            if s > threshold and s > ratio * typical and i - last >= min_shot:
                cuts.append(i)
                last = i
                recent.clear()
                continue
        recent.append(s)
    return cuts


def detect_scene_cuts(stream: FrameStream, threshold: float = 0.25, min_shot: int = 8) -> list[int]:
    """Frame indices where a new shot starts (never 0). Memoised per stream fingerprint."""
    key = (stream.fingerprint, round(threshold, 4), min_shot)
    if key not in _cache:
        _cache[key] = cuts_from_scores(frame_scores(stream.chunks()), threshold=threshold, min_shot=min_shot)
    return list(_cache[key])


def scene_cuts(stream: FrameStream, detect: bool = True) -> list[int]:
    """The stream's scene cuts: those attached by a Scene Cuts node, else detected (if ``detect``)."""
    if stream.info.scene_cuts is not None:
        return list(stream.info.scene_cuts)
    return detect_scene_cuts(stream) if detect else []


def shot_id(cuts: list[int], index: int) -> int:
    """Which shot (0-based) frame ``index`` belongs to."""
    import bisect

    return bisect.bisect_right(cuts, index)


def with_cuts(stream: FrameStream, cuts: Optional[list[int]] = None, threshold: float = 0.25,
              min_shot: int = 8) -> FrameStream:
    """The same stream with its scene cuts attached to the metadata (detected when not given)."""
    if cuts is None:
        cuts = detect_scene_cuts(stream, threshold, min_shot)
    return stream.with_info(scene_cuts=tuple(int(c) for c in cuts))
