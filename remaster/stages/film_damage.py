"""Film and tape damage simulator: seeded, physically motivated, deterministic per frame.

Every random draw for frame ``i`` comes from a generator seeded with ``(seed, defect, i)`` (or,
for scratches that live over many frames, with ``(seed, defect, segment)`` where segments are
fixed runs of frames), so a frame looks the same whatever the chunking and whichever range is
rendered. Sizes are given for a 720-line picture and scale with the frame height.

Film (order of the physical process, camera to projector):
  softness (lens/printing generations) → dye fading (per-channel density loss of the three dye
  layers, then chroma loss in Lab) → gate weave and jitter (the film moves in the gate) →
  blotches (water marks, mould) → line scratches (guides and rollers scrape along the travel, at a
  small angle that depends on the gauge; they last many frames, drift and vary in depth) → dust,
  dirt and hairs (one frame each, dark on the print, bright when on the negative) → vignetting →
  exposure flicker → silver grain (luminance dependent, :func:`remaster.analysis.filmstock.grain`).
Tape (VHS, early DV): horizontal-streaky luma noise, chroma bandwidth loss (bleed) and delay,
noise bands with a colour shift, dropouts (short bright streaks; 8×8 block errors for DV) and
head-switching noise (skewed, noisy bottom lines).

:func:`damage_frame` returns the damaged frame and a dict of masks per local defect
(``scratch``, ``dust``, ``blotch``, ``tape``); :func:`film_damage` is the stream stage, whose
output carries the union of those masks as its mask when ``mask_output`` is set.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np
import torch

from ..stream import FrameStream
from ..analysis.filmstock import STOCKS, grain as add_grain  # noqa: F401  (STOCKS: the presets' dyes)
from ..analysis.colourspace import YCC_601

__all__ = ["PRESETS", "STOCKS", "DamageError", "DamageSettings", "damage_frame", "fade", "film_damage"]


class DamageError(ValueError):
    pass


# dye fading per stock: density kept by the cyan, magenta, yellow dye layers (red, green, blue
# channels) at full fading, base fog/stain density added per channel, and chroma kept (Lab)

# per-gauge defaults (strengths at severity 1, sizes for a 720-line frame)
PRESETS = {
    "8mm": dict(kind="film", stock="ektachrome", scratch_rate=0.05, scratch_slope=0.030, dust=14, hairs=0.4,
                blotches=0.5, grain=0.055, grain_size=2.2, weave=2.6, flicker=0.07, vignette=0.35, softness=1.3),
    "16mm": dict(kind="film", stock="eastmancolor", scratch_rate=0.04, scratch_slope=0.018, dust=11, hairs=0.3,
                 blotches=0.35, grain=0.04, grain_size=1.6, weave=1.5, flicker=0.045, vignette=0.2, softness=0.8),
    "35mm": dict(kind="film", stock="eastmancolor", scratch_rate=0.03, scratch_slope=0.008, dust=7, hairs=0.2,
                 blotches=0.2, grain=0.025, grain_size=1.2, weave=0.7, flicker=0.025, vignette=0.1, softness=0.4),
    "vhs": dict(kind="tape", noise=0.025, bleed=4.0, delay=2.5, bands=0.25, dropouts=2.0, head_switch=0.018,
                softness=1.0, subsample=2),
    "dv": dict(kind="tape", noise=0.008, bleed=1.0, delay=0.0, bands=0.0, dropouts=0.6, head_switch=0.0,
               softness=0.3, subsample=4),
}


@dataclass(frozen=True)
class DamageSettings:
    """``severity`` scales every defect; each other strength multiplies the preset's own (0 = off)."""

    preset: str = "16mm"
    severity: float = 1.0
    seed: int = 0
    stock: str = "preset"
    fading: float = 1.0
    scratches: float = 1.0
    dust: float = 1.0
    hairs: float = 1.0
    blotches: float = 1.0
    grain: float = 1.0
    weave: float = 1.0
    flicker: float = 1.0
    vignette: float = 1.0
    softness: float = 1.0
    tape_noise: float = 1.0
    noise_bands: float = 1.0
    chroma_bleed: float = 1.0
    dropouts: float = 1.0
    head_switching: float = 1.0

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise DamageError(f"preset must be one of {', '.join(PRESETS)}, got '{self.preset}'")
        if self.stock != "preset" and self.stock not in STOCKS:
            raise DamageError(f"stock must be 'preset' or one of {', '.join(STOCKS)}, got '{self.stock}'")
        for k, v in asdict(self).items():
            if k in ("preset", "stock", "seed"):
                continue
            if not 0.0 <= float(v) <= 4.0:
                raise DamageError(f"{k} must be within 0..4, got {v}")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) & 0xFFFFFFFF for k in keys]])


