"""Temporal consistency for any per-frame stage: steady output by warping and blending.

Method: blind video temporal consistency by *flow-guided recursive warping and blending*, the
online, per-pixel-weighted form of the warping-and-blending family (Lang et al. 2012, "Practical
temporal consistency for image-based graphics applications"; Bonneel et al. 2015, "Blind video
temporal consistency", whose data term is the warped previous output; Lai et al. 2018 measure
and train for the same warping error). We do not solve Bonneel's gradient-domain problem;
instead each output frame is

    out_t = cur_t + a_t * (warp(out_{t-1}) - cur_t),   a_t = strength * confidence_t

where ``cur_t`` is the processed (per-frame) frame and ``warp`` follows the optical flow of the
*original* frames (motion is estimated on the source, where the per-frame stage has not invented
flickering texture). ``confidence_t`` is 0 wherever the warp cannot be trusted, so there the
current frame's own detail is kept:

* forward-backward flow consistency (Sundaram et al. 2010): occluded and disoccluded pixels,
* a photometric check on the original (the warped previous original must match the current one),
* a guard on the processed frames: a difference far above flicker level is a mis-warp, not flicker,
* pixels whose motion leaves the frame, and scene cuts (state reset; the first frame of a shot is
  passed through untouched).

The recursion makes ``out`` an exponential average along motion trajectories (memory about
``1 / (1 - strength)`` frames). State: one previous output frame and one small grey original,
so memory is bounded; one pass over each input. The processed stream may be larger than the
original (after an upscaler): flow is computed on the original and scaled.
"""
from __future__ import annotations

from typing import Iterator, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import host
from ..stream import Chunk, FrameStream
from ..analysis import flow as flowlib
from ..analysis import scenes
from ..analysis.checks import one_of, within

__all__ = ["TemporalError", "TemporalBlender", "temporal_consistency"]


class TemporalError(ValueError):
    """Bad settings or mismatched inputs (the message names the input and the fix)."""


# ---------------------------------------------------------------------------------------------
# the stateful blender
# ---------------------------------------------------------------------------------------------
class TemporalBlender:
    """Feed ``(processed, original, is_cut)`` frame by frame; holds one previous output frame.

    ``processed`` ``[H,W,3]`` and ``original`` ``[h,w,3]`` float 0..1 (torch, CPU); returns the
    steady ``[H,W,3]`` frame. ``guard`` is the processed-frame difference (0..1) above which a
    warped pixel counts as a mis-warp (fading out up to twice that). Runs on the CPU with OpenCV
    (a few whole-frame passes; cheaper than moving frames to a GPU and back)."""

    def __init__(self, strength: float = 0.85, method: str = "dis_medium", flow_max_side: int = 480,
                 photo_tolerance: float = 0.06, guard: float = 0.2, min_confidence: float = 0.15) -> None:
        self.strength = float(strength)
        self.method = method
        self.flow_max_side = int(flow_max_side)
        self.photo_tolerance = float(photo_tolerance)
        self.guard = float(guard)
        self.min_confidence = float(min_confidence)
        self.reset()

    def reset(self) -> None:
        self.prev_out: Optional[np.ndarray] = None  # [H,W,3] float32
        self.prev_grey: Optional[np.ndarray] = None
        self.last_confidence = 0.0

    def step(self, processed: torch.Tensor, original: torch.Tensor, is_cut: bool = False) -> torch.Tensor:
        g = flowlib.grey(original, self.flow_max_side)
        cur = np.ascontiguousarray(processed.detach().cpu().numpy(), dtype=np.float32)
        fresh = is_cut or self.prev_out is None or self.prev_out.shape != cur.shape or self.prev_grey.shape != g.shape
        if not fresh:
            fl, conf = flowlib.motion_confidence(g, self.prev_grey, self.method, photo_tolerance=self.photo_tolerance)
            self.last_confidence = float(conf.mean())
            fresh = self.last_confidence < self.min_confidence  # an undetected cut or a flash: start over
        self.prev_grey = g
        if fresh:
            self.prev_out = cur.copy()
            return torch.from_numpy(cur.copy())
        H, W = cur.shape[:2]
        warped = flowlib.remap(self.prev_out, flowlib.scale_flow(fl, (H, W)))
        c = cv2.resize(conf, (W, H), interpolation=cv2.INTER_LINEAR)
        d = cv2.subtract(warped, cur)
        b, g, r = cv2.split(cv2.absdiff(warped, cur))
        mis = cv2.max(cv2.max(b, g), r)  # largest channel difference (cv2: a small-axis reduce in numpy is slow)
        a = np.clip(2.0 - mis * (1.0 / self.guard), 0.0, 1.0)
        a *= c
        a *= self.strength
        d = cv2.add(cv2.multiply(d, cv2.merge((a, a, a))), cur)
        np.clip(d, 0.0, 1.0, out=d)
        self.prev_out = d
        return torch.from_numpy(d.copy())


