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

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from ..stream import FrameStream
from ..analysis.colourspace import LUMA_601
from ..analysis import flow as flowlib
from ..analysis.window import Item, Window, centred

__all__ = ["DustError", "DustScratches", "DustSettings", "dust_scratches"]

_LUMA = np.array(LUMA_601, np.float32)


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
        if not 0.0 <= self.sensitivity <= 1.0:
            raise DustError(f"sensitivity must be within 0..1, got {self.sensitivity}")
        if self.radius not in (1, 2):
            raise DustError(f"radius must be 1 or 2 frames, got {self.radius}")
        if self.flow_method not in flowlib.METHODS:
            raise DustError(f"flow_method must be one of {', '.join(flowlib.METHODS)}, got '{self.flow_method}'")
        if not 0 <= self.grow <= 8:
            raise DustError(f"grow must be within 0..8 px, got {self.grow}")


def _luma(x: np.ndarray) -> np.ndarray:
    return (x @ _LUMA).astype(np.float32)


def _robust_sigma(d: np.ndarray) -> float:
    a = np.abs(d[::4, ::4]).ravel()
    return float(1.4826 * np.median(a)) if a.size else 0.0


def ridge(g: np.ndarray) -> np.ndarray:
    """Signed thin-line response: > 0 for a line brighter than both sides, < 0 for a darker one."""
    gv = cv2.blur(g, (1, 7))
    best_b = np.zeros_like(g)
    best_d = np.zeros_like(g)
    for d in (2, 3):
        left = np.empty_like(gv)
        right = np.empty_like(gv)
        left[:, d:] = gv[:, :-d]
        left[:, :d] = gv[:, :1]
        right[:, :-d] = gv[:, d:]
        right[:, -d:] = gv[:, -1:]
        best_b = np.maximum(best_b, np.minimum(gv - left, gv - right))
        best_d = np.maximum(best_d, np.minimum(left - gv, right - gv))
    return np.where(best_b >= best_d, best_b, -best_d)


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
        widef = wide.astype(np.float32)
        for slope in SLOPES:
            # shear so that a line of this slope becomes a column, then measure each column's cover
            m = np.float32([[1, slope, -slope * h / 2], [0, 1, 0]])
            sheared = cv2.warpAffine(widef, m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
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

    def detect_and_repair(self, w: Window) -> tuple:
        s = self.s
        it = w.item
        x = it.frame.numpy()
        h, wd, _ = x.shape
        g = it.aux["luma"]
        nbs = w.neighbours(s.radius)
        warped, lumas, mags = [], [], []
        for nb in nbs:
            f = flowlib.estimate_flow(it.aux["small"], nb.aux["small"], s.flow_method, out_size=(h, wd))
            wimg = flowlib.backward_warp(nb.frame.permute(2, 0, 1)[None], f, padding="border")[0]
            wimg = wimg.permute(1, 2, 0).numpy()
            warped.append(wimg)
            lumas.append(_luma(wimg))
            mags.append(flowlib.flow_magnitude(f))
        dust = np.zeros((h, wd), bool)
        reliable = np.zeros((h, wd), bool)
        if lumas:
            # exposure flicker: bring each compensated neighbour to the centre's brightness first
            gm = float(g.mean())
            lumas = [lm * (gm / max(float(lm.mean()), 1e-4)) for lm in lumas]
            one_sided = len({nb.index < it.index for nb in nbs}) < 2
            side = 2.0 if one_sided else 1.0  # one side only: occlusions look like defects
            k = self.k * side
            lo1, hi1 = np.min(lumas, 0), np.max(lumas, 0)
            gb = cv2.blur(g, (3, 3))
            lb = np.stack([cv2.blur(lm, (3, 3)) for lm in lumas])
            sigma = _robust_sigma(gb - lb[0])
            thr = max(0.045 * side, k * sigma)
            lo, hi = lb.min(0), lb.max(0)
            # the nearest neighbours unwarped too: where the flow fails (non-rigid, periodic
            # texture) the content often still matches in place; a speck matches in neither
            raw = [cv2.blur(nb.aux["luma"] * (gm / max(float(nb.aux["luma"].mean()), 1e-4)), (3, 3))
                   for nb in w.neighbours(1)]
            lo_d, hi_d = np.minimum(lo, np.min(raw, 0)), np.maximum(hi, np.max(raw, 0))
            spread = cv2.dilate(hi - lo, np.ones((3, 3), np.uint8)) if len(lumas) > 1 else np.zeros_like(g)
            if s.dust:
                # neighbours that disagree with each other (motion the flow missed) raise the bar
                oor = np.maximum(gb - hi_d, lo_d - gb) - 0.5 * spread
                core = oor > thr
                # thin defects (hairs) lose contrast in the blur: also test the sharp luma, harder
                raw1 = [nb.aux["luma"] * (gm / max(float(nb.aux["luma"].mean()), 1e-4)) for nb in w.neighbours(1)]
                lo1, hi1 = np.minimum(lo1, np.min(raw1, 0)), np.maximum(hi1, np.max(raw1, 0))
                oor1 = np.maximum(g - hi1, lo1 - g) - 0.5 * spread
                sigma1 = _robust_sigma(g - lumas[0])
                core |= oor1 > max(0.08 * side, 1.3 * k * sigma1)
                motion = np.max(np.stack(mags), 0)
                if one_sided:  # first/last frame of a shot: only trust still areas
                    core &= motion < 1.0
                # grow each seed into its faint rim (hysteresis at half the threshold)
                weak = ((oor > 0.5 * thr) | core).astype(np.uint8)
                n, lab = cv2.connectedComponents(weak, connectivity=8)
                keep = np.zeros(n, bool)
                keep[np.unique(lab[core])] = True
                keep[0] = False
                dust = keep[lab]
                dust = cv2.dilate(dust.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # soft rims
            motion = np.max(np.stack(mags), 0)
            reliable = ((hi - lo) < 2.5 * thr) & (motion < s.max_motion)
        scratch = np.zeros((h, wd), bool)
        if s.scratches:
            lines = self._lines(it)
            near = [self._lines(nb) for nb in w.neighbours(1)]
            if near:
                persist = np.zeros_like(lines)
                for m in near:
                    persist |= cv2.dilate(m.astype(np.uint8), np.ones((1, 5), np.uint8)) > 0
                lines = lines & persist
                if lumas:
                    agree = np.min(np.abs(np.stack(lumas) - g[None]), 0) < 0.5 * thr
                    moved = np.min(np.stack(mags), 0) > 1.5
                    lines = lines & ~(agree & moved)
            scratch = lines
        det = dust | scratch
        if it.protect is not None:
            det &= ~it.protect
        if not det.any():
            return it.frame, det
        k = 2 * s.grow + 1
        grown = cv2.dilate(det.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        if it.protect is not None:
            grown &= ~it.protect
        out = x.copy()
        temporal = grown & ~cv2.dilate(scratch.astype(np.uint8), np.ones((1, k), np.uint8)).astype(bool)
        if warped:
            temporal &= reliable | (cv2.erode(reliable.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
            st = np.stack([wi[temporal] for wi in warped])  # only the pixels being repaired
            out[temporal] = st.mean(0) if len(warped) == 2 else np.median(st, 0)
        else:
            temporal[:] = False
        spatial = grown & ~temporal
        lines = spatial & cv2.dilate(scratch.astype(np.uint8), np.ones((1, k), np.uint8)).astype(bool)
        if lines.any():
            out = fill_rows(out, lines)
        blobs = spatial & ~lines
        if blobs.any():
            out = inpaint_regions(out, blobs)
        return torch.from_numpy(np.ascontiguousarray(out)), det


def fill_rows(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill masked pixels along each row by linear interpolation between the nearest unmasked
    pixels on the left and right (thin vertical lines: the right neighbours to use)."""
    h, w = mask.shape
    idx = np.broadcast_to(np.arange(w, dtype=np.int32), (h, w))
    left = np.maximum.accumulate(np.where(mask, -1, idx), axis=1)
    right = np.minimum.accumulate(np.where(mask, w, idx)[:, ::-1], axis=1)[:, ::-1]
    ys, xs = np.nonzero(mask)
    li, ri = left[ys, xs], right[ys, xs]
    has_l, has_r = li >= 0, ri < w
    li, ri = np.clip(li, 0, w - 1), np.clip(ri, 0, w - 1)
    t = np.where(has_l & has_r, (xs - li) / np.maximum(ri - li, 1), np.where(has_l, 0.0, 1.0))[:, None]
    out = x.copy()
    out[ys, xs] = (x[ys, li] * (1 - t) + x[ys, ri] * t).astype(x.dtype)
    return out


def inpaint_regions(x: np.ndarray, mask: np.ndarray, pad: int = 8) -> np.ndarray:
    """OpenCV (Telea) inpainting of each masked blob inside its own padded box (cheap for specks)."""
    h, w = mask.shape
    out = x.copy()
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    for bx, by, bw, bh, _ in stats[1:]:
        x0, y0 = max(0, bx - pad), max(0, by - pad)
        x1, y1 = min(w, bx + bw + pad), min(h, by + bh + pad)
        m = mask[y0:y1, x0:x1]
        u8 = np.clip(out[y0:y1, x0:x1] * 255 + 0.5, 0, 255).astype(np.uint8)
        fill = cv2.inpaint(u8, m.astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float32) / 255
        region = out[y0:y1, x0:x1]
        region[m] = fill[m]
    return out


def dust_scratches(stream: FrameStream, settings: DustSettings = DustSettings(),
                   mask_output: bool = False, protect: FrameStream | None = None) -> FrameStream:
    """Repaired stream (one pass, a window of ``2*radius+1`` frames). With ``mask_output`` its mask
    is the detection (1 = repaired); otherwise the upstream mask passes through. ``protect``: a
    stream of the same size and length whose mask (or, without one, whose brightness) marks areas
    never to touch (titles, a logo, fine detail the detector mistakes for dirt)."""
    settings.validate()

    class Worker(DustScratches):
        def process(self, w: Window):
            frame, det = self.detect_and_repair(w)
            if mask_output:
                return frame, torch.from_numpy(det.astype(np.float32))
            return frame, w.item.mask

    info = stream.info.with_(has_mask=True) if mask_output else None
    return centred(stream, "dust_scratches", dict(asdict(settings), mask_output=bool(mask_output)), settings.radius,
                   lambda: Worker(settings), info, companions={"protect": protect})