def _srgb_to_lab(x: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(x, dtype=np.float32), cv2.COLOR_RGB2Lab)


def _lab_to_srgb(x: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(x, dtype=np.float32), cv2.COLOR_Lab2RGB)


def fade(x: np.ndarray, stock: str, amount: float) -> np.ndarray:
    """Dye fading of a display-referred frame ``[H,W,3]``: each dye layer keeps a fraction of its
    density (a power law per channel), stain adds base density, then chroma drops in Lab."""
    s = STOCKS[stock]
    if amount <= 0 or stock == "none":
        return x
    keep = 1.0 - amount * (1.0 - np.asarray(s["keep"], np.float32))
    fog = amount * np.asarray(s["fog"], np.float32)
    d = -np.log10(np.clip(x, 1e-4, 1.0))
    y = np.power(10.0, -(d * keep + fog)).astype(np.float32)
    chroma = 1.0 - amount * (1.0 - s["chroma"])
    if chroma < 1.0:
        lab = _srgb_to_lab(np.clip(y, 0, 1))
        lab[..., 1:] *= chroma
        y = _lab_to_srgb(lab)
    return np.clip(y, 0.0, 1.0)


# ---- film defects -----------------------------------------------------------------------------
SCRATCH_SEGMENT = 16
SCRATCH_MAX_LIFE = 120


def _scratches(h: int, w: int, index: int, p: dict, st: DamageSettings, scale: float) -> tuple:
    """Additive layer and mask of the line scratches alive at ``index``."""
    layer = np.zeros((h, w), np.float32)
    rate = p["scratch_rate"] * st.scratches * st.severity  # new scratches per frame
    if rate <= 0:
        return layer, np.zeros((h, w), bool)
    k_hi = index // SCRATCH_SEGMENT
    k_lo = (index - SCRATCH_MAX_LIFE) // SCRATCH_SEGMENT  # scratches made before the first frame too
    ys_all = np.arange(h, dtype=np.float32)
    for k in range(k_lo, k_hi + 1):
        g = _rng(st.seed, 11, k)
        for _ in range(g.poisson(rate * SCRATCH_SEGMENT)):
            start = k * SCRATCH_SEGMENT + int(g.integers(SCRATCH_SEGMENT))
            life = int(g.integers(12, SCRATCH_MAX_LIFE))
            x0 = float(g.uniform(0.03, 0.97) * w)
            drift = float(g.normal(0, 0.15)) * scale
            slope = p["scratch_slope"] * float(g.uniform(0.4, 1.2)) * (1 if g.random() < 0.5 else -1)
            width = float(g.uniform(0.6, 1.6)) * max(scale, 0.5)
            depth = float(g.uniform(0.25, 0.7)) * (1 if g.random() < 0.75 else -0.8)  # mostly bright (base scratch)
            # the film runs continuously past the guide, so a scratch crosses whole frames; only in
            # its first and last frame does it start or end part-way down
            ya, yb = (float(v) * h for v in g.uniform(0, 1, 2))  # always drawn: the sequence stays fixed
            y0 = ya if index == start else 0.0
            y1 = yb if index == start + life - 1 else float(h)
            if y1 <= y0:
                y0, y1 = 0.0, float(h)
            ph, fr = float(g.uniform(0, 6.3)), float(g.uniform(1.5, 4.0))
            if not start <= index < start + life:
                continue
            t = index - start
            fg = _rng(st.seed, 12, k, index)  # per-frame wobble of this scratch
            xc = x0 + drift * t + float(fg.normal(0, 0.25)) * scale
            rows = (ys_all >= y0) & (ys_all < y1)
            ys = ys_all[rows]
            cx = xc + slope * (ys - h / 2)
            # depth varies along the scratch (uneven pressure) and a little from frame to frame
            mod = 0.75 + 0.25 * np.sin(ys / h * fr * 2 * np.pi + ph + 0.3 * t)
            amp = depth * float(fg.uniform(0.85, 1.1)) * mod
            half = int(math.ceil(3 * width)) + 1
            for dx in range(-half, half + 1):
                xs = np.floor(cx).astype(np.int64) + dx
                ok = (xs >= 0) & (xs < w)
                prof = np.exp(-((xs - cx) / width) ** 2)
                layer[ys[ok].astype(np.int64), xs[ok]] += (amp * prof)[ok]
    return layer, np.abs(layer) > 0.05


