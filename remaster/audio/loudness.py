"""Loudness to a target (EBU R128 / ITU-R BS.1770) with a true-peak limit, per file or per scene.

* :class:`Meter`: BS.1770-4 integrated loudness, streaming: K-weighting (pyloudnorm's filter
  design, run as second-order sections with state), mean squares per 100 ms, 400 ms gating blocks
  with 75 % overlap, absolute (−70 LUFS) and relative (−10 LU) gates. Only the per-100 ms energies
  are kept (36 000 numbers for an hour), so any range can be measured afterwards, e.g. per scene.
  Channel weights follow BS.1770 (surrounds ×1.41, LFE ignored).
* :class:`TruePeakLimiter`: a look-ahead limiter on the oversampled peak (4× at 48 kHz) (BS.1770 annex 2
  style): the gain needed at each sample is held over the look-ahead window and smoothed, so it
  is never above what the coming peak needs; all channels share one gain.
* :func:`normalise`: passes over the audio only (measure, then check the limited result and
  correct, at most 4 times), then the real pass: gain (per scene with 50 ms ramps at cuts), then the limiter.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from ..stream import AudioRef
from . import io

TARGETS = {"-16 LUFS (web, podcasts)": -16.0, "-23 LUFS (EBU R128 broadcast)": -23.0,
           "-14 LUFS (streaming music)": -14.0, "custom": None}
MAX_GAIN_DB = 30.0


def channel_weights(channels: int) -> np.ndarray:
    if channels <= 3:
        return np.ones(channels)
    w = np.full(channels, 1.41)  # surrounds
    w[:3] = 1.0  # FL FR FC
    if channels in (6, 8):
        w[3] = 0.0  # LFE is not measured
    return w


class Meter:
    """Streaming BS.1770 loudness meter."""

    def __init__(self, rate: int, channels: int):
        import pyloudnorm

        m = pyloudnorm.Meter(rate)
        sos = [signal.tf2sos(f.b, f.a) for f in m._filters.values()]
        self.sos = np.concatenate(sos)
        self.zi = np.zeros((self.sos.shape[0], channels, 2))
        self.weights = channel_weights(channels)
        self.sub = max(1, int(round(0.1 * rate)))
        self.rest = np.zeros((channels, 0))
        self.energy: list[np.ndarray] = []  # weighted mean square per 100 ms

    def feed(self, x: np.ndarray) -> None:
        y, self.zi = signal.sosfilt(self.sos, x.astype(np.float64), axis=1, zi=self.zi)
        y = np.concatenate([self.rest, y], axis=1)
        n = y.shape[1] // self.sub
        if n:
            ms = np.mean(np.square(y[:, : n * self.sub]).reshape(y.shape[0], n, self.sub), axis=2)
            self.energy.append(self.weights @ ms)
        self.rest = y[:, n * self.sub:]

    def energies(self) -> np.ndarray:
        return np.concatenate(self.energy) if self.energy else np.zeros(0)

    def integrated(self, first: int = 0, stop: Optional[int] = None) -> float:
        """Integrated loudness (LUFS) over the 100 ms steps ``first..stop`` (-inf if all gated)."""
        e = self.energies()[first:stop]
        if len(e) < 4:
            return float("-inf")
        z = sliding_window_view(e, 4).mean(axis=1)  # 400 ms blocks, 75 % overlap
        with np.errstate(divide="ignore"):
            lj = -0.691 + 10 * np.log10(z)
        z = z[lj >= -70.0]
        if len(z) == 0:
            return float("-inf")
        rel = -0.691 + 10 * np.log10(np.mean(z)) - 10.0
        with np.errstate(divide="ignore"):
            z = z[-0.691 + 10 * np.log10(z) >= rel]
        return float(-0.691 + 10 * np.log10(np.mean(z)))


def true_peak_db(x: np.ndarray, rate: int = 48000) -> float:
    """Max oversampled (to at least 192 kHz) absolute sample of ``[C, T]`` in dBTP."""
    k = max(4, int(np.ceil(192000 / rate)))
    up = signal.resample_poly(np.atleast_2d(x).astype(np.float64), k, 1, axis=1)
    return float(20 * np.log10(max(np.abs(up).max(), np.abs(x).max()) + 1e-12))


class TruePeakLimiter:
    """Look-ahead limiter on the 4× oversampled peak; output lags input by ``latency`` samples."""

    def __init__(self, rate: int, channels: int, ceiling_db: float = -1.0, lookahead_ms: float = 5.0,
                 hold_ms: float = 10.0, margin_db: float = 0.3):
        self.ceiling = 10 ** ((ceiling_db - margin_db) / 20)
        self.L = max(1, int(rate * lookahead_ms / 1000))
        self.R = int(rate * hold_ms / 1000)
        self.up = max(4, int(np.ceil(192000 / rate)))  # 4x at 48 kHz, more for low rates
        self.h = self.up * signal.firwin(self.up * 12 + 1, 1 / self.up)  # interpolation filter
        self.P = 7  # input samples the peak estimate lags (half the filter's span at 1x)
        self.H = 16  # input history for the filter
        self.latency = self.L + self.P
        self.xhist = np.zeros((channels, self.H))
        self.ghist = np.ones(self.L + self.R)
        self.mhist = np.ones(self.L)
        self.delay = np.zeros((channels, self.latency))

    def process(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[1]
        if n == 0:
            return x
        xin = np.concatenate([self.xhist, x.astype(np.float64)], axis=1)
        self.xhist = xin[:, -self.H:]
        k = self.up
        up = signal.upfirdn(self.h, xin, up=k, axis=1)
        gd = (len(self.h) - 1) // 2
        j0 = self.H - self.P  # first position in xin with full filter support
        seg = up[:, k * j0 + gd: k * (j0 + n) + gd].reshape(up.shape[0], n, k)  # a view: no copy
        tp = np.abs(seg).max(axis=(0, 2))
        tp = np.maximum(tp, np.abs(xin[:, j0: j0 + n]).max(axis=0))
        g = np.minimum(1.0, self.ceiling / np.maximum(tp, 1e-12))
        gext = np.concatenate([self.ghist, g])
        m = sliding_window_view(gext, self.L + self.R + 1).min(axis=1)
        self.ghist = gext[-(self.L + self.R):]
        mext = np.concatenate([self.mhist, m])
        gain = sliding_window_view(mext, self.L + 1).mean(axis=1)
        self.mhist = mext[-self.L:]
        dext = np.concatenate([self.delay, x.astype(np.float64)], axis=1)
        xd, self.delay = dext[:, :n], dext[:, n:]
        return (xd * gain[None]).astype(np.float32)


class Normaliser:
    """The loudness stage: measure (analyse), then per-sample gain and the limiter."""

    def __init__(self, rate: int, channels: int, target: float, peak_db: float,
                 cuts_s: Optional[list] = None):
        self.rate, self.channels = rate, channels
        self.target, self.peak_db = float(target), float(peak_db)
        self.cuts = sorted(c for c in (cuts_s or []) if c > 0)
        self.limiter = TruePeakLimiter(rate, channels, peak_db)
        self.latency = self.limiter.latency
        self.xs, self.ys = np.array([0.0]), np.array([0.0])  # gain curve (samples, dB)
        self.pos = 0
        self.measured: list[float] = []

    def _gains(self, meter: Meter) -> list[float]:
        n = len(meter.energies())
        edges = [0] + [int(round(c * 10)) for c in self.cuts if c * 10 < n] + [n]
        whole = meter.integrated()
        out = []
        for a, b in zip(edges[:-1], edges[1:]):
            lufs = meter.integrated(a, b) if len(self.cuts) else whole
            if not np.isfinite(lufs):
                lufs = whole
            out.append(float(np.clip(self.target - lufs, -MAX_GAIN_DB, MAX_GAIN_DB)) if np.isfinite(lufs) else 0.0)
        self.measured.append(whole)
        return out

    def _curve(self, gains: list[float]) -> None:
        ramp = 0.025 * self.rate
        xs, ys = [0.0], [gains[0]]
        for c, g0, g1 in zip(self.cuts, gains[:-1], gains[1:]):
            b = c * self.rate
            xs += [b - ramp, b + ramp]
            ys += [g0, g1]
        self.xs, self.ys = np.array(xs), np.array(ys)

    def analyse(self, read: Callable[[], Iterable[np.ndarray]]) -> None:
        meter = Meter(self.rate, self.channels)
        for x in read():
            meter.feed(x)
        base = self._gains(meter)
        self._curve(base)
        # the limiter lowers loudness where it works: measure its result and correct (up to 4 times)
        for _ in range(4):
            check = Meter(self.rate, self.channels)
            lim = TruePeakLimiter(self.rate, self.channels, self.peak_db)
            pos = 0
            for x in read():
                check.feed(lim.process(self._apply(x, pos)))
                pos += x.shape[1]
            corr = self._gains(check)
            if max(abs(c) for c in corr) < 0.1:
                break
            base = [b + float(np.clip(c, -3.0, 3.0)) for b, c in zip(base, corr)]
            self._curve(base)

    def _apply(self, x: np.ndarray, pos: int) -> np.ndarray:
        t = pos + np.arange(x.shape[1])
        g = 10 ** (np.interp(t, self.xs, self.ys) / 20)
        return (x * g[None]).astype(np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        y = self._apply(x, self.pos)
        self.pos += x.shape[1]
        return self.limiter.process(y)


def normalise(ref: AudioRef, target_lufs: float = -16.0, true_peak_db: float = -1.0,
              per: str = "file", cuts_s=None, cuts_key: str = "",
              duration: Optional[float] = None) -> io.PendingAudioRef:
    """The ref at ``target_lufs`` integrated loudness, true peak ≤ ``true_peak_db`` (lazy).

    ``per``: "file" (one gain) or "scene" (a gain per scene; ``cuts_s`` are the scene starts in
    seconds of this audio's own time, or a function returning them when the audio is rendered,
    then ``cuts_key`` names what they depend on)."""
    if per not in ("file", "scene"):
        raise ValueError(f"per must be 'file' or 'scene', got {per!r}")
    if not -70.0 <= target_lufs <= 0.0:
        raise ValueError(f"target loudness {target_lufs} LUFS is out of range; use -70..0 (e.g. -16 or -23)")
    if not -20.0 <= true_peak_db <= 0.0:
        raise ValueError(f"true peak limit {true_peak_db} dBTP is out of range; use -20..0 (e.g. -1)")
    lazy = callable(cuts_s)
    cuts = [] if per != "scene" or lazy else [round(float(c), 4) for c in (cuts_s or [])]

    def make(rate: int, ch: int) -> Normaliser:
        scene = [float(c) for c in cuts_s()] if per == "scene" and lazy else cuts
        return Normaliser(rate, ch, target_lufs, true_peak_db, scene)

    params = {"target": float(target_lufs), "peak": float(true_peak_db), "per": per,
              "cuts": cuts_key if lazy else cuts}
    return io.process(ref, "loudness", params, make, duration=duration)
