"""Keyframes for video inpainting: where does the masked region change?

Each frame is compared with the most recent *keyframe* (not with the previous frame), inside the
inpainting mask (the union of the keyframe's and the frame's masks) on a downscaled copy:

* colour: mean absolute RGB difference from the keyframe inside the region, plus the fraction of
  the region that the mask itself gained or lost (the masked object moved or changed shape);
* motion: the optical-flow motion inside the region accumulated since the keyframe (the sum of
  frame-to-frame flow magnitudes, since flow across many frames is unreliable), counting flow
  only where it explains the change better than "no motion" does (flat areas and flow spilling
  over from motion next to the region do not count).

A frame becomes a keyframe when either exceeds its threshold, ``threshold = average × scale``:
the *average* is the mean frame-to-frame difference of the masked region in a window around the
frame (within its shot), and ``scale = 8 × 4^(0.5 - movement) × 4^(0.5 - determinism)`` comes
from the two user weights of the seed (0..1 each): more movement in the masked area, or a more
deterministic model and prompt, lower the threshold and give smaller groups. Roughly, a keyframe
is set once the region has changed as much as ``scale`` average frames would change it; a sudden
change is a keyframe at once. Scene cuts always start a group; groups are at least
``min_group`` and at most ``max_group`` frames long.

Changes outside the mask never count; floors (two code values, half an analysis pixel) keep
codec noise out. The pass keeps a bounded look-ahead window of small thumbnails (``window``
frames), never the video.
"""
from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Iterator, Optional

import cv2
import numpy as np
import torch

from ... import host
from ...stream import Chunk, FrameStream, fingerprint_of
from ...analysis import flow as flowlib
from ...analysis.scenes import CutDetector

__all__ = ["KeyframePlan", "analyse_keyframes", "keyframe_stream", "threshold_scale"]

_cache: dict = {}

# floors under the thresholds: codec noise and flow spilling over the mask edge never count
MIN_COLOUR = 0.008  # mean absolute RGB difference (0..1), about two code values
MIN_MOTION = 0.5  # pixels of the analysis copy
MOTION_NOISE = 0.05  # frame-to-frame motion below this (analysis pixels) is not accumulated
FLOW_MARGIN = 2  # grey levels by which warping must beat "no motion" for flow to count


@dataclass
class KeyframePlan:
    """Result of the analysis: keyframe indices and the group each frame belongs to.

    ``groups`` are ``[start, stop)`` frame ranges; each group's keyframe is its first frame.
    ``colour``/``motion`` are each frame's differences from the keyframe of its group.
    """

    frame_count: int
    keyframes: list
    groups: list
    colour: list = field(default_factory=list)
    motion: list = field(default_factory=list)
    cuts: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    source: str = ""  # fingerprint of the analysed stream
    seconds: float = 0.0

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("keyframes", self.source, self.keyframes, self.settings)

    def group_of(self, index: int) -> int:
        """Number of the group (0-based) that frame ``index`` belongs to."""
        if not 0 <= index < self.frame_count:
            raise IndexError(f"frame {index} is outside 0..{self.frame_count - 1}")
        return bisect.bisect_right(self.keyframes, index) - 1

    def to_json(self) -> dict:
        d = asdict(self)
        d["colour"] = [round(float(x), 5) for x in self.colour]
        d["motion"] = [round(float(x), 4) for x in self.motion]
        return d

    def __repr__(self) -> str:
        return f"<KeyframePlan {len(self.keyframes)} keyframes / {self.frame_count} frames>"


def threshold_scale(movement: float, determinism: float) -> float:
    """The multiplier on the average difference (see the module docstring)."""
    for name, v in (("movement", movement), ("determinism", determinism)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"keyframes: '{name}' must be between 0 and 1, got {v}")
    return 8.0 * 4.0 ** (0.5 - float(movement)) * 4.0 ** (0.5 - float(determinism))


@dataclass
class _Thumb:
    rgb: np.ndarray  # [h,w,3] float32
    gray: np.ndarray  # [h,w] uint8
    mask: np.ndarray  # [h,w] bool


