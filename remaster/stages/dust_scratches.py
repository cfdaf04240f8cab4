"""Dust & Scratches: find one-frame defects and line scratches, repair them from neighbouring
frames (motion compensated) or from the surrounding picture.

One-frame defects (dust, dirt, hairs, blotches, tape dropouts). Each neighbour ``i±1, i±2`` of
the same shot is warped onto frame ``i`` with dense optical flow (OpenCV DIS, on a downscaled grey
copy, :mod:`remaster.analysis.flow`). A pixel is a defect when its (lightly blurred) luma lies
outside the range spanned by *all* compensated neighbours by more than a threshold: real content
is present in at least one neighbour (occlusions uncover it on one side), a speck is present in
none. The threshold is ``k`` times the robust spread of the frame-to-neighbour difference (so it
follows the grain level); ``sensitivity`` sets ``k``.

Line scratches: a thin ridge filter on a vertically smoothed luma (brighter or darker than both
sides at 2-3 px, a step edge answers 0) gives candidates; a candidate is kept where it runs along
a long near-vertical line (most of a ``h/6`` vertical run within ±2 px) that is also there in a
neighbouring frame at the same place (scratches persist in the gate), and where content that
moved by more than a pixel does not explain it (the compensated neighbour agrees → a real edge).

Repair: the median (mean of two) of the compensated neighbours where they agree with each other
and motion is moderate; elsewhere, and for the thin scratch lines, OpenCV inpainting
(Telea) from the surrounding pixels.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from ..stream import FrameStream
from ..analysis import flow as flowlib
from ..analysis.repair import (fill_rows, inpaint_regions, luma as _luma, neighbour_flows, robust_sigma as _robust_sigma,
                               sample_at)
from ..analysis.window import Item, Window, as_mask, centred
from ..analysis.checks import one_of, within

__all__ = ["DustError", "DustScratches", "DustSettings", "dust_scratches"]

class DustError(ValueError):
    pass


@dataclass(frozen=True)
class DustSettings:
    sensitivity: float = 0.5  # 0..1
    radius: int = 2  # neighbours on each side (1 or 2)
    dust: bool = True
    scratches: bool = True
    max_motion: float = 40.0  # px; beyond this the temporal repair is not trusted
    flow_side: int = 480
    flow_method: str = "dis_fast"
    grow: int = 2  # px added around each detection before repair

    def validate(self) -> None:
        within(DustError, "sensitivity", self.sensitivity, 0, 1)
        if self.radius not in (1, 2):
            raise DustError(f"radius must be 1 or 2 frames, got {self.radius}")
        one_of(DustError, "flow_method", self.flow_method, flowlib.METHODS)
        within(DustError, "grow", self.grow, 0, 8, " px")


def ridge(g: np.ndarray) -> np.ndarray:
    """Signed thin-line response: > 0 for a line brighter than both sides, < 0 for a darker one
    (sides 2 or 3 px away, after a vertical blur; 0 within 3 px of the left and right edges)."""
    gv = cv2.blur(g, (1, 7))
    h, w = g.shape
    best_b = np.zeros((h, w - 6), np.float32)
    best_d = np.zeros((h, w - 6), np.float32)
    c = gv[:, 3:w - 3]
    for d in (2, 3):
        left, right = gv[:, 3 - d:w - 3 - d], gv[:, 3 + d:w - 3 + d]
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        np.maximum(best_b, c - hi, out=best_b)
        np.maximum(best_d, lo - c, out=best_d)
    out = np.zeros((h, w), np.float32)
    out[:, 3:w - 3] = np.where(best_b >= best_d, best_b, -best_d)
    return out


SLOPES = np.linspace(-0.045, 0.045, 13)


def line_map(g: np.ndarray, k: float, min_cover: float = 0.55) -> np.ndarray:
    """Pixels on long, thin, near-vertical lines of one frame (before the temporal checks).

    For each sign (bright/dark) and each slope in :data:`SLOPES`, the thin-line candidates are
    counted along sheared columns; a column whose candidates cover ``min_cover`` of the height and
    that is a local maximum across ``x`` is a line. Its mask is the candidates within ±2 px of it.
    """
    h, w = g.shape
    r = ridge(g)
    sigma = max(_robust_sigma(r), 1e-3)
    t = max(0.03, k * sigma)
    out = np.zeros((h, w), bool)
    ys = np.arange(h)
    for sign in (1, -1):
        cand = (sign * r) > t
        if cand.mean() < 1e-4:
            continue
        wide = cv2.dilate(cand.astype(np.uint8), np.ones((1, 3), np.uint8))
        best = np.zeros(w, np.float32)
        best_slope = np.zeros(w, np.float32)
        # rows averaged 4 by 4 first: a column's cover is a mean along it anyway
        h4 = max(1, h // 4)
        widef = cv2.resize(wide.astype(np.float32), (w, h4), interpolation=cv2.INTER_AREA)
        for slope in SLOPES:
            # shear so that a line of this slope becomes a column, then measure each column's cover
            sl = slope * h / h4
            m = np.float32([[1, sl, -sl * h4 / 2], [0, 1, 0]])
            sheared = cv2.warpAffine(widef, m, (w, h4), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REPLICATE)
            cover = cv2.reduce(sheared, 0, cv2.REDUCE_AVG)[0]
            better = cover > best
            best[better] = cover[better]
            best_slope[better] = slope
        peak = (best >= min_cover) & (best >= np.maximum.reduce([np.roll(best, d) for d in (-3, -2, -1, 1, 2, 3)]))
        for x0 in np.nonzero(peak)[0]:
            cx = np.round(x0 + best_slope[x0] * (ys - h / 2)).astype(np.int64)
            for dx in (-2, -1, 0, 1, 2):
                xx = np.clip(cx + dx, 0, w - 1)
                out[ys, xx] |= cand[ys, xx] | (dx == 0)
    return out


class DustScratches:
    """The per-window detector and repairer (state: per-frame caches travel in the window items)."""

    def __init__(self, settings: DustSettings) -> None:
        settings.validate()
        self.s = settings
        # sensitivity 0 → 6 sigma, 0.5 → 3.5, 1 → 1 sigma
        self.k = 6.0 - 5.0 * settings.sensitivity

    def prepare(self, item: Item, first: bool) -> dict:
        x = item.frame.numpy()
        return {"small": flowlib.to_gray_u8(x, self.s.flow_side), "luma": _luma(x)}

    def _lines(self, item) -> np.ndarray:
        if "lines" not in item.aux:
            item.aux["lines"] = line_map(item.aux["luma"], self.k)
        return item.aux["lines"]

    def _one_frame(self, w: Window, flows: list, mags: list) -> tuple:
        """(one-frame defects, pixels the compensated neighbours can repair, their threshold)."""
        s, it = self.s, w.item
        g = it.aux["luma"]
        nbs = w.neighbours(s.radius)
        # exposure flicker: bring each compensated neighbour to the centre's brightness first
        gm = float(g.mean())
        lumas = [flowlib.remap(nb.aux["luma"], f) for nb, f in zip(nbs, flows)]
        lumas = [lm * (gm / max(float(lm.mean()), 1e-4)) for lm in lumas]
        one_sided = len({nb.index < it.index for nb in nbs}) < 2
        side = 2.0 if one_sided else 1.0  # one side only: occlusions look like defects
        k = self.k * side
        gb = cv2.blur(g, (3, 3))
        lb = [cv2.blur(lm, (3, 3)) for lm in lumas]
        sigma = _robust_sigma(gb - lb[0])
        thr = max(0.045 * side, k * sigma)
        lo, hi = _least(lb), _most(lb)
        motion = _most(mags)
        reliable = ((hi - lo) < 2.5 * thr) & (motion < s.max_motion)
        if s.scratches:  # where a neighbour matches the frame (for the scratch test)
            it.aux["agree"] = _least([np.abs(lm - g) for lm in lumas]) < 0.5 * thr
        if not s.dust:
            return np.zeros(g.shape, bool), reliable
        # the nearest neighbours unwarped too: where the flow fails (non-rigid, periodic
        # texture) the content often still matches in place; a speck matches in neither
        raw1 = [nb.aux["luma"] * (gm / max(float(nb.aux["luma"].mean()), 1e-4)) for nb in w.neighbours(1)]
        raw = [cv2.blur(r, (3, 3)) for r in raw1]
        lo_d, hi_d = np.minimum(lo, _least(raw)), np.maximum(hi, _most(raw))
        spread = cv2.dilate(hi - lo, np.ones((3, 3), np.uint8)) if len(lumas) > 1 else np.zeros_like(g)
        # neighbours that disagree with each other (motion the flow missed) raise the bar
        oor = np.maximum(gb - hi_d, lo_d - gb) - 0.5 * spread
        core = oor > thr
        # thin defects (hairs) lose contrast in the blur: also test the sharp luma, harder
        lo1, hi1 = _least(lumas + raw1), _most(lumas + raw1)
        oor1 = np.maximum(g - hi1, lo1 - g) - 0.5 * spread
        sigma1 = _robust_sigma(g - lumas[0])
        core |= oor1 > max(0.08 * side, 1.3 * k * sigma1)
        if one_sided:  # first/last frame of a shot: only trust still areas
            core &= motion < 1.0
        # grow each seed into its faint rim (hysteresis at half the threshold)
        weak = ((oor > 0.5 * thr) | core).astype(np.uint8)
        n, lab = cv2.connectedComponents(weak, connectivity=8)
        keep = np.zeros(n, bool)
        keep[np.unique(lab[core])] = True
        keep[0] = False
        dust = cv2.dilate(keep[lab].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # soft rims
        return dust, reliable

    def _scratches(self, w: Window, mags: list) -> np.ndarray:
        lines = self._lines(w.item)
        near = [self._lines(nb) for nb in w.neighbours(1)]
        if not near:
            return lines
        persist = np.zeros_like(lines)
        for m in near:
            persist |= cv2.dilate(m.astype(np.uint8), np.ones((1, 5), np.uint8)) > 0
        lines = lines & persist
        if mags:  # a line that the moved content of a neighbour explains is a real edge
            lines &= ~(w.item.aux.pop("agree") & (_least(mags) > 1.5))
        return lines

    def detect_and_repair(self, w: Window) -> tuple:
        s = self.s
        it = w.item
        x = it.frame.numpy()
        h, wd, _ = x.shape
        nbs = w.neighbours(s.radius)
        flows = neighbour_flows(it, nbs, s.flow_method)
        mags = [flowlib.flow_magnitude(f) for f in flows]
        dust = reliable = np.zeros((h, wd), bool)
        if flows:
            dust, reliable = self._one_frame(w, flows, mags)
        scratch = self._scratches(w, mags) if s.scratches else np.zeros((h, wd), bool)
        det = dust | scratch
        if "damage" in it.side:  # known damage (a Film Damage mask, a painted mask): repaired too
            det |= as_mask(*it.side["damage"])
        if it.protect is not None:
            det &= ~it.protect
        if not det.any():
            return it.frame, det
        k = 2 * s.grow + 1
        grown = cv2.dilate(det.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        if it.protect is not None:
            grown &= ~it.protect
        out = x.copy()
        lines_near = cv2.dilate(scratch.astype(np.uint8), np.ones((1, k), np.uint8)).astype(bool)
        temporal = grown & ~lines_near
        if flows:
            temporal &= reliable | (cv2.erode(reliable.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
            st = np.stack([sample_at(nb.frame.numpy(), f, temporal) for nb, f in zip(nbs, flows)])
            out[temporal] = st.mean(0) if len(flows) == 2 else np.median(st, 0)
        else:
            temporal[:] = False
        spatial = grown & ~temporal
        lines = spatial & lines_near
        if lines.any():
            fill_rows(out, lines)
        blobs = spatial & ~lines
        if blobs.any():
            inpaint_regions(out, blobs)
        return torch.from_numpy(out), det


def _least(arrays: list) -> np.ndarray:
    return functools.reduce(np.minimum, arrays)


def _most(arrays: list) -> np.ndarray:
    return functools.reduce(np.maximum, arrays)


def dust_scratches(stream: FrameStream, settings: DustSettings = DustSettings(),
                   mask_output: bool = False, protect: FrameStream | None = None,
                   damage: FrameStream | None = None) -> FrameStream:
    """Repaired stream (one pass, a window of ``2*radius+1`` frames). With ``mask_output`` its mask
    is the detection (1 = repaired); otherwise the upstream mask passes through. ``protect``: a
    stream of the same size and length whose mask (or, without one, whose brightness) marks areas
    never to touch (titles, a logo, fine detail the detector mistakes for dirt). ``damage``: the
    same for known damage (Film Damage's mask, a painted mask), repaired besides what is found
    (with ``dust`` and ``scratches`` off: only it)."""
    settings.validate()

    class Worker(DustScratches):
        def process(self, w: Window):
            frame, det = self.detect_and_repair(w)
            if mask_output:
                return frame, torch.from_numpy(det.astype(np.float32))
            return frame, w.item.mask

    info = stream.info.with_(has_mask=True) if mask_output else None
    return centred(stream, "dust_scratches", dict(asdict(settings), mask_output=bool(mask_output)), settings.radius,
                   lambda: Worker(settings), info, companions={"protect": protect, "damage": damage})
