"""YUV ↔ RGB for every source the loader meets: 8/10/12/16-bit, 4:2:0/4:2:2/4:4:4, limited or
full range, BT.601 / BT.709 / BT.2020 (non-constant luminance) / SMPTE 240M matrices.

The conversion is done here in float32 (torch) from the decoded planes rather than by libswscale:
libswscale's RGB48 output with full chroma interpolation mixes up the channels of 10/12-bit
sources (hues destroyed) and its other paths are biased by ½–2 levels. Chroma is upsampled
bilinearly from the centre of its block (libswscale's siting, so FFmpeg-made files line up)
and downsampled with the matching box filter, so a decode → encode round trip of an untouched
picture comes back within rounding.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import av
import numpy as np
import torch

# Kr, Kb of each matrix (the names are FFmpeg's colorspace names)
_K = {
    "bt709": (0.2126, 0.0722),
    "smpte170m": (0.299, 0.114),
    "bt470bg": (0.299, 0.114),
    "fcc": (0.30, 0.11),
    "smpte240m": (0.212, 0.087),
    "bt2020nc": (0.2627, 0.0593),
    "bt2020c": (0.2627, 0.0593),  # constant luminance is rare; treated as NCL
}
MATRIX_IDS = {"bt709": 1, "fcc": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7, "bt2020nc": 9, "bt2020c": 10}
MATRIX_NAMES = {v: k for k, v in MATRIX_IDS.items()}
PRIMARIES_IDS = {"bt709": 1, "bt470m": 4, "bt470bg": 5, "smpte170m": 6, "smpte240m": 7, "bt2020": 9}
PRIMARIES_NAMES = {v: k for k, v in PRIMARIES_IDS.items()}
TRC_IDS = {"bt709": 1, "gamma22": 4, "gamma28": 5, "smpte170m": 6, "smpte240m": 7, "linear": 8, "iec61966-2-1": 13,
           "bt2020-10": 14, "bt2020-12": 15, "smpte2084": 16, "arib-std-b67": 18}
TRC_NAMES = {v: k for k, v in TRC_IDS.items()}
HDR_TRANSFERS = ("smpte2084", "arib-std-b67")


def primaries_for(matrix: str) -> str:
    """Primaries that go with a matrix when the file does not say (what players assume)."""
    return {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470bg", "smpte240m": "smpte240m",
            "bt2020nc": "bt2020", "bt2020c": "bt2020"}.get(matrix, "bt709")


def guess_matrix(width: int, height: int) -> str:
    """The matrix players assume for an untagged file: BT.601 below HD, BT.709 from HD up
    (mpv/VLC/browsers use the same size rule)."""
    return "bt709" if (width >= 1280 or height >= 720) else "smpte170m"


@dataclass(frozen=True)
class Layout:
    """Plane layout of a planar YUV pixel format."""

    bits: int
    sub_x: int  # chroma subsampling shifts
    sub_y: int
    alpha: bool

    @property
    def dtype(self):
        return np.uint8 if self.bits <= 8 else np.uint16


def layout_of(pix_fmt: str) -> Optional[Layout]:
    """The layout of a planar YUV format we convert ourselves, or None (RGB, packed, NV12, ...)."""
    try:
        fmt = av.VideoFormat(pix_fmt)
    except Exception:
        return None
    if not pix_fmt.startswith(("yuv", "yuvj", "yuva")) or fmt.is_rgb:
        return None
    comps = fmt.components
    if len(comps) < 3 or any(c.plane != i for i, c in enumerate(comps)):
        return None  # semi-planar or packed
    if pix_fmt.endswith("be"):
        return None
    bits = comps[0].bits
    if bits > 16:
        return None
    probe = av.VideoFrame(16, 16, pix_fmt)
    sx = {16: 0, 8: 1, 4: 2}[probe.planes[1].width]
    sy = {16: 0, 8: 1, 4: 2}[probe.planes[1].height]
    return Layout(bits, sx, sy, len(comps) == 4)


def _plane(frame: "av.VideoFrame", i: int, dtype) -> np.ndarray:
    p = frame.planes[i]
    item = np.dtype(dtype).itemsize
    a = np.frombuffer(p, dtype=dtype).reshape(p.height, p.line_size // item)
    return a[:, : p.width]


def _levels(bits: int, full: bool):
    """(y offset, y scale, c offset, c scale) to map codes to Y in 0..1 and C in -0.5..0.5."""
    m = float(1 << (bits - 8))
    if full:
        top = float((1 << bits) - 1)
        return 0.0, top, float(1 << (bits - 1)), top
    return 16.0 * m, 219.0 * m, 128.0 * m, 224.0 * m


def _matrix(matrix: str) -> torch.Tensor:
    kr, kb = _K.get(matrix, _K["bt709"])
    kg = 1.0 - kr - kb
    # R = Y + 2(1-kr) Cr ; B = Y + 2(1-kb) Cb ; G = (Y - kr R - kb B) / kg
    return torch.tensor([
        [1.0, 0.0, 2 * (1 - kr)],
        [1.0, -2 * (1 - kb) * kb / kg, -2 * (1 - kr) * kr / kg],
        [1.0, 2 * (1 - kb), 0.0],
    ], dtype=torch.float32)


def _affine(matrix: str, bits: int, full: bool) -> np.ndarray:
    """3×4 matrix taking (Y, Cb, Cr) codes to RGB in 0..1 (range offsets folded in)."""
    yo, ys, co, cs = _levels(bits, full)
    m = _matrix(matrix).numpy().astype(np.float64)
    a = np.zeros((3, 4))
    a[:, 0] = m[:, 0] / ys
    a[:, 1] = m[:, 1] / cs
    a[:, 2] = m[:, 2] / cs
    a[:, 3] = -m[:, 0] * yo / ys - (m[:, 1] + m[:, 2]) * co / cs
    return a.astype(np.float32)


def _up(c: np.ndarray, sx: int, sy: int, h: int, w: int) -> np.ndarray:
    """Bilinear chroma upsampling to ``h×w`` (float32), chroma sited at the centre of its luma
    block (what libswscale, and so every FFmpeg-made file, uses)."""
    import cv2

    if not sx and not sy:
        return c.astype(np.float32)
    fx, fy = 1.0 / (1 << sx), 1.0 / (1 << sy)
    # output pixel (x, y) reads chroma at ((x + ½)·fx − ½, (y + ½)·fy − ½)
    mat = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]], np.float64)
    return cv2.warpAffine(c.astype(np.float32), mat, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def frame_to_rgb(frame: "av.VideoFrame", lay: Layout, affine: np.ndarray, out: np.ndarray) -> None:
    """One decoded planar YUV frame → float32 RGB 0..1 written into ``out`` ``[H,W,3]``."""
    import cv2

    h, w = frame.height, frame.width
    y = _plane(frame, 0, lay.dtype).astype(np.float32)
    cb = _up(_plane(frame, 1, lay.dtype), lay.sub_x, lay.sub_y, h, w)
    cr = _up(_plane(frame, 2, lay.dtype), lay.sub_x, lay.sub_y, h, w)
    cv2.transform(cv2.merge([y, cb, cr]), affine, dst=out)
    np.clip(out, 0.0, 1.0, out=out)


def frames_to_rgb(frames: list, pix_fmt: str, matrix: str, full_range: bool, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Decoded YUV frames (same size and format) → float32 RGB ``[n,H,W,3]`` in 0..1."""
    lay = layout_of(pix_fmt)
    if lay is None:
        raise ValueError(f"{pix_fmt} is not a planar YUV format")
    h, w = frames[0].height, frames[0].width
    if out is None:
        out = torch.empty(len(frames), h, w, 3)
    aff = _affine(matrix, lay.bits, full_range)
    o = out.numpy()
    for i, f in enumerate(frames):
        frame_to_rgb(f, lay, aff, o[i])
    return out