def _dust(h: int, w: int, index: int, p: dict, st: DamageSettings, scale: float) -> tuple:
    """Alpha and target value layers of one-frame dust, dirt and hairs."""
    g = _rng(st.seed, 21, index)
    alpha = np.zeros((h, w), np.float32)
    target = np.zeros((h, w), np.float32)
    area = (h * w) / (720 * 1280)
    n = g.poisson(p["dust"] * st.dust * st.severity * area)
    for _ in range(n):
        a = np.zeros((h, w), np.uint8)
        cx, cy = float(g.uniform(0, w)), float(g.uniform(0, h))
        r = float(np.clip(g.lognormal(0.9, 0.6), 1.0, 12.0)) * scale
        for _ in range(int(g.integers(1, 4))):  # dirt: a few overlapping blobs
            ox, oy = g.normal(0, r * 0.5, 2)
            ax = max(1, int(round(r * g.uniform(0.5, 1.1))))
            ay = max(1, int(round(r * g.uniform(0.3, 1.0))))
            cv2.ellipse(a, (int((cx + ox) * 4), int((cy + oy) * 4)), (ax * 4, ay * 4), float(g.uniform(0, 180)),
                        0, 360, 255, -1, cv2.LINE_AA, 2)
        _paint(alpha, target, a, g, bright_p=0.25)
    nh = g.poisson(p["hairs"] * st.hairs * st.severity * max(area, 0.25))
    for _ in range(nh):
        a = np.zeros((h, w), np.uint8)
        pts = [np.array([g.uniform(0, w), g.uniform(0, h)])]
        length = float(g.uniform(20, 90)) * scale
        ang = float(g.uniform(0, 2 * np.pi))
        for _ in range(8):  # a wandering, curling path
            ang += float(g.normal(0, 0.5))
            pts.append(pts[-1] + length / 8 * np.array([np.cos(ang), np.sin(ang)]))
        poly = (np.array(pts) * 4).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(a, [poly], False, 255, max(1, int(round(1.2 * scale))), cv2.LINE_AA, 2)
        _paint(alpha, target, a, g, bright_p=0.1)
    return alpha, target


def _paint(alpha, target, a_u8, g, bright_p: float) -> None:
    a = a_u8.astype(np.float32) / 255.0 * float(g.uniform(0.65, 1.0))
    bright = g.random() < bright_p
    value = float(g.uniform(0.85, 1.0)) if bright else float(g.uniform(0.0, 0.12))
    sel = a > alpha
    alpha[sel] = a[sel]
    target[sel] = value


