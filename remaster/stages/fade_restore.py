"""Restore Faded Colour: undo dye fading per channel, and exposure flicker, in one pass.

Fading is modelled in density (``D = -log10(value)``): each dye layer keeps a fraction of its
density and stain adds base density, so every channel undergoes ``log v' = k·log v - f`` (see
:func:`remaster.stages.film_damage.fade`). The inverse is a per-channel straight line in log
space.

* ``auto``: for every frame, the 1st and 99th percentiles of each channel's log value are measured
  on a thumbnail. They are averaged over a centred window (``radius`` frames, same shot), then
  each channel's line is chosen to map its low/high percentiles onto common targets: the darkest
  channel's black and the brightest channel's white (so the picture regains the contrast of its
  least faded layer and neutrals become neutral). ``strength`` mixes the correction in.
* a stock (``eastmancolor``, ``ektachrome``...): the exact inverse of that stock's fading at
  ``amount``.
Then chroma lost in Lab is given back (``saturation``, or the stock's own loss).

``deflicker`` adds one gain per frame (linear light) bringing the frame's mean luma onto its
window average: exposure flicker gone without blending frames.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from ..stream import FrameStream
from ..analysis.filmstock import STOCKS
from ..analysis.colourspace import LUMA_709, linear_to_srgb, srgb_to_linear
from ..analysis.window import Item, Window, centred
from ..analysis.checks import one_of, within

__all__ = ["MODES", "FadeError", "FadeSettings", "restore_fade"]

MODES = ("auto",) + tuple(k for k in STOCKS if k != "none")
_EPS = 1e-3


class FadeError(ValueError):
    """Restore Faded Colour got a bad setting or a reference clip that does not fit the stream."""


@dataclass(frozen=True)
class FadeSettings:
    mode: str = "auto"
    strength: float = 1.0
    amount: float = 1.0  # how faded the stock is (stock modes)
    saturation: float = 1.25  # chroma gain in Lab (auto mode; stock modes use the stock's loss)
    deflicker: float = 1.0
    radius: int = 12
    low: float = 1.0  # percentiles measured
    high: float = 99.0

    def validate(self) -> None:
        one_of(FadeError, "mode", self.mode, MODES)
        for k in ("strength", "amount", "deflicker"):
            within(FadeError, k, getattr(self, k), 0, 1)
        within(FadeError, "saturation", self.saturation, 0.5, 2)
        within(FadeError, "radius", self.radius, 0, 60, " frames")
        if not 0 <= self.low < self.high <= 100:
            raise FadeError(f"need 0 ≤ low < high ≤ 100 percentiles, got {self.low}, {self.high}")


def measure(frame: np.ndarray, low: float, high: float) -> dict:
    small = cv2.resize(frame, (160, max(1, round(160 * frame.shape[0] / frame.shape[1]))), interpolation=cv2.INTER_AREA)
    lg = np.log10(np.clip(small.reshape(-1, 3), _EPS, 1.0))
    lum = float(srgb_to_linear(torch.from_numpy(small)).mean((0, 1)) @ torch.tensor(LUMA_709))
    return {"lo": np.percentile(lg, low, axis=0), "hi": np.percentile(lg, high, axis=0), "luma": lum}


def auto_lines(lo: np.ndarray, hi: np.ndarray) -> tuple:
    """Per-channel (k, f) with corrected ``log v = k·log v' + f`` mapping lo→min(lo), hi→max(hi)."""
    t_lo, t_hi = float(lo.min()), float(min(hi.max(), 0.0))
    span = np.maximum(hi - lo, 1e-3)
    k = (t_hi - t_lo) / span
    f = t_lo - k * lo
    return k, f


def stock_lines(stock: str, amount: float) -> tuple:
    s = STOCKS[stock]
    keep = 1.0 - amount * (1.0 - np.asarray(s["keep"], np.float64))
    fog = amount * np.asarray(s["fog"], np.float64)
    # faded log v' = keep·log v - fog  →  log v = (log v' + fog) / keep
    return 1.0 / keep, fog / keep


def apply_lines(x: np.ndarray, k: np.ndarray, f: np.ndarray) -> np.ndarray:
    lg = np.log10(np.clip(x, _EPS, 1.0))
    return np.clip(np.power(10.0, lg * k.astype(np.float32) + f.astype(np.float32)), 0, 1).astype(np.float32)


def saturate(x: np.ndarray, gain: float) -> np.ndarray:
    if abs(gain - 1.0) < 1e-3:
        return x
    lab = cv2.cvtColor(np.ascontiguousarray(x, np.float32), cv2.COLOR_RGB2Lab)
    lab[..., 1:] *= gain
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0, 1)


class FadeRestorer:
    def __init__(self, s: FadeSettings) -> None:
        s.validate()
        self.s = s

    def prepare(self, item: Item, first: bool) -> dict:
        aux = measure(item.frame.numpy(), self.s.low, self.s.high)
        if "reference" in item.side:
            ref = measure(item.side["reference"][0].numpy(), self.s.low, self.s.high)
            aux["ref_lo"], aux["ref_hi"] = ref["lo"], ref["hi"]
        return aux

    def process(self, w: Window) -> tuple:
        s = self.s
        it = w.item
        x = it.frame.numpy()
        if s.mode == "auto":
            lo = np.mean([i.aux["lo"] for i in w.items], 0)
            hi = np.mean([i.aux["hi"] for i in w.items], 0)
            if "ref_lo" in it.aux:
                rlo = np.mean([i.aux["ref_lo"] for i in w.items], 0)
                rhi = np.mean([i.aux["ref_hi"] for i in w.items], 0)
                k = (rhi - rlo) / np.maximum(hi - lo, 1e-3)
                f = rlo - k * lo
                gain = 1.0
            else:
                k, f = auto_lines(lo, hi)
                gain = s.saturation
        else:
            k, f = stock_lines(s.mode, s.amount)
            gain = 1.0 / (1.0 - s.amount * (1.0 - STOCKS[s.mode]["chroma"]))
        k = 1.0 + (k - 1.0) * s.strength
        f = f * s.strength
        y = apply_lines(x, k, f)
        y = saturate(y, 1.0 + (gain - 1.0) * s.strength)
        if s.deflicker > 0 and len(w.items) > 1:
            target = float(np.mean([i.aux["luma"] for i in w.items]))
            g = (target / max(it.aux["luma"], 1e-4)) ** s.deflicker
            g = float(np.clip(g, 0.5, 2.0))
            if abs(g - 1) > 1e-4:
                y = linear_to_srgb(srgb_to_linear(torch.from_numpy(y)) * g).clamp(0, 1).numpy()
        return torch.from_numpy(np.ascontiguousarray(y, np.float32)), it.mask


def restore_fade(stream: FrameStream, settings: FadeSettings = FadeSettings(),
                 reference: FrameStream | None = None) -> FrameStream:
    """The colour-restored stream (one pass, a centred window of ``2*radius+1`` frames, cut-aware).
    ``reference`` (auto mode): a better-kept copy of the same footage (same size and length, e.g.
    a telecine of another print); each channel's levels are matched to it instead of to neutral."""
    settings.validate()
    return centred(stream, "restore_fade", asdict(settings), settings.radius, lambda: FadeRestorer(settings),
                   companions={"reference": reference})
