"""Automatic light and colour: white balance, auto levels, exposure/gamma toward a target
mid-grey, local contrast (CLAHE on lightness), saturation and vibrance with skin-tone protection,
optionally separate for the person (stream mask) and the background.

Nothing here is decided frame by frame. A few numbers are measured per frame on a
thumbnail (mean colours, brightest-patch colour, luma percentiles), those numbers are smoothed
over time inside each shot (reset at scene cuts) by :mod:`remaster.analysis.shotstats`, and the
correction parameters derived from them change slowly or not at all within a shot, so the
correction itself cannot flicker. Nothing upstream runs twice: the numbers are measured on the
cheapest point that has the same frames (the decoder, when only mask stages are in between), or
frames are held back until their numbers are final (:func:`remaster.analysis.shotstats.shot_smoothed`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import cv2
import numpy as np
import torch

from .. import host
from ..stream import Chunk, FrameStream
from ..analysis import shotstats
from ..analysis.colourspace import LUMA_709 as LUMA
from ..analysis.colourspace import linear_to_srgb, srgb_to_linear
from ..analysis.curves import apply_1d, roll_off_pixels

WHITE_BALANCE = ("grey_world", "white_patch", "region", "off")
TEMPORAL = ("smooth", "per_shot")
MASK_MODES = ("ignore", "separate", "person_only", "background_only")
# a typical skin tone (display RGB); its hue in the Cb/Cr plane is what skin protection spares
_SKIN_RGB = (0.80, 0.58, 0.47)


class ColourError(ValueError):
    """Auto Colour got a setting it cannot use (the message names the input and what is accepted)."""


@dataclass(frozen=True)
class AutoColourSettings:
    white_balance: str = "white_patch"
    wb_strength: float = 0.8
    region: tuple = (0.0, 0.0, 0.0, 0.0)  # x, y, w, h as fractions of the frame (for "region")
    levels_strength: float = 1.0
    black_percentile: float = 0.5
    white_percentile: float = 99.5
    exposure_strength: float = 0.5
    target_grey: float = 0.46  # display value of the mid-grey target (0.46 ~ 18 % linear)
    local_contrast: float = 0.0  # CLAHE amount 0..1
    clahe_clip: float = 2.0
    saturation: float = 0.0  # -1..1
    vibrance: float = 0.15  # -1..1
    skin_protect: float = 0.7  # 0..1
    temporal: str = "smooth"
    smoothing_seconds: float = 2.0
    mask_mode: str = "ignore"
    strength: float = 1.0

    def validate(self) -> "AutoColourSettings":
        if self.white_balance not in WHITE_BALANCE:
            raise ColourError(f"white_balance must be one of {', '.join(WHITE_BALANCE)}, got '{self.white_balance}'")
        if self.temporal not in TEMPORAL:
            raise ColourError(f"temporal must be one of {', '.join(TEMPORAL)}, got '{self.temporal}'")
        if self.mask_mode not in MASK_MODES:
            raise ColourError(f"mask_mode must be one of {', '.join(MASK_MODES)}, got '{self.mask_mode}'")
        if not 0.0 <= self.black_percentile < self.white_percentile <= 100.0:
            raise ColourError("black_percentile must be below white_percentile, both within 0..100")
        if not 0.05 <= self.target_grey <= 0.95:
            raise ColourError(f"target_grey must be within 0.05..0.95, got {self.target_grey}")
        if self.white_balance == "region":
            x, y, w, h = (float(v) for v in self.region)
            if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > 1.0001 or y + h > 1.0001:
                raise ColourError(
                    "white_balance 'region' needs region_x, region_y, region_w, region_h as fractions of "
                    "the frame (0..1) with a non-empty area inside it: pick a patch that should be neutral grey"
                )
        return self


# ---------------------------------------------------------------------------------------------
# measuring (per frame, on thumbnails)
# ---------------------------------------------------------------------------------------------
# stats layout per region (all, or foreground/background): grey-world mean (3), white patch (3),
# picked region mean (3), luma percentiles black/white/median (3)
N_STATS = 12


def _stats(thumb: torch.Tensor, weight: torch.Tensor, s: AutoColourSettings,
           region: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Numbers for thumbnails ``[n, h, w, 3]`` (display values); ``weight`` ``[n, h, w]`` (0/1)
    selects the pixels that count (the person or the background when a mask is used)."""
    n, h, w, _ = thumb.shape
    px = thumb.reshape(n, -1, 3).float()
    wt = weight.reshape(n, -1).float()
    luma = px @ torch.tensor(LUMA)
    lin = srgb_to_linear(px)
    usable = wt * ((px.amax(-1) < 0.985) & (luma > 0.02)).float()
    few = usable.sum(1, keepdim=True) < 16  # nearly all clipped or black: use every selected pixel
    usable = torch.where(few, wt, usable)
    usable = torch.where(usable.sum(1, keepdim=True) <= 0, torch.ones_like(usable), usable)
    # skin is rarely neutral: judge skin on a first, rough correction (so a warm cast does not make
    # every pixel look like skin), then leave skin out of both estimates
    rough = _near_grey_mean(lin, usable)
    rough_px = linear_to_srgb(lin * ((rough @ torch.tensor(LUMA)).unsqueeze(-1) / rough.clamp(min=1e-6)).unsqueeze(1))
    no_skin = usable * (skin_weight(rough_px - (rough_px @ torch.tensor(LUMA)).unsqueeze(-1)) < 0.3).float()
    usable = torch.where(no_skin.sum(1, keepdim=True) >= 16, no_skin, usable)
    grey = _near_grey_mean(lin, usable)
    # white patch: mean of the brightest 2 % of the usable pixels
    k = max(1, int(0.02 * px.shape[1]))
    top = torch.topk(torch.where(usable > 0.5, luma, torch.full_like(luma, -1.0)), k, dim=1).indices
    white = torch.gather(lin, 1, top.unsqueeze(-1).expand(-1, -1, 3)).mean(1)
    region = grey if region is None else region
    sel = torch.where(wt > 0.5, luma, torch.full_like(luma, float("nan")))
    sel = torch.where((wt > 0.5).sum(1, keepdim=True) >= 16, sel, luma)
    q = torch.tensor([s.black_percentile / 100, s.white_percentile / 100, 0.5])
    pct = torch.nanquantile(sel, q, dim=1).t()
    return torch.cat([grey, white, region, pct], 1)


