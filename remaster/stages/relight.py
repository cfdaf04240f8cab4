"""Relight: change the light on a person (or the background) and keep everything else.

Each frame is split into *shading* (smooth, low-frequency illumination) and *reflectance*
(texture, skin, identity) on luminance: the shading is the log luminance averaged over a wide
window inside each region of the matte separately (person, background: normalised convolution),
so it is smooth across reflectance edges (hair against skin) and sharp along the person's outline;
without a matte a self-guided filter (He et al.) keeps strong edges out of it instead. This runs
on a small copy; only the shading is changed, and the output is ``reflectance x new shading``,
i.e. the frame times a smooth per-pixel gain joined along the full-size matte, so texture and
faces are carried over untouched.

The new shading:

* **exposure**: the shot's shading is brought toward a target by a power curve pivoted at white
  (what undoes a dim, underexposed room: shadows lifted most, highlights kept); the person's
  mean log luminance and shading are followed by an exponential moving average that restarts at scene cuts, so the
  exposure changes slowly within a shot and never flickers;
* **shadow lift**: shading darker than the target is compressed toward it (a fill light);
* **key / fill / rim lights** from a direction relative to the person: the surface orientation
  is approximated from the matte's shape (a rounded "pillow" height field from the distance to
  the matte's edge, with a head-sized ellipsoid where the face is, at the top of the matte);
  key and fill are soft Lambertian terms, the rim brightens edges facing away from the camera;
* **colour temperature** of the light (Kelvin; 6500 = neutral).

Target: the person (needs a matte), the background, or both (the lights only land on the
person). One pass; state per pass: the moving averages and an incremental cut detector.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Iterator, Optional

import cv2
import numpy as np
import torch

from .. import host
from ..stream import Chunk, FrameStream
from ..analysis import curves
from ..analysis.scenes import CutDetector

from ..analysis.colourspace import LUMA_709 as LUMA  # noqa: E402
TARGETS = ("person", "background", "both")
DISPLAY_GAMMA = 2.2  # display value ~ linear ** (1 / 2.2): a log gain in light is a log gain / 2.2 in display


class RelightError(ValueError):
    pass


@dataclass(frozen=True)
class RelightSettings:
    exposure: float = 0.40  # display value of the geometric-mean luminance the subject is lifted toward
    exposure_strength: float = 1.0  # 0 = keep the exposure, 1 = all the way to the target
    deadband: float = 0.15  # log-exposure error (~0.2 stop) left alone: a good source stays as is
    shadow_lift: float = 0.0  # 0..1 compression of shading darker than the target
    key: float = 0.0  # strength of the key light (0..1)
    fill: float = 0.0
    rim: float = 0.0
    azimuth: float = -40.0  # degrees, 0 = from the camera, negative = from the frame's left
    elevation: float = 25.0  # degrees above the horizon
    softness: float = 0.6  # 0 = hard Lambert, 1 = fully wrapped
    temperature: float = 6500.0  # Kelvin of the light (6500 = neutral)
    target: str = "person"
    strength: float = 1.0
    detail_radius: float = 0.03  # scale of the shading (blur sigma / filter radius) as a fraction of the longer side
    detail_eps: float = 0.3  # without a matte: guided-filter eps on log luminance (edges above it stay sharp)
    adapt_seconds: float = 1.0  # time constant of the exposure moving average
    work_side: int = 320  # long side of the copy the shading is estimated on

    def validate(self) -> "RelightSettings":
        if self.target not in TARGETS:
            raise RelightError(f"target must be one of {', '.join(TARGETS)}, got '{self.target}'")
        if not 0.05 <= self.exposure <= 0.9:
            raise RelightError(f"exposure must be within 0.05..0.9 (display value), got {self.exposure}")
        if not 1500 <= self.temperature <= 15000:
            raise RelightError(f"temperature must be within 1500..15000 K, got {self.temperature}")
        for name in ("exposure_strength", "shadow_lift", "key", "fill", "rim", "softness", "strength"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise RelightError(f"{name} must be within 0..1, got {v}")
        if not 64 <= self.work_side <= 2048:
            raise RelightError(f"work_side must be within 64..2048, got {self.work_side}")
        return self


PRESETS = {
    # exposure toward the target only: the trainer case (a dim room), nothing else changes
    "natural": RelightSettings(),
    "soft studio": RelightSettings(shadow_lift=0.45, key=0.35, fill=0.2, rim=0.1, azimuth=-35.0,
                                   elevation=30.0, softness=0.8, temperature=5600.0),
    "window key": RelightSettings(shadow_lift=0.15, key=0.75, fill=0.05, azimuth=-75.0, elevation=10.0,
                                  softness=0.4, temperature=7000.0),
    "rim + fill": RelightSettings(shadow_lift=0.5, key=0.1, fill=0.35, rim=0.55, azimuth=-40.0,
                                  elevation=20.0, softness=0.7, temperature=5200.0),
}


def preset(name: str, **overrides) -> RelightSettings:
    if name not in PRESETS:
        raise RelightError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides).validate()


# ---------------------------------------------------------------------------------------------
# colour of the light
# ---------------------------------------------------------------------------------------------
_XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])


@lru_cache(maxsize=64)
def light_tint(kelvin: float) -> tuple[float, float, float]:
    """Linear-light RGB gains of a black-body (Planckian locus, Kang et al. 2002 approximation)
    relative to D65, with unit luminance: 6500 K is (nearly) neutral."""

    def rgb(k: float) -> np.ndarray:
        t = float(np.clip(k, 1667.0, 25000.0))
        if t <= 4000:
            x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
        else:
            x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
        if t <= 2222:
            y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
        elif t <= 4000:
            y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
        else:
            y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
        xyz = np.array([x / y, 1.0, (1.0 - x - y) / y])
        return _XYZ_TO_SRGB @ xyz

    c = rgb(kelvin) / rgb(6504.0)
    c = c / float(c @ np.array(LUMA))
    return tuple(float(v) for v in np.clip(c, 0.2, 5.0))


# ---------------------------------------------------------------------------------------------
# shading: self-guided filter on log luminance, at a small size
# ---------------------------------------------------------------------------------------------
def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window (OpenCV's running-sum box filter; edges replicated)."""
    k = (2 * r + 1, 2 * r + 1)
    out = [torch.from_numpy(cv2.boxFilter(p.numpy(), -1, k, borderType=cv2.BORDER_REPLICATE))
           for p in x.reshape(-1, *x.shape[-2:]).float().contiguous()]
    return torch.stack(out).reshape(x.shape)


