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

__all__ = ["TemporalError", "motion_confidence", "TemporalBlender", "temporal_consistency", "warping_error"]


class TemporalError(ValueError):
    """Bad settings or mismatched inputs (the message names the input and the fix)."""


# ---------------------------------------------------------------------------------------------
# motion and where it can be trusted (shared with the temporal restorer and the metrics)
# ---------------------------------------------------------------------------------------------
_grids: dict = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if (h, w) not in _grids:
        if len(_grids) > 8:
            _grids.clear()
        _grids[(h, w)] = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return _grids[(h, w)]


def _remap(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``img`` sampled at ``x + flow(x)`` (bilinear, edges repeated); OpenCV's remap is the fast
    CPU path for whole frames (see :func:`remaster.analysis.flow.backward_warp` for torch tensors)."""
    gx, gy = _grid(*flow.shape[:2])
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def grey(frame: torch.Tensor, max_side: int) -> np.ndarray:
    """Grey uint8 copy of ``frame`` ``[H,W,3]`` with long side ≤ ``max_side`` (shrunk first, cheaper)."""
    a = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    return flowlib.to_gray_u8(flowlib.resize_max_side(np.ascontiguousarray(a, dtype=np.float32), max_side))


def motion_confidence(cur: np.ndarray, prev: np.ndarray, method: str = "dis_fast", fb_alpha: float = 0.01,
                      fb_beta: float = 0.5, photo_tolerance: float = 0.06, erode: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Flow ``cur -> prev`` (``cur(x) ≈ prev(x + flow)``) and a confidence in 0..1 per pixel.

    ``cur``/``prev``: grey uint8 of the same size. Confidence multiplies a soft forward-backward
    check (error against ``fb_alpha * (|f|² + |b|²) + fb_beta``), a soft photometric check (grey
    difference after warping, ``photo_tolerance`` in 0..1 units) and an in-frame test; it is then
    eroded by ``erode`` pixels so the borders of moving objects count as untrusted."""
    fwd_b = flowlib.estimate_flow(cur, prev, method)  # t -> t-1
    fwd_f = flowlib.estimate_flow(prev, cur, method)  # t-1 -> t
    back = _remap(fwd_f, fwd_b)
    ex, ey = fwd_b[..., 0] + back[..., 0], fwd_b[..., 1] + back[..., 1]
    err = ex * ex + ey * ey
    bound = fb_alpha * (fwd_b[..., 0] ** 2 + fwd_b[..., 1] ** 2 + back[..., 0] ** 2 + back[..., 1] ** 2) + fb_beta
    c_fb = np.clip(2.0 - err / bound, 0.0, 1.0)  # 1 up to the bound, 0 at twice the bound
    warped = _remap(prev, fwd_b).astype(np.float32)
    d = np.abs(cur.astype(np.float32) - warped) / 255.0
    c_ph = np.clip(2.0 - d / max(photo_tolerance, 1e-4), 0.0, 1.0)
    h, w = cur.shape
    gx, gy = _grid(h, w)
    tx, ty = gx + fwd_b[..., 0], gy + fwd_b[..., 1]
    inside = ((tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)).astype(np.float32)
    conf = (c_fb * c_ph * inside).astype(np.float32)
    if erode > 0:
        conf = cv2.erode(conf, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
    return fwd_b, conf


def scale_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a flow field to ``size`` (H, W) and scale its vectors to those pixels."""
    H, W = size
    h, w = flow.shape[:2]
    if (h, w) == (H, W):
        return flow
    out = cv2.resize(flow, (W, H), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= W / w
    out[..., 1] *= H / h
    return out


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
        g = grey(original, self.flow_max_side)
        cur = np.ascontiguousarray(processed.detach().cpu().numpy(), dtype=np.float32)
        fresh = is_cut or self.prev_out is None or self.prev_out.shape != cur.shape or self.prev_grey.shape != g.shape
        if not fresh:
            fl, conf = motion_confidence(g, self.prev_grey, self.method, photo_tolerance=self.photo_tolerance)
            self.last_confidence = float(conf.mean())
            fresh = self.last_confidence < self.min_confidence  # an undetected cut or a flash: start over
        self.prev_grey = g
        if fresh:
            self.prev_out = cur.copy()
            return torch.from_numpy(cur.copy())
        H, W = cur.shape[:2]
        warped = _remap(self.prev_out, scale_flow(fl, (H, W)))
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
    if not 0.0 <= strength <= 0.98:
        raise TemporalError(f"strength must be within 0..0.98, got {strength}")
    if flow_quality not in flowlib.METHODS:
        raise TemporalError(f"flow_quality must be one of {', '.join(flowlib.METHODS)}, got '{flow_quality}'")
    if not 64 <= flow_max_side <= 4096:
        raise TemporalError(f"flow_max_side must be within 64..4096 pixels, got {flow_max_side}")
    if not 0.005 <= photo_tolerance <= 1.0:
        raise TemporalError(f"photo_tolerance must be within 0.005..1, got {photo_tolerance}")
    if not 0.01 <= guard <= 1.0:
        raise TemporalError(f"guard must be within 0.01..1, got {guard}")
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


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------
def warping_error(frames: torch.Tensor, originals: torch.Tensor, method: str = "farneback", max_side: int = 480,
                  cuts: tuple = ()) -> float:
    """Mean flow-compensated frame-to-frame difference of ``frames`` ``[n,H,W,3]``, measured on the
    source's motion: flow and trust mask come from ``originals`` ``[n,h,w,3]`` (Farneback by
    default, a different estimator from the stage's DIS), pixels weighted by confidence.
    Frame pairs across a cut are skipped. Lower is steadier (0..1 units, mean abs per channel)."""
    num = den = 0.0
    prev = None
    H, W = frames.shape[1:3]
    for t in range(frames.shape[0]):
        g = grey(originals[t], max_side)
        if prev is not None and t not in cuts:
            fl, conf = motion_confidence(g, prev, method)
            warped = _remap(np.ascontiguousarray(frames[t - 1].numpy(), dtype=np.float32), scale_flow(fl, (H, W)))
            c = cv2.resize(conf, (W, H), interpolation=cv2.INTER_LINEAR)
            d = np.abs(frames[t].numpy() - warped).mean(-1)
            num += float((d * c).sum())
            den += float(c.sum())
        prev = g
    return num / max(den, 1e-9)
