"""Decoded frames to float RGB: the per-chunk converter (resize in YUV, our YUV → RGB, rotation,
HDR tone mapping, frames in parallel into reused buffers) and :class:`NativeFrames`, a chunk's
frames as the decoder gave them, converted only when a stage reads them."""
from __future__ import annotations

import sys
from typing import Optional

import av
from av.video.reformatter import Interpolation
import numpy as np
import torch

from .. import host
from . import hdr as hdr_mod
from . import yuv
from .probe import RGB_PREFIXES, Probe


class _BufferPool:
    """Reuses chunk buffers that no consumer holds any more. Fresh 100+ MB buffers cost a page
    fault per 4 KiB on first touch, which was half of the decoder's time at 1080p. A buffer is
    reused only when nothing references it: not the tensor object (Python refcount) nor any view
    or NumPy array of its storage (storage use count)."""

    def __init__(self, keep: int = 3) -> None:
        self.keep = keep
        self.items: list = []

    @staticmethod
    def _unused(t: torch.Tensor) -> bool:
        try:
            # refs: the pool list, the loop variable, getrefcount's argument, this function's argument
            return sys.getrefcount(t) <= 4 and torch._C._storage_Use_Count(t.untyped_storage()._cdata) <= 2
        except Exception:  # private API moved: never reuse
            return False

    def get(self, shape: tuple) -> torch.Tensor:
        for t in self.items:
            if tuple(t.shape) == shape and self._unused(t):
                return t
        t = torch.empty(shape)
        self.items.append(t)
        if len(self.items) > self.keep:
            self.items.pop(0)
        return t




def _planar_equivalent(pix_fmt: str, bits: int) -> Optional[str]:
    """The planar YUV format we convert from for semi-planar/packed YUV (NV12, P010, YUYV...)."""
    if pix_fmt.startswith(RGB_PREFIXES) or yuv.layout_of(pix_fmt) is not None:
        return None
    try:
        probe_frame = av.VideoFrame(16, 16, pix_fmt)
        c = av.VideoFormat(pix_fmt).components
    except Exception:
        return None
    if len(c) < 3:
        return None
    sub = "444" if c[1].width == 16 and c[1].height == 16 else ("422" if c[1].height == 16 else "420")
    del probe_frame
    depth = "" if bits <= 8 else f"{min(16, 10 if bits <= 10 else (12 if bits <= 12 else 16))}le"
    return f"yuv{sub}p{depth}"


class _Converter:
    """Turns the decoded frames of one chunk into float32 RGB ``[n,H,W,3]`` (0..1): resize in
    YUV, our YUV → RGB (see :mod:`.yuv`), rotation, HDR tone mapping; one pass per frame, frames
    in parallel, into reused buffers."""

    def __init__(self, p: Probe, dec_size: tuple, rotation: int, tonemap: bool) -> None:
        self.p = p
        self.dec_w, self.dec_h = dec_size
        self.rotation = rotation
        self.out_h, self.out_w = (self.dec_w, self.dec_h) if rotation % 180 else (self.dec_h, self.dec_w)
        self.tonemap = tonemap and p.hdr
        self.planar = p.pix_fmt if yuv.layout_of(p.pix_fmt) is not None else _planar_equivalent(p.pix_fmt, p.bit_depth)
        self.lay = yuv.layout_of(self.planar) if self.planar else None
        self.aff = yuv._affine(p.color_matrix, self.lay.bits, p.color_range == "pc") if self.lay else None
        self.pool = _BufferPool()

    def _prepared(self, fr: "av.VideoFrame") -> "av.VideoFrame":
        if self.planar and fr.format.name != self.planar:
            fr = fr.reformat(format=self.planar)
        if (fr.width, fr.height) != (self.dec_w, self.dec_h):
            fr = fr.reformat(width=self.dec_w, height=self.dec_h, interpolation=Interpolation.LANCZOS)
        return fr

    def _one(self, fr: "av.VideoFrame", out: np.ndarray) -> None:
        fr = self._prepared(fr)
        k = (self.rotation // 90) % 4
        target = out if not k else np.empty((self.dec_h, self.dec_w, 3), np.float32)
        if self.lay is not None:
            yuv.frame_to_rgb(fr, self.lay, self.aff, target)
        else:  # RGB, grey and palette sources: no colour matrix involved
            deep = self.p.bit_depth > 8
            raw = fr.reformat(format="rgb48le" if deep else "rgb24").to_ndarray()
            np.multiply(raw, np.float32(1.0 / (65535.0 if deep else 255.0)), out=target, casting="unsafe")
        if k:
            out[...] = np.rot90(target, k=k, axes=(0, 1))

    def rgb(self, frames: list) -> torch.Tensor:
        """The chunk's frames as float RGB. Interrupt is checked before each frame: a stop
        requested while a large chunk converts waits for the frames in flight, not the chunk."""
        buf = self.pool.get((len(frames), self.out_h, self.out_w, 3))
        o = buf.numpy()
        stopped: list = []

        def one(i: int) -> None:
            if stopped:
                return
            try:
                host.check_interrupt()
            except BaseException:
                stopped.append(i)
                raise
            self._one(frames[i], o[i])

        list(yuv.workers().map(one, range(len(frames))))
        if self.tonemap:
            for i in range(0, len(frames), 4):
                buf[i : i + 4] = hdr_mod.to_sdr(buf[i : i + 4], self.p.transfer)
        return buf

    def alpha(self, frames: list) -> torch.Tensor:
        """The alpha channel as a mask ``[n,H,W]`` (alpha is always full range)."""
        out = torch.empty(len(frames), self.out_h, self.out_w)
        k = (self.rotation // 90) % 4
        for i, fr in enumerate(frames):
            if (fr.width, fr.height) != (self.dec_w, self.dec_h):
                fr = fr.reformat(width=self.dec_w, height=self.dec_h, interpolation=Interpolation.LANCZOS)
            if self.lay is not None and self.lay.alpha:
                a = yuv._plane(fr, 3, self.lay.dtype).astype(np.float32) / float((1 << self.lay.bits) - 1)
            else:
                deep = self.p.bit_depth > 8
                raw = fr.reformat(format="rgba64le" if deep else "rgba").to_ndarray()[..., 3]
                a = raw.astype(np.float32) / (65535.0 if deep else 255.0)
            out[i] = torch.from_numpy(np.ascontiguousarray(np.rot90(a, k=k)) if k else a)
        return out


class NativeFrames:
    """The decoded frames of a chunk as the decoder gave them (YUV planes, source size, not
    rotated). ``Chunk.frames`` is made from them only when a stage reads it; an encoder writes
    them as they are when no stage did (passthrough at the speed of the codecs)."""

    def __init__(self, frames: list, conv: _Converter) -> None:
        self.frames = frames
        self.conv = conv
        self.shape = (len(frames), conv.out_h, conv.out_w)
        p = conv.p
        self.pix_fmt = frames[0].format.name
        self.width, self.height = frames[0].width, frames[0].height
        # what the planes mean, and whether they equal the converted frames' geometry
        self.matrix, self.full_range, self.transfer = p.color_matrix, p.color_range == "pc", p.transfer
        self.primaries = p.color_primaries
        self.same_geometry = conv.rotation == 0 and (conv.dec_w, conv.dec_h) == (self.width, self.height)

    def to_rgb(self) -> torch.Tensor:
        return self.conv.rgb(self.frames)
