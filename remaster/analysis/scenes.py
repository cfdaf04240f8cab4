"""Scene-cut detection usable by any stage: shot boundaries as frame indices.

The detector compares each frame with the previous one on a small thumbnail (colour histogram
distance plus mean absolute difference). A cut is declared where the score is both above an
absolute threshold and well above the recent typical score, so fast motion inside a shot does
not count as a cut.

Cuts are found once per chain, at the cheapest point that gives the same answer: the stream's
``cuts_source``, the nearest upstream stream with the same timeline (usually the decoder's
output; colour, masks, upscaling or restoration do not move a cut). A stage that retimes the
stream (frame-rate conversion) provides its cuts from its input's. The analysis is memoised by
that stream's fingerprint, shows progress and stops on interrupt.
"""
from __future__ import annotations

from collections import deque
from typing import Iterable, Optional

import torch
import torch.nn.functional as F

from .. import host
from ..stream import FrameStream
from ..streamtypes import pieces

_cache: dict = {}
ANALYSIS_CHUNK = 4  # frames per read of the cut analysis (its own pass: any size gives the same cuts)


def _thumb(frames: torch.Tensor, size=(36, 64)) -> torch.Tensor:
    x = frames.permute(0, 3, 1, 2)
    return F.interpolate(x, size=size, mode="area")


def _hist(thumbs: torch.Tensor, bins: int = 8) -> torch.Tensor:
    q = (thumbs.clamp(0, 1) * (bins - 1)).round().long()
    idx = q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2]
    h = torch.zeros(thumbs.shape[0], bins**3)
    h.scatter_add_(1, idx.flatten(1), torch.ones_like(idx.flatten(1), dtype=torch.float32))
    return h / h.sum(1, keepdim=True)


def _pair_score(t, h, prev_t, prev_h) -> float:
    mad = float((t - prev_t).abs().mean())
    hd = 0.5 * float((h - prev_h).abs().sum())
    return 0.5 * hd + mad


def frame_scores(chunks: Iterable) -> list[float]:
    """Per-frame change score against the previous frame (0 for frame 0); checks interrupt
    before each frame."""
    scores: list[float] = []
    prev_t = prev_h = None
    for chunk in chunks:
        for one in pieces(chunk):
            host.check_interrupt()
            t = _thumb(one.frames.float())
            h = _hist(t)
            for i in range(t.shape[0]):
                if prev_t is None:
                    scores.append(0.0)
                else:
                    scores.append(_pair_score(t[i], h[i], prev_t, prev_h))
                prev_t, prev_h = t[i], h[i]
    return scores