def _near_grey_mean(lin: torch.Tensor, usable: torch.Tensor) -> torch.Tensor:
    """Grey world made robust to scenes dominated by one colour (grass, sky, walls): the mean is
    re-estimated a few times, each time weighting pixels by how close to neutral they are once
    the current estimate is corrected, so strongly coloured areas stop voting."""
    luma = torch.tensor(LUMA)
    wt = usable
    ref = (lin * wt.unsqueeze(-1)).sum(1) / wt.sum(1, keepdim=True).clamp(min=1e-6)
    for width in (0.6, 0.35, 0.2):
        gain = (ref @ luma).unsqueeze(-1) / ref.clamp(min=1e-6)
        c = lin * gain.unsqueeze(1)
        rel = (c.amax(-1) - c.amin(-1)) / c.amax(-1).clamp(min=1e-4)
        wt = usable * torch.exp(-((rel / width) ** 2))
        ok = wt.sum(1, keepdim=True) > 1e-3
        new = (lin * wt.unsqueeze(-1)).sum(1) / wt.sum(1, keepdim=True).clamp(min=1e-6)
        ref = torch.where(ok, new, ref)
    return ref


def measure(chunk: Chunk, s: AutoColourSettings) -> np.ndarray:
    """``[n, 12]`` (or ``[n, 24]``: person then background, when the mask is used)."""
    th = shotstats.thumbnails(chunk.frames, max_side=160)
    region = None
    x, y, rw, rh = (float(v) for v in s.region)
    if rw > 0 and rh > 0:  # the picked neutral patch, measured at full resolution
        h, w = chunk.frames.shape[1:3]
        x0, y0 = min(w - 1, int(x * w)), min(h - 1, int(y * h))
        x1, y1 = max(x0 + 1, int(round((x + rw) * w))), max(y0 + 1, int(round((y + rh) * h)))
        region = srgb_to_linear(chunk.frames[:, y0:y1, x0:x1].float()).mean((1, 2))
    if s.mask_mode != "ignore" and chunk.mask is not None:
        m = (shotstats.mask_thumbnails(chunk.mask, th.shape[1:3]) > 0.5).float()
        out = torch.cat([_stats(th, m, s, region), _stats(th, 1.0 - m, s, region)], 1)
    else:
        out = _stats(th, torch.ones(th.shape[:3]), s, region)
    return out.double().numpy()


