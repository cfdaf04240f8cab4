"""Per-frame statistics smoothed over time within each shot, served in one pass.

Stages that must not flicker (automatic colour, deflicker) measure a small vector of numbers per
frame (never frames), smooth those numbers over time without crossing a scene cut, and correct
each frame with its smoothed numbers. :func:`shot_smoothed` builds such a stage so that nothing
upstream runs twice:

* when the frames the stage measures can be read again for the price of decoding (its upstream,
  or the stream whose frames it passes on unchanged, is a decoder), the numbers are measured on
  that cheap point first, then the real upstream is pulled once;
* otherwise the stage measures each chunk as it arrives and holds frames back (in memory up to a
  budget, then spilled exactly to temp files) until the numbers that correct them are final:
  ``radius`` frames later, or at the end of the shot (:func:`remaster.temporal.lookahead`).

Smoothing is a Gaussian-weighted local *linear* fit rather than a plain Gaussian blur: a steady
shot gets the blur's calm, while a straight ramp (a fade, a slow pan into light) passes through
unchanged, also at the ends of a shot. The smoothed value of frame ``i`` depends only on frames
within :func:`smoothing_radius` of it in its shot, which is what makes the one-pass form (and
range renders) give the same numbers as smoothing the whole clip at once.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import host
from ..stream import FRAMEWISE, Chunk, FrameStream, source_span
from ..streamtypes import pieces
from ..temporal import LookaheadStage, lookahead
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
            for one in pieces(chunk):
                host.check_interrupt()
                rows.append(np.asarray(measure(one), dtype=np.float64))
                yield one

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


def smoothing_radius(sigma_frames: float, median_radius: int = 0) -> int:
    """Frames on each side whose raw numbers can change a frame's smoothed numbers."""
    return int(round(3 * max(0.0, sigma_frames))) + int(median_radius) + 1


def _seg_cuts(cuts: list, a: int, b: int) -> list:
    return [c - a for c in cuts if a < c < b]


def _bounds(cuts: list, lo: int, hi: int, n: int, radius: int, whole_shot: bool) -> tuple:
    s0, _ = scenes.shot_bounds(cuts, lo, n)
    _, e1 = scenes.shot_bounds(cuts, max(lo, hi - 1), n)
    if whole_shot:
        return s0, e1
    return max(s0, lo - radius), min(e1, hi + radius)


Measure = Callable[[Chunk], np.ndarray]
Plan = Callable[[np.ndarray, list], np.ndarray]
Apply = Callable[[Chunk, np.ndarray], Chunk]


def shot_smoothed(stream: FrameStream, name: str, params: dict, measure: Measure, plan: Plan, apply: Apply,
                  radius: int, whole_shot: bool = False, needs_mask: bool = False, label: str = "") -> FrameStream:
    """A one-pass stage from three functions: ``measure(chunk) -> [n, K]`` numbers per frame;
    ``plan(stats [m, K], cuts) -> [m, P]`` per-frame parameters from the numbers of a run of
    consecutive frames (``cuts`` relative to the run; smoothing inside shots happens here);
    ``apply(chunk, rows [n, P]) -> chunk``. A frame's parameters may depend on the numbers of
    frames up to ``radius`` away in its shot, or on its whole shot (``whole_shot``).
    ``needs_mask``: the numbers use the stream's mask (so they cannot be measured on the frames
    alone)."""
    label = label or name
    cheap = stream if needs_mask else stream.frames_source
    if cheap.replayable:
        return _analyse_then_apply(stream, name, params, measure, plan, apply, radius, whole_shot,
                                   needs_mask, label)

    def make(up):
        return _ShotSmoother(up, measure, plan, apply, radius, whole_shot)

    return lookahead(stream, name, params, make, radius, whole_shot=whole_shot)


def _analyse_then_apply(stream, name, params, measure, plan, apply, radius, whole_shot, needs_mask, label):
    def producer(up, chunk_size: int) -> Iterator[Chunk]:
        n = up.info.frame_count
        lo, hi = source_span(up)
        src = up if needs_mask else up.frames_source
        src = getattr(src, "_stream", src)
        known = up.info.scene_cuts is not None or scenes.is_known(up)
        detector = None
        if not known and (lo, hi) == (0, n) and src.cuts_source is src:
            detector = scenes.CutDetector()  # cuts found in the same decoding pass
            a, b = 0, n
        else:
            cuts = scenes.scene_cuts(up)
            a, b = _bounds(cuts, lo, hi, n, radius, whole_shot)
        rows: list = []
        progress = host.Progress(b - a, f"{label}: analysis")
        try:
            for ch in src.chunks(chunk_size, a, b):
                for one in pieces(ch):  # a frame at a time: an interrupt waits for one frame
                    host.check_interrupt()
                    rows.append(np.asarray(measure(one), dtype=np.float64))
                    if detector is not None:
                        detector.push(one.frames)
                progress.update(len(ch))
        finally:
            progress.close()
        if detector is not None:
            scenes.remember(src, detector.cuts)
            cuts = list(detector.cuts)
        stats = np.concatenate(rows, 0) if rows else np.zeros((0, 0))
        values = plan(stats, _seg_cuts(cuts, a, b))
        for ch in up.chunks(chunk_size):
            yield apply(ch, values[ch.start - a:ch.stop - a])

    return stream.derive(name, params, producer, temporal=FRAMEWISE)


class _ShotSmoother(LookaheadStage):
    """The look-ahead form: numbers measured as chunks arrive, frames emitted once final."""

    def __init__(self, up, measure: Measure, plan: Plan, apply: Apply, radius: int, whole_shot: bool) -> None:
        self.measure, self.plan, self.apply = measure, plan, apply
        self.radius, self.whole_shot = int(radius), whole_shot
        self.n = up.info.frame_count
        self.lo, self.hi = source_span(up)
        self.cuts = scenes.LazyCuts(up)  # looked at after the first chunk (see LazyCuts)
        self.stats: Optional[np.ndarray] = None
        self.known = self.lo

    def push(self, chunk: Chunk) -> None:
        rows = np.asarray(self.measure(chunk), dtype=np.float64)
        if self.stats is None:
            self.stats = np.zeros((self.hi - self.lo, rows.shape[1]))
        self.stats[chunk.start - self.lo:chunk.stop - self.lo] = rows
        self.known = chunk.stop

    def ready(self) -> int:
        if self.known >= self.hi:
            return self.hi
        s0, _ = scenes.shot_bounds(self.cuts, self.known, self.n)
        return s0 if self.whole_shot else max(self.known - self.radius, s0)

    def emit(self, chunk: Chunk) -> Chunk:
        a, b = _bounds(self.cuts, chunk.start, chunk.stop, self.n, self.radius, self.whole_shot)
        a, b = max(a, self.lo), min(b, self.known)
        values = self.plan(self.stats[a - self.lo:b - self.lo], _seg_cuts(self.cuts, a, b))
        return self.apply(chunk, values[chunk.start - a:chunk.stop - a])
