"""Make small test videos with PyAV (patterns, tones, VFR timing, odd sizes, 5.1 audio)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def colour_pattern(h: int, w: int, i: int = 0, soft: bool = True) -> np.ndarray:
    """Colour bars over the top half, smooth gradients below; shifted by ``i`` for motion."""
    img = np.zeros((h, w, 3), np.uint8)
    bars = [(235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16), (235, 16, 235), (235, 16, 16),
            (16, 16, 235), (128, 128, 128)]
    bw = w // len(bars)
    for k, c in enumerate(bars):
        img[: h // 2, k * bw : (k + 1) * bw] = c
    x = np.linspace(0, 255, w)[None, :]
    y = np.linspace(0, 255, h - h // 2)[:, None]
    img[h // 2 :, :, 0] = np.clip(x + 0 * y, 0, 255)
    img[h // 2 :, :, 1] = np.clip(y + 0 * x, 0, 255)
    img[h // 2 :, :, 2] = np.clip(255 - x * 0.5 - y * 0.5, 0, 255)
    img = np.roll(img, i * 2, axis=1)
    if soft:  # camera-like edges (a lens never draws a one-pixel chroma step)
        import cv2

        img = cv2.GaussianBlur(img, (0, 0), 1.5)
    return img


def write_video(
    path: Path,
    frames,  # iterable of uint8 [H,W,3]
    fps=30,
    pts=None,  # optional explicit pts list (in 1/time_base units) for VFR
    time_base=None,
    codec="libx264",
    pix_fmt="yuv420p",
    options=None,
    audio=None,  # (samples float32 [C,T], rate, layout) or None
    fmt=None,
):
    out = av.open(str(path), "w", format=fmt)
    frames = list(frames)
    h, w = frames[0].shape[:2]
    v = out.add_stream(codec, rate=Fraction(fps).limit_denominator(100000))
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    if options:
        v.options = options
    if pix_fmt.startswith("yuv"):
        cc = v.codec_context
        cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 1, 1, 1, 1
    tb = time_base or Fraction(1, 1) / Fraction(fps).limit_denominator(100000)
    v.time_base = tb
    a = None
    if audio is not None:
        samples, rate, layout = audio
        a = out.add_stream("aac", rate=rate)
        a.layout = layout
    for i, img in enumerate(frames):
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        if pix_fmt.startswith("yuv"):
            f = f.reformat(format=pix_fmt, dst_colorspace="ITU709", src_colorspace="ITU709", dst_color_range="MPEG", src_color_range="JPEG")
            f.colorspace, f.color_range = 1, 1
        f.pts = pts[i] if pts is not None else i
        f.time_base = tb
        for p in v.encode(f):
            out.mux(p)
    for p in v.encode(None):
        out.mux(p)
    if a is not None:
        from remaster.audio.io import encode_all

        samples, rate, layout = audio
        encode_all(out, a, samples, rate, layout, step=1024)
    out.close()
    return path


def tone(duration: float, rate: int, at: float, channels: int = 2, length: float = 0.1) -> np.ndarray:
    t = np.arange(int(duration * rate)) / rate
    sig = np.where((t >= at) & (t < at + length), 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)
    return np.repeat(sig[None], channels, 0)


def audio_onset(path: Path, threshold: float = 0.1):
    """(seconds of the first loud sample, total seconds, channels) of a file's first audio stream."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None, 0.0, 0
        a = c.streams.audio[0]
        onset, n = None, 0
        for f in c.decode(a):
            x = f.to_ndarray()
            if not f.format.is_planar:
                x = x.reshape(-1, len(f.layout.channels)).T
            x = x.astype(np.float64)
            if x.dtype.kind == "i" or np.abs(x).max() > 1.5:
                x = x / 32768.0
            idx = np.nonzero(np.abs(x[0]) > threshold)[0]
            if onset is None and len(idx):
                onset = float(f.pts * f.time_base) + idx[0] / a.rate
            n += f.samples
        return onset, n / a.rate, a.channels


def decode_all(path: Path) -> np.ndarray:
    """All frames as uint8 RGB via PyAV with the file's own colour tags (like a player)."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def assert_same_video(a, b, min_psnr: float = 38.0) -> None:
    """Decoded frames of a segmented run against a single run: same count and size, and the same
    picture within what one lossy re-encode allows. (A passthrough keeps the source's YUV when it
    runs in one go, while its segments go through lossless RGB once; x264 then codes slightly
    different input. Chains that change pixels convert to RGB either way.)"""
    import numpy as np

    assert a.shape == b.shape, (a.shape, b.shape)
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    psnr = 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    assert psnr >= min_psnr, f"segmented output differs from the single run: PSNR {psnr:.1f} dB"