class CutDetector:
    """Incremental cut detection for stages that want cuts during their own single pass.

    ``push(frames)`` scores each frame against the previous one (as :func:`frame_scores`) and
    returns the indices of new cuts; ``push_score(s)`` applies the cut rule to one score. The rule
    is the same as :func:`cuts_from_scores` (which uses this class).
    """

    def __init__(self, threshold: float = 0.25, ratio: float = 3.0, min_shot: int = 8, window: int = 24) -> None:
        self.threshold, self.ratio, self.min_shot = threshold, ratio, min_shot
        self.recent: deque = deque(maxlen=window)
        self.index = 0
        self.last = 0
        self.cuts: list[int] = []
        self._prev = None

    def push_score(self, s: float) -> bool:
        i = self.index
        self.index += 1
        if i > 0:
            typical = sorted(self.recent)[len(self.recent) // 2] if self.recent else 0.0
            if s > self.threshold and s > self.ratio * typical and i - self.last >= self.min_shot:
                self.cuts.append(i)
                self.last = i
                self.recent.clear()
                return True
        self.recent.append(s)
        return False

    def push(self, frames: torch.Tensor) -> list[int]:
        """Frames ``[n,H,W,3]`` (any size: a downscaled copy gives nearly the same scores)."""
        t = _thumb(frames.float())
        h = _hist(t)
        new = []
        for i in range(t.shape[0]):
            if self._prev is None:
                s = 0.0
            else:
                s = _pair_score(t[i], h[i], *self._prev)
            self._prev = (t[i], h[i])
            if self.push_score(s):
                new.append(self.index - 1)
        return new


def cuts_from_scores(scores: list[float], threshold: float = 0.25, ratio: float = 3.0, min_shot: int = 8,
                     window: int = 24) -> list[int]:
    det = CutDetector(threshold, ratio, min_shot, window)
    for s in scores:
        det.push_score(s)
    return det.cuts


def detect_scene_cuts(stream: FrameStream, threshold: float = 0.25, min_shot: int = 8) -> list[int]:
    """Frame indices where a new shot starts (never 0). Found once per chain on the stream's
    ``cuts_source`` (see the module docstring), memoised by its fingerprint."""
    stream = getattr(stream, "_stream", stream)  # a range view: its whole stream
    src = getattr(stream, "cuts_source", stream)
    provider = getattr(src, "cut_provider", None)
    if provider is not None:
        return list(provider())
    key = (src.fingerprint, round(threshold, 4), min_shot)
    if key not in _cache:
        _cache[key] = _analyse(src, threshold, min_shot)
    return list(_cache[key])


def is_known(stream: FrameStream, threshold: float = 0.25, min_shot: int = 8) -> bool:
    """True when the cuts of ``stream`` are attached or already found (no pass needed)."""
    stream = getattr(stream, "_stream", stream)
    src = getattr(stream, "cuts_source", stream)
    return (stream.info.scene_cuts is not None or getattr(src, "cut_provider", None) is not None
            or (src.fingerprint, round(threshold, 4), min_shot) in _cache)


def remember(src: FrameStream, cuts: list, threshold: float = 0.25, min_shot: int = 8) -> None:
    """Record cuts that a stage found on ``src`` while reading it anyway (saves the extra pass)."""
    _cache[(src.fingerprint, round(threshold, 4), min_shot)] = [int(c) for c in cuts]


def _analyse(src: FrameStream, threshold: float, min_shot: int) -> list[int]:
    progress = host.Progress(src.info.frame_count, "Scene cuts")
    det = CutDetector(threshold, 3.0, min_shot)
    try:
        for chunk in src.chunks(ANALYSIS_CHUNK):  # small chunks: progress stays fluid
            for one in pieces(chunk):  # interrupt: decoding and conversion check it per frame too
                host.check_interrupt()
                det.push(one.frames)
            progress.update(len(chunk))
    finally:
        progress.close()
    return list(det.cuts)


def scene_cuts(stream: FrameStream, detect: bool = True) -> list[int]:
    """The stream's scene cuts: those attached by a Scene Cuts node, else detected (if ``detect``)."""
    if stream.info.scene_cuts is not None:
        return list(stream.info.scene_cuts)
    return detect_scene_cuts(stream) if detect else []


class LazyCuts:
    """The cuts of a stream, found on first use: a stage asks for them when its pass starts but
    looks at them only after its first upstream chunk, by which time an upstream stage reading the
    decoder anyway may have found them in that same read (no extra analysis pass)."""

    def __init__(self, stream: FrameStream, detect: bool = True) -> None:
        self._stream, self._detect, self._cuts = stream, detect, None

    def _get(self) -> list:
        if self._cuts is None:
            self._cuts = sorted(set(scene_cuts(self._stream, self._detect)))
            self._set = set(self._cuts)
        return self._cuts

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __contains__(self, index) -> bool:
        self._get()
        return index in self._set


def shot_bounds(cuts: list[int], index: int, n: int) -> tuple[int, int]:
    """First frame and end (exclusive) of the shot holding frame ``index`` in a stream of ``n``."""
    import bisect

    cs = sorted(c for c in cuts if 0 < c < n)
    k = bisect.bisect_right(cs, index)
    return (cs[k - 1] if k else 0), (cs[k] if k < len(cs) else n)


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
