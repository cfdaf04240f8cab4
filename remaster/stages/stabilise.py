"""Stabilise: remove gate weave and hand-held jitter, keep the intended camera moves.

Motion between consecutive frames is a similarity transform (shift, rotation, scale) found from
tracked corners (OpenCV ``goodFeaturesToTrack`` + pyramidal Lucas-Kanade +
``estimateAffinePartial2D`` with RANSAC) on a downscaled grey copy; with too few corners it falls
back to phase correlation (shift only). The camera path around each frame is the sum of those
motions inside its centred window of ``radius`` frames (bounded look-ahead, never across a scene
cut); it is smoothed with a Gaussian and the frame is warped by the difference between the
smoothed and the raw path. Uncovered borders are filled by reflection, by the nearest edge pixel,
with black, or hidden by a fixed zoom (``crop``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from ..stream import FrameStream
from ..analysis import flow as flowlib
from ..analysis.window import Item, Window, centred
from ..analysis.checks import one_of, within

__all__ = ["EDGES", "StabiliseError", "StabiliseSettings", "frame_motion", "stabilise"]

EDGES = ("reflect", "replicate", "black", "crop")


class StabiliseError(ValueError):
    """Stabilise got a setting it cannot use (the message names the input and what is accepted)."""


@dataclass(frozen=True)
class StabiliseSettings:
    radius: int = 12  # frames each side of the smoothing window
    strength: float = 1.0  # 1 = follow the smoothed path fully
    rotation: bool = True
    edge: str = "reflect"
    crop: float = 0.04  # zoom used by edge = crop (fraction)
    analysis_side: int = 480

    def validate(self) -> None:
        within(StabiliseError, "radius", self.radius, 1, 60, " frames")
        within(StabiliseError, "strength", self.strength, 0, 1)
        one_of(StabiliseError, "edge", self.edge, EDGES)
        within(StabiliseError, "crop", self.crop, 0, 0.25)


def frame_motion(prev: np.ndarray, cur: np.ndarray, rotation: bool = True) -> np.ndarray:
    """(dx, dy, angle, log_scale) that carries ``prev``'s content to ``cur`` (grey uint8, same size)."""
    pts = cv2.goodFeaturesToTrack(prev, maxCorners=300, qualityLevel=0.01, minDistance=8, blockSize=7)
    if pts is not None and len(pts) >= 12:
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(prev, cur, pts, None, winSize=(21, 21), maxLevel=3)
        ok = st.ravel() == 1
        if ok.sum() >= 10:
            m, inl = cv2.estimateAffinePartial2D(pts[ok], nxt[ok], method=cv2.RANSAC, ransacReprojThreshold=1.5)
            if m is not None and inl is not None and inl.sum() >= 8:
                h, w = prev.shape
                a, b = float(m[0, 0]), float(m[1, 0])
                ang = math.atan2(b, a) if rotation else 0.0
                sc = math.log(max(1e-3, math.hypot(a, b))) if rotation else 0.0
                # express the shift about the image centre so rotation does not leak into it
                c = np.array([w / 2, h / 2])
                moved = m[:, :2] @ c + m[:, 2]
                d = moved - c
                return np.array([d[0], d[1], ang, sc])
    (dx, dy), _ = cv2.phaseCorrelate(prev.astype(np.float32), cur.astype(np.float32),
                                     cv2.createHanningWindow(prev.shape[::-1], cv2.CV_32F))
    return np.array([dx, dy, 0.0, 0.0])


def _matrix(p: np.ndarray, w: int, h: int) -> np.ndarray:
    """2×3 similarity matrix for (dx, dy, angle, log_scale) about the image centre."""
    dx, dy, ang, ls = p
    s = math.exp(ls)
    a, b = s * math.cos(ang), s * math.sin(ang)
    c = np.array([w / 2, h / 2])
    rot = np.array([[a, -b], [b, a]])
    t = c - rot @ c + np.array([dx, dy])
    return np.hstack([rot, t[:, None]]).astype(np.float32)


class Stabiliser:
    def __init__(self, settings: StabiliseSettings) -> None:
        settings.validate()
        self.s = settings
        self.prev_small = None
        self.scale = 1.0

    def prepare(self, item: Item, first: bool) -> dict:
        frame = item.frame
        small = flowlib.to_gray_u8(frame, self.s.analysis_side)
        self.scale = frame.shape[1] / small.shape[1]
        m = np.zeros(4)
        if not first and self.prev_small is not None:
            m = frame_motion(self.prev_small, small, self.s.rotation)
            m[:2] *= self.scale
        self.prev_small = small
        return {"motion": m}

    def process(self, w: Window) -> tuple:
        s = self.s
        it = w.item
        # the camera path relative to this frame, summed from the frame-to-frame motions inside
        # the window only (so a range renders exactly as in a full pass)
        c = w.centre
        paths = np.zeros((len(w.items), 4))
        for k in range(c + 1, len(w.items)):
            paths[k] = paths[k - 1] + w.items[k].aux["motion"]
        for k in range(c - 1, -1, -1):
            paths[k] = paths[k + 1] - w.items[k + 1].aux["motion"]
        offs = np.array([x.index - it.index for x in w.items], np.float64)
        sigma = max(1.0, s.radius / 2.0)
        wts = np.exp(-0.5 * (offs / sigma) ** 2)
        corr = (paths * wts[:, None]).sum(0) / wts.sum() * s.strength
        x = it.frame.numpy()
        h, wd, _ = x.shape
        # the path maps the shot's first frame onto this one; warp this frame by the correction
        if not np.any(np.abs(corr) > 1e-4) and s.edge != "crop":
            return it.frame, it.mask
        m = _matrix(corr, wd, h)
        if s.edge == "crop":
            z = 1.0 + s.crop
            c = np.array([wd / 2, h / 2])
            zm = np.array([[z, 0, c[0] - z * c[0]], [0, z, c[1] - z * c[1]]], np.float32)
            m = (np.vstack([zm, [0, 0, 1]]) @ np.vstack([m, [0, 0, 1]]))[:2].astype(np.float32)
        border = {"reflect": cv2.BORDER_REFLECT101, "replicate": cv2.BORDER_REPLICATE,
                  "black": cv2.BORDER_CONSTANT, "crop": cv2.BORDER_REFLECT101}[s.edge]
        out = cv2.warpAffine(x, m, (wd, h), flags=cv2.INTER_LINEAR, borderMode=border)
        mask = it.mask
        if mask is not None:
            mask = torch.from_numpy(cv2.warpAffine(mask.numpy(), m, (wd, h), flags=cv2.INTER_LINEAR,
                                                   borderMode=border))
        return torch.from_numpy(out), mask


def stabilise(stream: FrameStream, settings: StabiliseSettings = StabiliseSettings()) -> FrameStream:
    """The steadied stream (one pass, a centred window of ``2*radius+1`` frames, cut-aware)."""
    settings.validate()
    return centred(stream, "stabilise", asdict(settings), settings.radius, lambda: Stabiliser(settings))