def _thumbs(chunk: Chunk, side: int) -> list:
    # numpy/OpenCV on small images: no thread start-up cost per call, unlike torch on tiny tensors
    n, H, W, _ = chunk.frames.shape
    s = min(1.0, side / max(H, W))
    size = (max(8, round(W * s)), max(8, round(H * s)))
    frames = chunk.frames.detach().cpu().float().numpy()
    masks = None if chunk.mask is None else chunk.mask.detach().cpu().float().numpy()
    out = []
    for i in range(n):
        rgb = cv2.resize(frames[i], size, interpolation=cv2.INTER_AREA) if s < 1 else frames[i].copy()
        if masks is not None:
            m = cv2.resize(masks[i], size, interpolation=cv2.INTER_AREA) if s < 1 else masks[i]
            mask = m > 0.05
        else:
            mask = np.ones(rgb.shape[:2], bool)
        g = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        gray = np.clip(g * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out.append(_Thumb(rgb, gray, mask))
    return out


def _difference(a: _Thumb, b: _Thumb, flow_method: Optional[str]) -> tuple:
    """(colour, motion) of ``b`` relative to ``a`` inside the union of their masks (motion 0
    without a ``flow_method``)."""
    region = a.mask | b.mask
    count = int(region.sum())
    if count == 0:
        return 0.0, 0.0
    mad = float(np.abs(a.rgb[region] - b.rgb[region]).mean())
    mask_change = float((a.mask ^ b.mask).sum()) / count
    if flow_method is None:
        return mad + mask_change, 0.0
    fl = flowlib.estimate_flow(b.gray, a.gray, flow_method)
    # flow counts only where it explains the change better than no motion does: this drops flow
    # on flat areas and flow spilling from motion next to the region
    h, w = b.gray.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(a.gray, gx + fl[..., 0], gy + fl[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bg, ag = b.gray.astype(np.int16), a.gray.astype(np.int16)
    explained = np.abs(bg - ag) > np.abs(bg - warped.astype(np.int16)) + FLOW_MARGIN
    motion = float((flowlib.flow_magnitude(fl) * explained)[region].mean())
    return mad + mask_change, motion


def analyse_keyframes(stream: FrameStream, movement: float = 0.5, determinism: float = 0.5, min_group: int = 4,
                      max_group: int = 48, analysis_side: int = 256, window: int = 48,
                      flow_method: str = "dis_ultrafast", detect_cuts: bool = True) -> KeyframePlan:
    """Analyse ``stream`` (frames + inpainting mask) and return its :class:`KeyframePlan`.

    Memoised per stream fingerprint and settings. See the module docstring for the method.
    """
    if min_group < 1 or max_group < min_group:
        raise ValueError(
            f"keyframes: need 1 ≤ min_group ≤ max_group, got min_group={min_group}, max_group={max_group}"
        )
    if analysis_side < 32:
        raise ValueError(f"keyframes: analysis_side must be at least 32 pixels, got {analysis_side}")
    if flow_method not in flowlib.METHODS:
        raise ValueError(f"keyframes: unknown flow_method '{flow_method}'; use one of {flowlib.METHODS}")
    scale = threshold_scale(movement, determinism)
    settings = {
        "movement": float(movement),
        "determinism": float(determinism),
        "scale": round(scale, 6),
        "min_group": int(min_group),
        "max_group": int(max_group),
        "analysis_side": int(analysis_side),
        "window": int(window),
        "flow_method": flow_method,
        "detect_cuts": bool(detect_cuts),
    }
    key = fingerprint_of(stream.fingerprint, settings)
    if key in _cache:
        return _cache[key]

    t0 = time.perf_counter()
    # cuts: attached to the stream, else detected in this same pass (on the analysis copy)
    attached = stream.info.scene_cuts
    cut_set = set(int(c) for c in attached if int(c) > 0) if attached is not None else set()
    detector = CutDetector() if attached is None and detect_cuts else None
    n_total = stream.info.frame_count
    progress = host.Progress(n_total, "Keyframes")

    cons_c: list = []  # frame-to-frame differences (0 at shot starts)
    cons_m: list = []
    shot_start: list = []  # shot start of each frame
    buf: deque = deque()  # (index, thumb) not yet decided
    keyframes: list = []
    colour: list = []
    motion: list = []
    state = {"key": None, "key_index": -1}

    def decide(i: int, th: _Thumb, seen: int) -> None:
        s0 = shot_start[i]
        if i == 0 or i in cut_set or state["key"] is None:
            is_key = True
            c = m = 0.0
        else:
            c, _ = _difference(state["key"], th, None)
            # motion since the keyframe: frame-to-frame flow summed (flow across many frames is unreliable)
            m = float(sum(x for x in cons_m[state["key_index"] + 1: i + 1] if x > MOTION_NOISE))
            length = i - state["key_index"]
            # average frame-to-frame change of the masked region around i (same shot)
            lo = max(s0 + 1, i - window)
            hi = min(seen, i + window + 1)
            while hi > lo and shot_start[hi - 1] != s0:
                hi -= 1
            if hi > lo:
                avg_c = sum(cons_c[lo:hi]) / (hi - lo)
                avg_m = sum(cons_m[lo:hi]) / (hi - lo)
            else:
                avg_c = avg_m = 0.0
            t_c, t_m = max(MIN_COLOUR, avg_c * scale), max(MIN_MOTION, avg_m * scale)
            if length >= max_group:
                is_key = True
            elif length >= min_group and (c > t_c or m > t_m):
                is_key = True
            else:
                is_key = False
        if is_key:
            keyframes.append(i)
            state["key"], state["key_index"] = th, i
            c = m = 0.0
        colour.append(c)
        motion.append(m)

    prev: Optional[_Thumb] = None
    seen = 0
    for chunk in stream.chunks():
        thumbs = _thumbs(chunk, analysis_side)
        if detector is not None:
            cut_set.update(detector.push(torch.from_numpy(np.stack([t.rgb for t in thumbs]))))
        for th in thumbs:
            i = seen
            if i == 0 or i in cut_set or prev is None:
                cons_c.append(0.0)
                cons_m.append(0.0)
                shot_start.append(i)
            else:
                c, m = _difference(prev, th, flow_method)
                cons_c.append(c)
                cons_m.append(m)
                shot_start.append(shot_start[i - 1])
            prev = th
            seen += 1
            buf.append((i, th))
            # decide frames whose look-ahead window is complete, or whose shot has ended
            while buf and (i >= buf[0][0] + window or shot_start[i] != shot_start[buf[0][0]]):
                j, tj = buf.popleft()
                decide(j, tj, seen)
        progress.update(len(chunk))
    while buf:
        j, tj = buf.popleft()
        decide(j, tj, seen)
    progress.close()

    groups = [[k, (keyframes[g + 1] if g + 1 < len(keyframes) else seen)] for g, k in enumerate(keyframes)]
    plan = KeyframePlan(frame_count=seen, keyframes=keyframes, groups=groups, colour=colour, motion=motion,
                        cuts=sorted(cut_set), settings=settings, source=stream.fingerprint,
                        seconds=round(time.perf_counter() - t0, 3))
    _cache[key] = plan
    return plan


def keyframe_stream(stream: FrameStream, plan: KeyframePlan) -> FrameStream:
    """The keyframes alone, in order, as a stream (with their masks) for previewing."""
    keys = list(plan.keyframes)
    wanted = set(keys)
    info = stream.info.with_(frame_count=len(keys), scene_cuts=None)

    def producer(up: FrameStream, size: int) -> Iterator[Chunk]:
        out_f, out_m, start = [], [], 0
        for chunk in up.chunks():
            for i in range(len(chunk)):
                if chunk.start + i in wanted:
                    out_f.append(chunk.frames[i])
                    out_m.append(None if chunk.mask is None else chunk.mask[i])
                    if len(out_f) == size:
                        yield _pack(start, out_f, out_m)
                        start += len(out_f)
                        out_f, out_m = [], []
        if out_f:
            yield _pack(start, out_f, out_m)

    return stream.derive("keyframes", {"keyframes": keys}, producer, info)


def _pack(start: int, frames: list, masks: list) -> Chunk:
    m = torch.stack(masks) if all(x is not None for x in masks) else None
    return Chunk(start, torch.stack(frames), m)