def _down(c: np.ndarray, sx: int, sy: int) -> np.ndarray:
    """The downsampling matching :func:`_up`: the mean of each chroma block, then the inverse
    of what bilinear upsampling followed by that mean does ([1,6,1]/8 per halved axis, inverted
    to 5 taps), so decode → encode of an untouched picture gives its chroma back instead of
    blurring it a little more each generation. Edges replicated; odd sizes round up like
    FFmpeg's chroma planes."""
    import cv2

    if not sx and not sy:
        return c
    kx = np.full(1 << sx, 1.0 / (1 << sx), np.float32)
    ky = np.full(1 << sy, 1.0 / (1 << sy), np.float32)
    f = cv2.sepFilter2D(c, -1, kx, ky, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    f = np.ascontiguousarray(f[:: 1 << sy, :: 1 << sx])
    one = np.ones(1, np.float32)
    return cv2.sepFilter2D(f, -1, _UNBLUR if sx == 1 else one, _UNBLUR if sy == 1 else one,
                           borderType=cv2.BORDER_REPLICATE)


# 5-tap inverse of [1,6,1]/8 (√2·r^|n|, r = 2√2 − 3), normalised to unit gain
_UNBLUR = np.array([2 ** 0.5 * (2 * 2 ** 0.5 - 3) ** abs(n) for n in range(-2, 3)], np.float32)
_UNBLUR /= _UNBLUR.sum()


def rgb_to_frame(rgb: np.ndarray, pix_fmt: str, matrix: str, full_range: bool = False) -> "av.VideoFrame":
    """One float RGB frame ``[H,W,3]`` (0..1, numpy or tensor) → an ``av.VideoFrame`` in planar
    YUV ``pix_fmt``, tagged with the matrix and range."""
    import cv2

    if isinstance(rgb, torch.Tensor):
        rgb = rgb.detach().cpu().float().numpy()
    lay = layout_of(pix_fmt)
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    kr, kb = _K.get(matrix, _K["bt709"])
    kg = 1.0 - kr - kb
    yo, ys, co, cs = _levels(lay.bits, full_range)
    fwd = np.array([
        [kr * ys, kg * ys, kb * ys, yo + 0.5],
        [-kr * cs * 0.5 / (1 - kb), -kg * cs * 0.5 / (1 - kb), 0.5 * cs, co + 0.5],
        [0.5 * cs, -kg * cs * 0.5 / (1 - kr), -kb * cs * 0.5 / (1 - kr), co + 0.5],
    ], np.float32)  # +0.5: truncation below rounds
    ycc = cv2.transform(np.ascontiguousarray(rgb, np.float32), fwd)
    y, cb, cr = cv2.split(ycc)
    top = float((1 << lay.bits) - 1)
    frame = av.VideoFrame(w, h, pix_fmt)
    item = np.dtype(lay.dtype).itemsize
    for i, v in enumerate((y, _down(cb, lay.sub_x, lay.sub_y), _down(cr, lay.sub_x, lay.sub_y))):
        p = frame.planes[i]
        np.clip(v, 0.0, top, out=v)
        buf = np.empty((p.height, p.line_size // item), lay.dtype)
        buf[:, : p.width] = v[: p.height, : p.width]  # float → int truncates (after +0.5: rounds)
        if p.line_size // item > p.width:
            buf[:, p.width :] = 0
        p.update(buf)
    frame.colorspace = MATRIX_IDS.get(matrix, 1)
    frame.color_range = 2 if full_range else 1
    return frame


_POOL: Optional[ThreadPoolExecutor] = None


def workers() -> ThreadPoolExecutor:
    """Threads that convert a chunk's frames between YUV and RGB a frame each (OpenCV, swscale and
    NumPy release the GIL); the decoder and the encoder share them, so together they never run
    more conversions than the machine has cores."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="remaster-yuv")
    return _POOL