def _blotches(h: int, w: int, index: int, p: dict, st: DamageSettings, scale: float) -> np.ndarray:
    """Additive brightness layer of one-frame blotches (water marks, emulsion damage)."""
    g = _rng(st.seed, 31, index)
    layer = np.zeros((h, w), np.float32)
    for _ in range(g.poisson(p["blotches"] * st.blotches * st.severity)):
        a = np.zeros((h, w), np.uint8)
        r = float(g.uniform(10, 45)) * scale
        c = (int(g.uniform(0, w) * 4), int(g.uniform(0, h) * 4))
        axes = (int(r * 4), int(r * g.uniform(0.4, 1.0) * 4))
        cv2.ellipse(a, c, axes, float(g.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA, 2)
        soft = cv2.GaussianBlur(a.astype(np.float32) / 255.0, (0, 0), max(1.0, r * 0.25))
        layer += soft * float(g.uniform(0.12, 0.3)) * (1 if g.random() < 0.5 else -1)
    return layer


def _weave(index: int, p: dict, st: DamageSettings, scale: float) -> tuple:
    """Gate weave (a few-frame periodic sway, mostly horizontal) plus per-frame jitter, in pixels."""
    amp = p.get("weave", 0.0) * st.weave * st.severity * scale
    if amp <= 0:
        return 0.0, 0.0
    g0 = _rng(st.seed, 41, 0)
    period, phase = float(g0.uniform(5, 9)), float(g0.uniform(0, 6.3))
    j = _rng(st.seed, 42, index).normal(0, 1, 2)
    dx = amp * (0.7 * math.sin(2 * math.pi * index / period + phase) + 0.5 * float(j[0]))
    dy = amp * 0.6 * (0.4 * math.sin(2 * math.pi * index / (period * 1.7) + phase * 2) + 0.6 * float(j[1]))
    return dx, dy


def _flicker(index: int, p: dict, st: DamageSettings) -> float:
    amp = p.get("flicker", 0.0) * st.flicker * st.severity
    if amp <= 0:
        return 1.0
    j = float(np.clip(_rng(st.seed, 51, index).normal(), -2.5, 2.5))
    return 1.0 + amp * (0.7 * j + 0.3 * math.sin(index * 0.9))


# ---- tape defects -----------------------------------------------------------------------------
_YCC = np.array(YCC_601, np.float32)
_RGB = np.linalg.inv(_YCC).astype(np.float32)


def _tape(x: np.ndarray, index: int, p: dict, st: DamageSettings, scale: float) -> tuple:
    h, w, _ = x.shape
    g = _rng(st.seed, 61, index)
    sev = st.severity
    mask = np.zeros((h, w), bool)
    ycc = x @ _YCC.T
    y, c = ycc[..., 0], ycc[..., 1:]
    # chroma: bandwidth loss (horizontal subsampling and bleed) and delay behind the luma
    sub = p["subsample"]
    if sub > 1:
        small = cv2.resize(c, (max(1, w // sub), h), interpolation=cv2.INTER_AREA)
        c = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    bleed = p["bleed"] * st.chroma_bleed * sev * scale
    if bleed > 0.3:
        c = cv2.GaussianBlur(c, (0, 0), sigmaX=bleed, sigmaY=0.01)
    delay = p["delay"] * st.chroma_bleed * sev * scale
    if delay > 0:
        m = np.float32([[1, 0, delay], [0, 1, 0]])
        c = cv2.warpAffine(c, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # luma noise, streaky along the lines
    nz = p["noise"] * st.tape_noise * sev
    if nz > 0:
        n = g.normal(0, 1, (h, max(1, w // 3))).astype(np.float32)
        y = y + cv2.resize(n, (w, h), interpolation=cv2.INTER_LINEAR) * nz
    # noise bands: a few lines of heavy noise with a colour shift
    if g.random() < p["bands"] * st.noise_bands * sev:
        bh = max(2, int(g.uniform(4, 18) * scale))
        y0 = int(g.uniform(0, h - bh))
        sl = slice(y0, y0 + bh)
        sparkle = (g.random((bh, w)) < 0.35).astype(np.float32) * g.uniform(0.3, 0.8, (bh, w)).astype(np.float32)
        y[sl] = y[sl] * 0.6 + sparkle + 0.1
        c[sl] += np.float32(g.normal(0, 0.08, 2))
        mask[sl] = True
    # dropouts: bright streaks (VHS) or 8x8 block errors (DV)
    nd = g.poisson(p["dropouts"] * st.dropouts * sev)
    for _ in range(nd):
        if p["subsample"] >= 4:
            by, bx = int(g.integers(0, max(1, h // 8))) * 8, int(g.integers(0, max(1, w // 8))) * 8
            ln = int(g.integers(1, 5)) * 8
            y[by:by + 8, bx:bx + ln] = float(g.uniform(0.2, 0.9))
            c[by:by + 8, bx:bx + ln] = np.float32(g.normal(0, 0.1, 2))
            mask[by:by + 8, bx:bx + ln] = True
        else:
            ry, rx = int(g.integers(0, h)), int(g.integers(0, w))
            ln, th = int(g.uniform(10, 120) * scale), int(g.integers(1, 3))
            y[ry:ry + th, rx:rx + ln] = np.float32(g.uniform(0.8, 1.0))
            c[ry:ry + th, rx:rx + ln] *= 0.2
            mask[ry:ry + th, rx:rx + ln] = True
    # head switching: the bottom lines skew sideways and carry noise
    hs = p["head_switch"] * st.head_switching * min(sev, 1.5)
    if hs > 0:
        n_lines = max(2, int(round(hs * h)))
        for k, row in enumerate(range(h - n_lines, h)):
            shift = int(round((k + 1) / n_lines * g.uniform(6, 20) * scale))
            y[row] = np.roll(y[row], shift) + g.normal(0, 0.06, w).astype(np.float32)
            c[row] = np.roll(c[row], shift, axis=0)
        mask[h - n_lines:] = True
    out = np.concatenate([y[..., None], c], -1) @ _RGB.T
    return np.clip(out, 0, 1).astype(np.float32), mask


# ---- one frame --------------------------------------------------------------------------------
def damage_frame(x: np.ndarray, index: int, st: DamageSettings) -> tuple:
    """Damage one frame ``[H,W,3]`` float 0..1 (frame number ``index``). Returns ``(frame, masks)``."""
    st.validate()
    p = PRESETS[st.preset]
    h, w, _ = x.shape
    scale = h / 720.0
    x = np.asarray(x, np.float32).copy()
    masks = {}
    soft = p.get("softness", 0.0) * st.softness * min(st.severity, 1.5) * max(scale, 0.4)
    if soft > 0.2:
        if p["kind"] == "tape":
            x = cv2.GaussianBlur(x, (0, 0), sigmaX=soft, sigmaY=0.01)
        else:
            x = cv2.GaussianBlur(x, (0, 0), soft)
    if p["kind"] == "tape":
        x, masks["tape"] = _tape(x, index, p, st, scale)
        return x, masks
    stock = p["stock"] if st.stock == "preset" else st.stock
    x = fade(x, stock, min(1.0, st.fading * st.severity))
    dx, dy = _weave(index, p, st, scale)
    if dx or dy:
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        x = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    bl = _blotches(h, w, index, p, st, scale)
    x = x + bl[..., None]
    masks["blotch"] = np.abs(bl) > 0.04
    sc, masks["scratch"] = _scratches(h, w, index, p, st, scale)
    x = x + sc[..., None]
    alpha, target = _dust(h, w, index, p, st, scale)
    x = x * (1 - alpha[..., None]) + target[..., None] * alpha[..., None]
    masks["dust"] = alpha > 0.15
    v = p["vignette"] * st.vignette * st.severity
    if v > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2) / (w / 2)) ** 2 * 0.6 + ((yy - h / 2) / (h / 2)) ** 2 * 0.4
        x = x * (1 - v * np.clip(r2, 0, 1.5) ** 1.5 * 0.6)[..., None]
    x = np.clip(x * _flicker(index, p, st), 0, 1)
    ga = p["grain"] * st.grain * st.severity
    if ga > 0:
        t = add_grain(torch.from_numpy(x)[None], index, ga, max(0.5, p["grain_size"] * max(scale, 0.5)), 0.15,
                      st.seed)
        x = t[0].numpy()
    return x.astype(np.float32), masks


def film_damage(stream: FrameStream, settings: DamageSettings, mask_output: bool = False) -> FrameStream:
    """The damaged stream. With ``mask_output`` its mask is where local damage was put (scratches,
    dust, hairs, blotches, tape defects); otherwise the upstream mask passes through."""
    settings.validate()

    def make():
        def fn(chunk):
            frames, masks = [], []
            for k in range(len(chunk)):
                f, m = damage_frame(chunk.frames[k].numpy(), chunk.start + k, settings)
                frames.append(torch.from_numpy(f))
                if mask_output:
                    u = np.zeros(f.shape[:2], bool)
                    for v in m.values():
                        u |= v
                    masks.append(torch.from_numpy(u.astype(np.float32)))
            out = torch.stack(frames)
            mask = torch.stack(masks) if mask_output else chunk.mask
            return chunk.with_(frames=out, mask=mask)
        return fn

    info = stream.info.with_(has_mask=True) if mask_output else None
    params = dict(asdict(settings), mask_output=bool(mask_output))
    return stream.map("film_damage", params, make, info=info)


def with_severity(settings: DamageSettings, severity: float) -> DamageSettings:
    return replace(settings, severity=float(severity))
