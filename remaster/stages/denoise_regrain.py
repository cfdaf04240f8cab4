"""Denoise & Regrain: motion-compensated temporal denoising that keeps detail, then grain
matched to the measured grain of the source put back.

Denoise. The neighbours ``i±1 .. i±radius`` of the same shot are warped onto frame ``i`` with
dense optical flow (:mod:`remaster.analysis.flow`). Each gets a per-pixel weight from how well it
matches the frame on a 5×5 neighbourhood (patch distance relative to the noise level, as in a
temporal non-local mean), so occlusions and flow errors get no weight and detail is never
averaged with the wrong content. The noise level ``sigma`` is measured per frame from the
compensated differences (robust median), so grain of any strength is handled without tuning.

Regrain. The removed residual ``frame - denoised`` is the grain: its standard deviation in the
mid-tones and its size (from the correlation of neighbouring residual pixels) are measured and
fresh, seeded grain with those properties is added by :func:`remaster.analysis.filmstock.grain` times
``regrain`` (0 = clean, 1 = as much grain as the source had, but no longer noisy in time).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

from ..stream import FrameStream
from ..analysis.colourspace import LUMA_601
from ..analysis import flow as flowlib
from ..analysis.filmstock import grain as add_grain
from ..analysis.window import Item, Window, centred
from ..analysis.checks import one_of, within

__all__ = ["DenoiseError", "DenoiseSettings", "denoise_regrain", "measure_grain"]

_LUMA = np.array(LUMA_601, np.float32)


class DenoiseError(ValueError):
    pass


@dataclass(frozen=True)
class DenoiseSettings:
    strength: float = 1.0  # multiplies the measured noise level in the weights
    radius: int = 2
    regrain: float = 0.0
    seed: int = 0
    flow_side: int = 480
    flow_method: str = "dis_fast"

    def validate(self) -> None:
        within(DenoiseError, "strength", self.strength, 0, 4)
        within(DenoiseError, "radius", self.radius, 1, 4, " frames")
        within(DenoiseError, "regrain", self.regrain, 0, 2)
        one_of(DenoiseError, "flow_method", self.flow_method, flowlib.METHODS)


def measure_grain(residual: np.ndarray, luma: np.ndarray) -> tuple:
    """(amplitude in the mid-tones, size in pixels) of a grain residual ``[H,W,3]``."""
    r = residual @ _LUMA
    mid = (luma > 0.25) & (luma < 0.75)
    sel = r[mid] if mid.sum() > 100 else r.ravel()
    amp = float(1.4826 * np.median(np.abs(sel - np.median(sel)))) if sel.size else 0.0
    a, b = r[:, :-1].ravel(), r[:, 1:].ravel()
    rho = float(np.corrcoef(a, b)[0, 1]) if a.size > 10 and a.std() > 1e-6 else 0.0
    # bicubic-upsampled white noise: lag-1 correlation grows with the upsampling factor
    size = float(np.clip(0.8 + 3.0 * max(rho, 0.0) ** 1.5, 0.5, 8.0))
    return amp, size


class Denoiser:
    def __init__(self, s: DenoiseSettings) -> None:
        s.validate()
        self.s = s

    def prepare(self, item: Item, first: bool) -> dict:
        frame = item.frame
        return {"small": flowlib.to_gray_u8(frame, self.s.flow_side)}

    def process(self, w: Window) -> tuple:
        s = self.s
        it = w.item
        x = it.frame.numpy()
        h, wd, _ = x.shape
        nbs = w.neighbours(s.radius)
        if not nbs or s.strength == 0:
            return it.frame, it.mask
        g = x @ _LUMA
        warped, dists = [], []
        for nb in nbs:
            f = flowlib.estimate_flow(it.aux["small"], nb.aux["small"], s.flow_method, out_size=(h, wd))
            wi = flowlib.backward_warp(nb.frame.permute(2, 0, 1)[None], f, padding="border")[0]
            wi = wi.permute(1, 2, 0).numpy()
            warped.append(wi)
            dists.append(cv2.blur((wi @ _LUMA - g) ** 2, (5, 5)))
        # noise variance from the best-matching neighbour (median of chi²(1) ≈ 0.455), capped so a
        # neighbour from an unrecognised other shot cannot pass for noise
        med = min(float(np.median(d[::4, ::4])) for d in dists)
        sigma2 = min(max(med / 2.0, 1e-6) / 0.4549, 0.1 ** 2)
        h2 = 2.0 * sigma2 * (s.strength ** 2) * 1.5
        acc = x.copy()
        wsum = np.ones((h, wd), np.float32)
        for wi, d in zip(warped, dists):
            # the patch distance of two noisy copies averages 2σ²; more than that is content
            wt = np.exp(-np.maximum(d - 2.0 * sigma2, 0.0) / max(h2, 1e-8)).astype(np.float32)
            acc += wi * wt[..., None]
            wsum += wt
        y = acc / wsum[..., None]
        if s.regrain > 0:
            amp, size = measure_grain(x - y, g)
            y = add_grain(torch.from_numpy(np.ascontiguousarray(y, np.float32))[None], it.index, amp * s.regrain,
                          size, 0.1, s.seed)[0].numpy()
        return torch.from_numpy(np.ascontiguousarray(y, np.float32)), it.mask


def denoise_regrain(stream: FrameStream, settings: DenoiseSettings = DenoiseSettings(),
                    protect: FrameStream | None = None) -> FrameStream:
    """The denoised (and optionally regrained) stream, one pass with a window of ``2*radius+1``.
    ``protect``: same size and length; its mask (or brightness) marks pixels left as they came
    (a face or a title kept with its own texture)."""
    settings.validate()
    return centred(stream, "denoise_regrain", asdict(settings), settings.radius, lambda: Denoiser(settings),
                   companions={"protect": protect})