# ---------------------------------------------------------------------------------------------
# parameters from (smoothed) statistics
# ---------------------------------------------------------------------------------------------
# parameter layout: gain r, g, b (linear light), black, white (display luma), gamma
N_PARAMS = 6


# what a well-exposed picture already has: corrections start only beyond these
_BLACK_OK = 0.03  # display black point (0.5th percentile) that needs no lowering
_RANGE_OK = 0.80  # black-to-white range that needs no stretching
_CAST_OK = 0.03  # log-gain scale below which a colour cast is (mostly) left alone
_GREY_TOLERANCE = 0.06  # display-median distance from the target grey left alone


def _wb_log_gains(stats: np.ndarray, s: AutoColourSettings) -> np.ndarray:
    """Log gains ``[N, 3]`` that neutralise the chosen reference, made gentle: for the automatic
    references (grey world, white patch) only the part of the cast the *other* estimate confirms
    is removed (a sunset's bright sky or a lone orange wall is not a cast), and a slight cast
    (under ~2 %) is left alone."""
    luma = np.array(LUMA)

    def gains(ref: np.ndarray) -> np.ndarray:
        ref = np.clip(ref, 1e-4, None)
        return np.log(np.clip((ref @ luma)[:, None] / ref, 0.4, 2.5))

    col = {"grey_world": 0, "white_patch": 3, "region": 6}[s.white_balance]
    g = gains(stats[:, col:col + 3])
    if s.white_balance != "region":
        other = gains(stats[:, 3:6] if col == 0 else stats[:, 0:3])
        agree = np.sqrt(np.clip(np.where(np.abs(g) > 1e-6, other / np.where(np.abs(g) > 1e-6, g, 1.0), 0.0), 0.0, 1.0))
        g = g * agree
        g = g * (g * g / (g * g + _CAST_OK**2))  # soft dead band: slight casts fade out
    g = g * s.wb_strength
    return g  # the caller restores the reference's luminance


def params_from_stats(stats: np.ndarray, s: AutoColourSettings) -> np.ndarray:
    """Per-frame correction parameters ``[N, 6]`` from statistics ``[N, 12]``.

    Gentle by design, so that running it is never worse than not: a picture that already has
    deep blacks, a full range, a neutral balance and a mid-grey median is left (nearly) alone;
    only the part of each measured fault beyond what a good picture has is corrected."""
    n = stats.shape[0]
    out = np.zeros((n, N_PARAMS))
    luma = np.array(LUMA)
    if s.white_balance == "off":
        gains = np.ones((n, 3))
    else:
        col = {"grey_world": 0, "white_patch": 3, "region": 6}[s.white_balance]
        ref = np.clip(stats[:, col:col + 3], 1e-4, None)
        gains = np.exp(_wb_log_gains(stats, s))
        gains /= (((ref * gains) @ luma) / (ref @ luma))[:, None]  # keep the reference's luminance
    out[:, 0:3] = gains
    black, white, mid = stats[:, 9], np.maximum(stats[:, 10], stats[:, 9] + 0.05), stats[:, 11]
    k = s.levels_strength
    # levels: lifted blacks come down toward the normal black; a compressed range is stretched
    # by the part of its shortfall beyond a normal range (contrast of a good picture is kept)
    rng = white - black
    # a faded picture has lifted blacks, dull whites and a short range; a high-key scene (lifted
    # blacks, bright whites) or a low-key one (short range, deep blacks) is not faded
    faded = np.clip((_RANGE_OK - rng) / 0.2, 0.0, 1.0) * np.clip((0.92 - white) / 0.1, 0.0, 1.0)
    new_black = black - np.clip(black - _BLACK_OK, 0.0, 0.35) * k * faded
    new_rng = np.minimum(1.0 - new_black, rng + np.clip(0.95 - rng, 0.0, None) * k * faded)
    scale = np.maximum(new_rng, 1e-3) / np.maximum(rng, 1e-3)
    lo = black - new_black / scale  # input value mapped to 0 ...
    hi = lo + 1.0 / scale  # ... and to 1 (both may lie outside 0..1)
    out[:, 3], out[:, 4] = lo, hi
    # exposure: lift a dark median toward the target grey (never darken a bright picture)
    mid_after = np.clip((mid - lo) / np.maximum(hi - lo, 1e-3), 0.02, 0.98)
    short = np.clip(s.target_grey - _GREY_TOLERANCE - mid_after, 0.0, None)
    goal = np.clip(mid_after + short, 0.02, 0.98)
    gamma = np.log(goal) / np.log(mid_after)
    out[:, 5] = np.clip(gamma, 0.5, 1.0) ** s.exposure_strength
    return out