# ---------------------------------------------------------------------------------------------
# the stream stage
# ---------------------------------------------------------------------------------------------
def _frames(stream: FrameStream, chunk_size: int) -> Iterator[torch.Tensor]:
    for ch in stream.chunks(chunk_size):
        for i in range(len(ch)):
            yield ch.frames[i]


def temporal_consistency(stream: FrameStream, original: FrameStream, strength: float = 0.85,
                         flow_quality: str = "dis_medium", flow_max_side: int = 480, photo_tolerance: float = 0.06,
                         guard: float = 0.2, reset_on_cuts: bool = True) -> FrameStream:
    """``stream`` (a per-frame stage's output) made steady along the motion of ``original``."""
    if original is None:
        raise TemporalError("the 'original' input is missing: connect the stream the processed frames came from")
    if original.info.frame_count != stream.info.frame_count:
        raise TemporalError(
            f"the original has {original.info.frame_count} frames but the processed stream has "
            f"{stream.info.frame_count}: connect the original clip the processed frames were made from "
            "(same trim, every_nth and frame rate)")
    within(TemporalError, "strength", strength, 0, 0.98)
    one_of(TemporalError, "flow_quality", flow_quality, flowlib.METHODS)
    within(TemporalError, "flow_max_side", flow_max_side, 64, 4096, " pixels")
    within(TemporalError, "photo_tolerance", photo_tolerance, 0.005, 1)
    within(TemporalError, "guard", guard, 0.01, 1)
    attached = stream.info.scene_cuts if stream.info.scene_cuts is not None else original.info.scene_cuts

    def producer(upstream: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        blender = TemporalBlender(strength, flow_quality, flow_max_side, photo_tolerance, guard)
        detector = None if (attached is not None or not reset_on_cuts) else scenes.CutDetector()
        cuts = set(attached or ())
        orig = _frames(original, chunk_size)
        progress = host.Progress(upstream.info.frame_count, "temporal consistency")
        for ch in upstream.chunks(chunk_size):
            out = torch.empty_like(ch.frames)
            for i in range(len(ch)):
                host.check_interrupt()
                idx = ch.start + i
                o = next(orig, None)
                if o is None:
                    raise TemporalError(f"the original stream ended at frame {idx}; it must have as many frames as the processed one")
                if detector is not None:
                    small = F.interpolate(o.permute(2, 0, 1)[None].float(), size=(36, 64), mode="area")
                    cuts.update(detector.push(small.permute(0, 2, 3, 1)))
                out[i] = blender.step(ch.frames[i], o, reset_on_cuts and idx in cuts)
            progress.update(len(ch))
            yield ch.with_(frames=out)

    params = dict(original=original.fingerprint, strength=float(strength), flow=flow_quality,
                  side=int(flow_max_side), photo=float(photo_tolerance), guard=float(guard), cuts=bool(reset_on_cuts))
    return stream.derive("temporal_consistency", params, producer)
