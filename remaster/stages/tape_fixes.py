"""Tape Fixes: the defects of analogue and early digital tape, in one pass.

* Chroma delay: the horizontal offset between colour and luma edges is found per frame by
  correlating the horizontal gradient magnitude of the luma with that of the chroma (whole-pixel
  search ±12 px, parabolic sub-pixel peak), averaged over the window, and the chroma is moved back.
* Chroma bleed: the smeared chroma is re-fitted to the luma with a guided filter (local linear
  model ``C ≈ a·Y + b`` on a small window), which snaps colour edges back onto luma edges.
* Noise bands and dropouts: lines whose fine-detail energy is far above the frame's typical
  level (bands) and short horizontal streaks much brighter than the lines above and below
  (dropouts) are masked; they are filled from the motion-compensated neighbouring frames where
  those agree, otherwise from the neighbouring lines (inpainting).
* Head-switching noise: the bottom lines whose line-to-line difference jumps are found (or a
  fixed count is used) and either blacked out, inpainted from above, or cropped away with the
  rest stretched back to full height.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from ..stream import FrameStream
from ..analysis import flow as flowlib
from ..analysis.repair import from_ycc, inpaint_regions, neighbour_flows, sample_at, to_ycc
from ..analysis.window import Item, Window, centred
from ..analysis.checks import one_of, within

__all__ = ["HEAD_MODES", "TapeError", "TapeSettings", "chroma_delay", "tape_fixes"]

HEAD_MODES = ("off", "black", "inpaint", "crop")


class TapeError(ValueError):
    """Tape Fixes got a bad setting or a protect mask that does not fit the stream."""


@dataclass(frozen=True)
class TapeSettings:
    chroma_delay: bool = True
    chroma_sharpen: float = 1.0  # 0..1 mix of the guided-filter chroma
    dropouts: bool = True
    bands: bool = True
    sensitivity: float = 0.5
    head_switch: str = "inpaint"
    head_lines: float = 0.02  # fraction of the height; 0 = detect
    radius: int = 1

    def validate(self) -> None:
        one_of(TapeError, "head_switch", self.head_switch, HEAD_MODES)
        within(TapeError, "head_lines", self.head_lines, 0, 0.1, " of the height")
        within(TapeError, "chroma_sharpen", self.chroma_sharpen, 0, 1)
        within(TapeError, "sensitivity", self.sensitivity, 0, 1)
        within(TapeError, "radius", self.radius, 0, 2, " frames")


def chroma_delay(ycc: np.ndarray, search: int = 12) -> float:
    """Horizontal shift (px, + = chroma lags to the right) of the chroma against the luma
    (measured on every other line: a horizontal shift needs no more)."""
    ycc = ycc[::2]
    gy = np.abs(np.diff(ycc[..., 0], axis=1))
    gc = np.abs(np.diff(ycc[..., 1], axis=1)) + np.abs(np.diff(ycc[..., 2], axis=1))
    gy = cv2.GaussianBlur(gy, (0, 0), 2.0) - gy.mean()
    gc = cv2.GaussianBlur(gc, (0, 0), 2.0) - gc.mean()
    w = gy.shape[1]
    scores = []
    for s in range(-search, search + 1):
        a = gy[:, max(0, -s):w - max(0, s)]
        b = gc[:, max(0, s):w - max(0, -s) if s < 0 else w]
        b = b[:, :a.shape[1]]
        scores.append(float((a * b).mean()))
    scores = np.array(scores)
    k = int(scores.argmax())
    off = 0.0
    if 0 < k < len(scores) - 1:
        den = scores[k - 1] - 2 * scores[k] + scores[k + 1]
        off = 0.5 * (scores[k - 1] - scores[k + 1]) / den if abs(den) > 1e-12 else 0.0
    return float(k - search + off)


def guided(guide: np.ndarray, src: np.ndarray, r: int = 3, eps: float = 1e-3, sub: int = 2) -> np.ndarray:
    """Guided filter (box windows of ``(2r+1)²``) of ``src`` ``[H,W,C]`` with a grey ``guide``; the
    local linear coefficients are fitted on a copy shrunk ``sub`` times and applied at full size
    (the fast guided filter: chroma has far less detail than the luma that guides it)."""
    h, w = guide.shape
    if sub > 1:
        size = (max(1, w // sub), max(1, h // sub))
        g = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
        p = cv2.resize(src, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        r = max(1, round(r / sub))
    else:
        g, p = guide, src
    k = (2 * r + 1, 2 * r + 1)
    mi = cv2.blur(g, k)
    vi = cv2.blur(g * g, k) - mi * mi
    out = np.empty_like(src)
    for c in range(src.shape[-1]):
        pc = p[..., c]
        mp = cv2.blur(pc, k)
        cov = cv2.blur(g * pc, k) - mi * mp
        a = cov / (vi + eps)
        b = mp - a * mi
        a, b = cv2.blur(a, k), cv2.blur(b, k)
        if sub > 1:
            a = cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
            b = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
        out[..., c] = a * guide + b
    return out


def head_switch_rows(y: np.ndarray, max_frac: float = 0.06) -> int:
    """How many bottom lines carry head-switching noise (0 if none)."""
    h = y.shape[0]
    d = np.abs(np.diff(y, axis=0)).mean(1)  # d[i] = line i+1 vs line i
    typical = float(np.median(d)) + 1e-4
    n = 0
    for i in range(h - 2, max(0, h - 2 - int(max_frac * h)), -1):
        if d[i] > 2.5 * typical or (n and d[i] > 1.5 * typical):
            n = h - 1 - i + 1
        else:
            break
    return n


class TapeFixer:
    def __init__(self, s: TapeSettings) -> None:
        s.validate()
        self.s = s
        self.k = 6.0 - 4.0 * s.sensitivity

    def prepare(self, item: Item, first: bool) -> dict:
        x = item.frame.numpy()
        ycc = to_ycc(x)
        aux = {"small": flowlib.to_gray_u8(x, 480), "ycc": ycc}
        if self.s.chroma_delay:
            aux["delay"] = chroma_delay(ycc)
        if self.s.head_switch != "off" and self.s.head_lines == 0:
            aux["head"] = head_switch_rows(ycc[..., 0])
        return aux

    def _defects(self, y: np.ndarray) -> np.ndarray:
        h, w = y.shape
        mask = np.zeros((h, w), bool)
        if self.s.bands:
            hf = np.abs(y - cv2.blur(y, (5, 1))).mean(1)
            med = float(np.median(hf)) + 1e-4
            rows = hf > self.k * 0.6 * med + 0.01
            rows = cv2.dilate(rows.astype(np.uint8)[:, None], np.ones((3, 1), np.uint8))[:, 0] > 0
            mask[rows] = True
        if self.s.dropouts:
            up = np.roll(y, 2, axis=0)
            dn = np.roll(y, -2, axis=0)
            bright = np.minimum(y - up, y - dn) > 0.05 * self.k
            streak = cv2.morphologyEx(bright.astype(np.uint8), cv2.MORPH_OPEN, np.ones((1, 7), np.uint8)) > 0
            mask |= cv2.dilate(streak.astype(np.uint8), np.ones((3, 5), np.uint8)) > 0
        return mask

    def process(self, w: Window) -> tuple:
        s = self.s
        it = w.item
        x = it.frame.numpy()
        h, wd, _ = x.shape
        ycc = it.aux.pop("ycc")
        y, c = ycc[..., 0], ycc[..., 1:]
        if s.chroma_delay:
            d = float(np.median([i.aux["delay"] for i in w.items]))
            if abs(d) > 0.25:
                m = np.float32([[1, 0, -d], [0, 1, 0]])
                c = cv2.warpAffine(c, m, (wd, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if s.chroma_sharpen > 0:
            c = c + (guided(y, c) - c) * s.chroma_sharpen
        out = np.clip(from_ycc(np.concatenate([y[..., None], c], -1)), 0, 1)
        mask = self._defects(y)
        if mask.any():
            nbs = w.neighbours(s.radius)
            rep = np.zeros_like(mask)
            if nbs:
                # the neighbours carried onto this frame, at the damaged pixels only
                st = np.stack([sample_at(nb.frame.numpy(), f, mask) for nb, f in zip(nbs, neighbour_flows(it, nbs))])
                med = np.median(st, 0) if len(nbs) > 2 else st.mean(0)
                # a neighbour's pixel is usable where that neighbour is not itself damaged there
                agree = (st.max(0) - st.min(0)).max(-1) < 0.12
                rep[mask] = agree
                out[rep] = med[agree]
            rest = mask & ~rep
            if rest.any():
                inpaint_regions(out, rest)
        if s.head_switch != "off":
            n = int(round(s.head_lines * h)) if s.head_lines > 0 else int(max(i.aux.get("head", 0) for i in w.items))
            if 0 < n < h // 4:
                if s.head_switch == "black":
                    out[h - n:] = 0.0
                elif s.head_switch == "inpaint":
                    hm = np.zeros((h, wd), bool)
                    hm[h - n:] = True
                    inpaint_regions(out, hm)
                else:
                    out = cv2.resize(out[:h - n], (wd, h), interpolation=cv2.INTER_LINEAR)
                    if it.mask is not None:
                        mk = cv2.resize(it.mask.numpy()[:h - n], (wd, h), interpolation=cv2.INTER_LINEAR)
                        return torch.from_numpy(np.ascontiguousarray(out)), torch.from_numpy(mk)
        return torch.from_numpy(np.ascontiguousarray(out)), it.mask


def tape_fixes(stream: FrameStream, settings: TapeSettings = TapeSettings(),
               protect: FrameStream | None = None) -> FrameStream:
    """The repaired stream (one pass, a centred window of ``2*radius+1`` frames, cut-aware).
    ``protect``: same size and length; its mask (or brightness) marks pixels left as they came."""
    settings.validate()
    return centred(stream, "tape_fixes", asdict(settings), settings.radius, lambda: TapeFixer(settings),
                   companions={"protect": protect})