def log_luma(frames_nchw: torch.Tensor) -> torch.Tensor:
    """Log linear luminance ``[n,1,h,w]`` (through the 2.2 display power, on purpose the same
    one the gain is applied with)."""
    w = torch.tensor(LUMA, dtype=frames_nchw.dtype).view(1, 3, 1, 1)
    y = (frames_nchw * w).sum(1, keepdim=True)
    return torch.log(y.clamp(min=1e-3)) * DISPLAY_GAMMA


def guided_coefficients(g: torch.Tensor, r: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-guided filter (guide = input) ``g`` ``[n,1,h,w]``: mean coefficients ``a, b`` such that
    the smoothed signal is ``a * g + b``."""
    mean = _box(g, r)
    var = (_box(g * g, r) - mean * mean).clamp(min=0)
    a = var / (var + eps)
    b = mean - a * mean
    return _box(a, r), _box(b, r)


# ---------------------------------------------------------------------------------------------
# surface orientation from the matte
# ---------------------------------------------------------------------------------------------
def normals_from_mask(mask: np.ndarray) -> np.ndarray:
    """Rough unit normals ``[h,w,3]`` (x right, y down, z toward the camera) of a person seen in
    the matte ``[h,w]``: a rounded height field rising from the matte's edge, plus an ellipsoid for
    the head (top of the matte: the face is where the person's silhouette starts)."""
    h, w = mask.shape
    binary = (mask > 0.5).astype(np.uint8)
    out = np.zeros((h, w, 3), np.float32)
    out[..., 2] = 1.0
    rows = np.nonzero(binary.any(1))[0]
    if rows.size < 3:
        return out
    top, bottom = int(rows[0]), int(rows[-1])
    height = bottom - top + 1
    cols = np.nonzero(binary.any(0))[0]
    reach = max(2.0, 0.3 * min(height, cols[-1] - cols[0] + 1))  # rounded all across: no flat top
    d = cv2.distanceTransform(binary, cv2.DIST_L2, 3)
    t = np.clip(d / reach, 0.0, 1.0)
    z = reach * np.sqrt(np.clip(1.0 - (1.0 - t) ** 2, 0.0, 1.0))
    # head: the silhouette's top band; width from the matte there, centre at its centroid
    band = binary[top:top + max(2, int(0.16 * height))]
    xs = np.nonzero(band)[1]
    if xs.size:
        cx = float(xs.mean())
        rx = max(2.0, 0.5 * float(np.percentile(xs, 95) - np.percentile(xs, 5)))
        ry = 1.3 * rx
        cy = top + ry
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        e = 1.0 - ((xx - cx) / rx) ** 2 - ((yy - cy) / ry) ** 2
        z = np.maximum(z, rx * np.sqrt(np.clip(e, 0.0, 1.0)) * (binary > 0))
    z = cv2.GaussianBlur(z.astype(np.float32), (0, 0), max(1.0, reach / 2.5))  # no crease at the medial axis
    gy, gx = np.gradient(z)
    n = np.stack([-gx, -gy, np.ones_like(z)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return n.astype(np.float32)


def light_vector(azimuth: float, elevation: float) -> np.ndarray:
    a, e = math.radians(azimuth), math.radians(elevation)
    # azimuth: 0 = camera side, -90 = frame's left, +-180 = behind the person
    return np.array([math.sin(a) * math.cos(e), -math.sin(e), math.cos(a) * math.cos(e)], np.float32)


def light_shape(normals: np.ndarray, s: RelightSettings) -> tuple[np.ndarray, np.ndarray]:
    """(multiplicative shaping of the shading, additive rim light), both ``[h,w]``."""
    def lambert(l: np.ndarray) -> np.ndarray:
        c = normals @ l
        wrap = s.softness
        return np.clip((c + wrap) / (1.0 + wrap), 0.0, 1.0) ** (1.0 + wrap)

    key_l = light_vector(s.azimuth, s.elevation)
    fill_l = light_vector(-0.6 * s.azimuth, 5.0)
    shape = 0.5 + s.key * lambert(key_l) + s.fill * lambert(fill_l)
    rim = np.zeros(normals.shape[:2], np.float32)
    if s.rim > 0:
        side = np.array([math.copysign(1.0, s.azimuth or 1.0), -0.3], np.float32)
        side /= np.linalg.norm(side)
        edge = np.clip(1.0 - normals[..., 2], 0.0, 1.0) ** 2
        facing = np.clip(normals[..., :2] @ side / np.maximum(np.linalg.norm(normals[..., :2], axis=-1), 1e-4), 0, 1)
        rim = s.rim * edge * (0.3 + 0.7 * facing)
    return shape.astype(np.float32), rim.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the per-frame relighter with explicit state
# ---------------------------------------------------------------------------------------------
class Relighter:
    """Relight frames chunk by chunk; state: the exposure moving average (reset at cuts)."""

    def __init__(self, s: RelightSettings, fps: float = 25.0, cuts: Optional[list[int]] = None) -> None:
        self.s = s.validate()
        self.alpha = 1.0 - math.exp(-1.0 / max(1e-3, s.adapt_seconds * max(fps, 1e-3)))
        self.known_cuts = None if cuts is None else set(int(c) for c in cuts)
        self.detector = CutDetector() if cuts is None else None
        self.level: Optional[float] = None  # moving average of the subject's mean log luminance
        self.shade = 0.0  # ... and of its mean log shading
        self.lights = s.key > 0 or s.fill > 0 or s.rim > 0
        self.tint = torch.tensor(light_tint(s.temperature)).view(1, 3, 1, 1) ** (1.0 / DISPLAY_GAMMA)
        self.target = math.log(max(1e-3, s.exposure)) * DISPLAY_GAMMA

    def reset(self) -> None:
        self.level = None

    def _is_cut(self, index: int) -> bool:
        return self.known_cuts is not None and index in self.known_cuts

    def __call__(self, chunk: Chunk) -> Chunk:
        s = self.s
        if s.target != "both" and chunk.mask is None:
            raise RelightError(f"target '{s.target}' needs a person mask on the stream: add Video Matting (or another "
                               "mask node) before Relight, or set target to 'both'")
        new_cuts = set(self.detector.push(chunk.frames[:, ::4, ::4])) if self.detector is not None else set()
        out = torch.empty(chunk.frames.shape, dtype=torch.float32)
        for i in range(len(chunk)):
            idx = chunk.start + i
            if idx in new_cuts or self._is_cut(idx):
                self.reset()
            m = None if chunk.mask is None else chunk.mask[i]
            self.frame(chunk.frames[i], m, out=out[i])
        return chunk.with_(frames=out)

    def frame(self, x: torch.Tensor, mask: Optional[torch.Tensor], out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One relit frame ``[h,w,3]`` (written into ``out`` when given)."""
        s = self.s
        h, w, _ = x.shape
        scale = min(1.0, s.work_side / max(h, w))
        sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
        x = x.float().contiguous()
        small = _resize(x, sw, sh, cv2.INTER_AREA).permute(2, 0, 1).unsqueeze(0)
        g_small = log_luma(small)
        r = max(1, int(round(s.detail_radius * max(sh, sw))))
        m_small = None if mask is None else _resize(mask.float().contiguous(), sw, sh, cv2.INTER_AREA)[None, None]
        person, back = shading(g_small, m_small, r, s.detail_eps)

        # exposure level of the subject: mean log luminance of its pixels, followed by a moving
        # average (restarted at cuts)
        combined = person if m_small is None else torch.lerp(back, person, m_small)
        if m_small is None or (s.target == "both" and float((m_small > 0.5).float().mean()) < 0.02):
            pick = torch.ones_like(g_small, dtype=torch.bool)
        elif s.target == "background":
            pick = m_small < 0.5
        else:  # person, or both with a matte: the person's exposure is the one that matters
            pick = m_small > 0.5
        if int(pick.sum()) < 16:
            pick = torch.ones_like(g_small, dtype=torch.bool)
        level, shade = float(g_small[pick].mean()), float(combined[pick].clamp(max=0.0).mean())
        if self.level is None:
            self.level, self.shade = level, shade
        else:
            self.level += self.alpha * (level - self.level)
            self.shade += self.alpha * (shade - self.shade)
        # power curve on the shading pivoted at white (log 1 = 0), steep enough that the subject's
        # mean log luminance (moving average) is lifted by ``err``; from smoothed numbers only, so
        # the curve changes slowly within a shot
        err = max(0.0, self.target - self.level - s.deadband) * s.exposure_strength  # lift only
        c = float(np.clip(1.0 + err / min(self.shade, -1e-3), 0.35, 1.0))

        def new_light(q: torch.Tensor) -> torch.Tensor:
            """Log gain that turns shading ``q`` into the new shading (exposure, shadow lift)."""
            q_new = q * c
            if s.shadow_lift > 0:
                q_new = q_new - (q_new - self.target).clamp(max=0.0) * s.shadow_lift
            return q_new - q

        lg_person = new_light(person)
        if self.lights and m_small is not None and s.target != "background":
            shape, rim = light_shape(normals_from_mask(m_small[0, 0].numpy()), s)
            shape_t, rim_t = torch.from_numpy(shape)[None, None], torch.from_numpy(rim)[None, None]
            inside = m_small > 0.5
            norm = float(shape_t[inside].mean()) if bool(inside.any()) else 1.0
            lg_person = lg_person + torch.log(shape_t / max(norm, 1e-3)) * DISPLAY_GAMMA
            lit = torch.exp((person + lg_person) / DISPLAY_GAMMA).clamp(min=0.02)
            lg_person = lg_person + torch.log1p(rim_t / lit) * DISPLAY_GAMMA
        if s.target == "background":
            lg_person = torch.zeros_like(lg_person)
        lg_back = new_light(back) if s.target != "person" else torch.zeros_like(back)

        # full size: the smooth log gains (both regions in one resize), joined along the full-size matte
        if mask is None:
            log_gain = _resize(lg_person[0, 0], w, h, cv2.INTER_LINEAR)
            wgt = None
        else:
            m = mask.float()
            both = _resize(torch.stack([lg_back[0, 0], lg_person[0, 0]], -1), w, h, cv2.INTER_LINEAR)
            log_gain = torch.lerp(both[..., 0], both[..., 1], m)
            wgt = {"person": m, "background": 1.0 - m, "both": None}[s.target]
        gain = log_gain.mul_(s.strength / DISPLAY_GAMMA).exp_().unsqueeze(-1)
        peak = x.amax(-1, keepdim=True)
        tint = None
        top = peak * gain
        if s.temperature != 6500.0:
            t = (self.tint.view(1, 1, 3) - 1.0) * s.strength
            tmax = float(t.max())
            if wgt is None:
                tint = 1.0 + t
                top.mul_(1.0 + tmax)
            else:
                w3 = wgt.unsqueeze(-1)
                tint = torch.addcmul(torch.ones(1, 1, 3), w3, t)
                top.mul_(w3 * tmax + 1.0)
        _roll_off(gain, top, peak)
        out = torch.mul(x, gain, out=out)
        if tint is not None:
            out.mul_(tint)
        return out.clamp_(0.0, 1.0)


def _resize(t: torch.Tensor, w: int, h: int, interp: int) -> torch.Tensor:
    """``[H,W]`` or ``[H,W,c]`` float to ``(h, w)`` with OpenCV (area down, bilinear up; pixel
    centres aligned like ``align_corners=False``)."""
    if tuple(t.shape[:2]) == (h, w):
        return t
    return torch.from_numpy(cv2.resize(t.numpy(), (w, h), interpolation=interp))


def shading(g: torch.Tensor, m: Optional[torch.Tensor], r: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Shading (log luminance x 2.2) of the person and of the background, ``[1,1,h,w]`` each.

    Inside a region the shading is smooth: reflectance edges (hair against skin, a pattern on a
    shirt) do not show in it, so the gain that changes it cannot alter texture. Across the matte
    it is not smooth: each region is averaged only over itself (normalised convolution), so a
    bright window behind a person does not leak into the person's light. Without a matte, a
    self-guided filter keeps strong edges (a window frame) out of the smoothing instead.
    """
    if m is None:
        a, b = guided_coefficients(g, r, eps)
        q = a * g + b
        return q, q
    sigma = max(1.0, float(r))

    def nblur(v: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
        num = cv2.GaussianBlur((v * wt)[0, 0].numpy(), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        den = cv2.GaussianBlur(wt[0, 0].numpy(), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        fallback = float((v * wt).sum() / wt.sum().clamp(min=1e-6)) if float(wt.sum()) > 0 else float(v.mean())
        out = np.where(den > 1e-3, num / np.maximum(den, 1e-6), fallback)
        return torch.from_numpy(out.astype(np.float32))[None, None]

    wp = m.clamp(0, 1) ** 2
    wb = (1.0 - m.clamp(0, 1)) ** 2
    return nblur(g, wp), nblur(g, wb)


def _roll_off(gain: torch.Tensor, top: torch.Tensor, peak: torch.Tensor, knee: float = 0.85) -> None:
    """Multiply ``gain`` in place by a factor that rolls a brightened brightest channel ``top``
    (was ``peak``) off below 1 instead of clipping; pixels not brightened past the knee keep
    their gain. The same factor goes to all three channels, so hues do not shift. Computed only
    on the pixels it changes (usually few: the rest of the frame costs one comparison)."""
    base = peak.clamp(min=knee)
    idx = torch.nonzero((top > base).view(-1)).squeeze(1)
    if idx.numel() == 0:
        return
    t = top.view(-1)[idx]
    gain.view(-1)[idx] *= curves.shoulder(t, base.view(-1)[idx]) / t.clamp(min=1e-6)


def relight(stream: FrameStream, settings: Optional[RelightSettings] = None, **kw) -> FrameStream:
    """A new stream with the light changed (one pass over ``stream``)."""
    s = (settings or RelightSettings(**kw)).validate()
    if s.target != "both" and not stream.info.has_mask:
        raise RelightError(f"target '{s.target}' needs a person mask on the stream: add Video Matting (or another "
                           "mask node) before Relight, or set target to 'both'")
    fps = float(stream.info.fps or 25)

    def producer(upstream: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        cuts = upstream.info.scene_cuts
        state = Relighter(s, fps, None if cuts is None else list(cuts))
        for chunk in upstream.chunks(chunk_size):
            host.check_interrupt()
            yield state(chunk)

    return stream.derive("relight", asdict(s), producer)