def plan(stats: np.ndarray, cuts: list[int], fps: float, s: AutoColourSettings) -> np.ndarray:
    """Smooth statistics within shots, then derive per-frame parameters (one block per region)."""
    sigma = max(0.0, s.smoothing_seconds) * fps
    blocks = []
    for r in range(stats.shape[1] // N_STATS):
        part = stats[:, r * N_STATS:(r + 1) * N_STATS]
        sm = shotstats.smooth_per_shot(part, cuts, sigma, median_radius=2, constant=s.temporal == "per_shot")
        blocks.append(params_from_stats(sm, s))
    return np.concatenate(blocks, 1)


# ---------------------------------------------------------------------------------------------
# applying
# ---------------------------------------------------------------------------------------------
def _skin_hue() -> float:
    r, g, b = _SKIN_RGB
    y = sum(c * w for c, w in zip(_SKIN_RGB, LUMA))
    return math.atan2((r - y) / 1.5748, (b - y) / 1.8556)


_SKIN_ANGLE = _skin_hue()


def skin_weight(chroma: torch.Tensor) -> torch.Tensor:
    """0..1 likelihood that a colour with chroma ``rgb - luma`` is skin (by hue, if not grey)."""
    cb, cr = chroma[..., 2] / 1.8556, chroma[..., 0] / 1.5748
    # squared chord between the colour's hue and skin's hue on the unit circle (~ angle squared)
    cos_d = (cb * math.cos(_SKIN_ANGLE) + cr * math.sin(_SKIN_ANGLE)) / (cb * cb + cr * cr).sqrt().clamp(min=1e-6)
    sat = (chroma.amax(-1) - chroma.amin(-1)).clamp(0, 1)
    return torch.exp((cos_d - 1.0) * (2.0 / 0.35**2)) * (sat / 0.04).clamp(0, 1)


def clahe_luma(x: torch.Tensor, amount: float, clip: float) -> torch.Tensor:
    """Local contrast: CLAHE (OpenCV) on display luma, added back as a luma offset."""
    if amount <= 0:
        return x
    lw = torch.tensor(LUMA, device=x.device, dtype=x.dtype)
    y = (x * lw).sum(-1)
    y16 = (y.clamp(0, 1) * 65535.0 + 0.5).to(torch.int32).cpu().numpy().astype(np.uint16)
    h, w = y16.shape[1:]
    tiles = max(2, min(16, round(max(h, w) / 160)))
    clahe = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(tiles, tiles))
    eq = np.stack([clahe.apply(f) for f in y16]).astype(np.float32) / 65535.0
    delta = (torch.from_numpy(eq).to(x.device) - y) * amount
    return x + delta.unsqueeze(-1)


def saturate(x: torch.Tensor, saturation: float, vibrance: float, skin_protect: float) -> torch.Tensor:
    """Scale chroma around luma; vibrance favours dull colours; skin hues are spared."""
    if saturation == 0 and vibrance == 0:
        return x
    shape = x.shape
    flat = x.reshape(-1, 3)
    out = torch.empty_like(flat)
    for s in range(0, flat.shape[0], 262144):
        p = torch.stack(flat[s:s + 262144].unbind(1), 0)
        res = _saturate_planar(p, saturation, vibrance, skin_protect)
        dst = out[s:s + 262144]
        for c in range(3):
            dst[:, c].copy_(res[c])
    return out.reshape(shape)


def _saturate_planar(p: torch.Tensor, saturation: float, vibrance: float, skin_protect: float) -> torch.Tensor:
    r, g, b = p[0], p[1], p[2]
    y = r * LUMA[0] + g * LUMA[1] + b * LUMA[2]
    sat = (torch.maximum(torch.maximum(r, g), b) - torch.minimum(torch.minimum(r, g), b)).clamp_(0, 1)
    factor = (1.0 - sat).square_().mul_(vibrance).add_(1.0 + saturation)
    if skin_protect > 0:
        cb, cr = (b - y) / 1.8556, (r - y) / 1.5748
        cos_d = (cb * math.cos(_SKIN_ANGLE) + cr * math.sin(_SKIN_ANGLE)) / (cb * cb + cr * cr).sqrt_().clamp_(min=1e-6)
        skin = cos_d.sub_(1.0).mul_(2.0 / 0.35**2).exp_().mul_((sat / 0.04).clamp_(0, 1))
        factor = (factor - 1.0).mul_(skin.mul_(-skin_protect).add_(1.0)).add_(1.0)
    return (p - y).mul_(factor).add_(y)


def tone_curves(p: torch.Tensor, s: AutoColourSettings, size: int = 4096) -> torch.Tensor:
    """The per-channel part of the correction (white balance in linear light, levels, gamma) as
    one 1D curve per frame and channel, ``[n, size, 3]``: applying it is a lookup, not a chain of
    power functions."""
    v = torch.linspace(0.0, 1.0, size, dtype=torch.float64, device=p.device)
    pd = p.double()
    g = pd[:, None, 0:3]
    black, white, gamma = (pd[:, i, None, None] for i in (3, 4, 5))
    y = v[None, :, None].expand(p.shape[0], size, 3)
    if s.white_balance != "off":
        y = linear_to_srgb(srgb_to_linear(y) * g)
    # black/white: inputs mapped to 0/1; above 1 is kept for the highlight shoulder (apply_params)
    y = ((y - black) / (white - black).clamp(min=1e-3)).clamp(min=0.0)
    return y.pow(gamma).float()


def apply_params(x: torch.Tensor, p: torch.Tensor, s: AutoColourSettings) -> torch.Tensor:
    """Correct frames ``x`` ``[n, H, W, 3]`` with per-frame parameters ``p`` ``[n, 6]``."""
    curves = tone_curves(p.to(x.device), s)
    out = torch.empty_like(x)
    for i in range(x.shape[0]):  # frame by frame keeps the temporaries small
        y = apply_1d(x[i], curves[i])
        roll_off_pixels(y, x[i].amax(-1))  # channels pushed past white roll off, same factor on all three
        y = clahe_luma(y.unsqueeze(0), s.local_contrast, s.clahe_clip)[0]
        y = saturate(y, s.saturation, s.vibrance, s.skin_protect)
        if s.strength != 1.0:
            y = x[i] + (y - x[i]) * s.strength
        out[i] = y.clamp_(0.0, 1.0)
    return out


def analyse(stream: FrameStream, s: AutoColourSettings, chunk_size: Optional[int] = None) -> tuple[np.ndarray, list]:
    """The analysis pass alone: per-frame parameters ``[N, 6]`` (``[N, 12]`` with a mask) and cuts."""
    stats, cuts = shotstats.measure_pass(stream, int(chunk_size or stream.chunk_size), lambda c: measure(c, s))
    return plan(stats, cuts, float(stream.info.fps), s), cuts


def auto_colour(stream: FrameStream, settings: Optional[AutoColourSettings] = None, **kw) -> FrameStream:
    """A new stream with automatic light and colour correction (one pass over ``stream``)."""
    s = (settings or AutoColourSettings(**kw)).validate()
    if s.mask_mode != "ignore" and not stream.info.has_mask:
        raise ColourError(
            f"mask_mode '{s.mask_mode}' needs a stream with a person mask: add a mask node upstream "
            "(e.g. a segmentation node) or set mask_mode to 'ignore'"
        )

    device = host.torch_device()
    fps = float(stream.info.fps)

    def apply(chunk: Chunk, rows: np.ndarray) -> Chunk:
        x = chunk.frames.to(device, torch.float32)
        p = torch.from_numpy(np.ascontiguousarray(rows)).float().to(device)
        if s.mask_mode == "ignore":
            y = apply_params(x, p, s)
        else:
            m = chunk.mask.to(device, torch.float32).unsqueeze(-1)
            fg = apply_params(x, p[:, :N_PARAMS], s) if s.mask_mode != "background_only" else x
            bg = apply_params(x, p[:, N_PARAMS:], s) if s.mask_mode != "person_only" else x
            y = bg + (fg - bg) * m
        return chunk.with_(frames=y.cpu())

    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(s).items()}
    radius = shotstats.smoothing_radius(max(0.0, s.smoothing_seconds) * fps, median_radius=2)
    return shotstats.shot_smoothed(stream, "auto_colour", params, lambda c: measure(c, s),
                                   lambda st, cuts: plan(st, cuts, fps, s), apply, radius,
                                   whole_shot=s.temporal == "per_shot", needs_mask=s.mask_mode != "ignore",
                                   label="Auto colour")
