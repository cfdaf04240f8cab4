"""Video decoding into a :class:`~remaster.stream.FrameStream` with PyAV.

* The file is probed once (a demux-only scan of presentation timestamps, no decoding), which
  gives the exact frame times even for variable-frame-rate phone footage.
* Output frames are on a constant-rate grid: output frame ``i`` shows the source frame whose
  timestamp is nearest to ``start + i / fps`` (VFR → CFR by timestamps, not by frame counts).
* Each pass seeks to the keyframe before ``start`` and decodes forward (frame-accurate seeking).
* Rotation from the display matrix is applied, 8- and 10/12-bit sources keep their precision, and
  alpha is dropped or kept as the stream mask.
"""
from __future__ import annotations

import bisect
import json
import logging
import math
import os
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Optional

import av
from av.video.reformatter import Interpolation
import numpy as np
import torch

from ..stream import AudioRef, Chunk, FrameStream, StreamInfo, fingerprint_of
from . import hdr as hdr_mod
from . import yuv

log = logging.getLogger("remaster.media")


class VideoError(ValueError):
    """A video file cannot be read, or the requested range/options do not fit it."""


@dataclass(frozen=True)
class Probe:
    path: str
    width: int  # coded size (before rotation)
    height: int
    rotation: int  # degrees, counter-clockwise as stored in the display matrix
    fps: Fraction  # average rate
    times: tuple  # presentation times (seconds) of every frame, sorted, relative to t0
    t0: float  # container time of the first frame
    pix_fmt: str
    bit_depth: int
    has_alpha: bool
    color_range: str
    color_matrix: str
    audio: Optional[AudioRef]
    vfr: bool
    color_primaries: str = "bt709"
    transfer: str = "bt709"
    matrix_guessed: bool = False  # the file has no matrix tag: guessed by size like players do
    metadata: tuple = ()  # container tags as (key, value) pairs

    @property
    def hdr(self) -> bool:
        return self.transfer in yuv.HDR_TRANSFERS

    @property
    def colour_note(self) -> str:
        """One line on how colours are read (shown in Load Video's facts)."""
        if self.pix_fmt.startswith(_RGB_PREFIXES):
            return f"{self.pix_fmt}, {self.bit_depth}-bit RGB"
        rng = "full" if self.color_range == "pc" else "limited"
        text = f"{self.pix_fmt}, {self.bit_depth}-bit, {rng} range, matrix {self.color_matrix}"
        if self.matrix_guessed:
            text += " (untagged: guessed from the frame size, as players do)"
        if self.hdr:
            text += f", HDR {'PQ' if self.transfer == 'smpte2084' else 'HLG'} {self.color_primaries}"
        return text

    @property
    def frame_count(self) -> int:
        return len(self.times)

    @property
    def duration(self) -> float:
        """Source duration: last frame time plus one frame."""
        if not self.times:
            return 0.0
        return self.times[-1] + (1.0 / float(self.fps) if self.fps else 0.0)

    @property
    def display_size(self) -> tuple[int, int]:
        if self.rotation % 180 != 0:
            return self.height, self.width
        return self.width, self.height


_probe_cache: dict = {}

_RGB_PREFIXES = ("rgb", "bgr", "gbr", "argb", "abgr", "pal", "gray", "0rgb", "0bgr")


def _open(path: str):
    if not os.path.exists(path):
        raise VideoError(f"video file not found: '{path}'. Put it in ComfyUI's input folder or give a full path.")
    if os.path.getsize(path) == 0:
        raise VideoError(f"video file '{path}' is empty (0 bytes); re-export or re-copy it")
    try:
        return av.open(path)
    except av.FFmpegError as exc:
        raise VideoError(
            f"cannot open '{os.path.basename(path)}' as video ({exc}). The file may be truncated or "
            "not a video; re-export it or check that the copy finished."
        ) from exc


def probe(path: str | os.PathLike) -> Probe:
    """Scan a file's video timestamps (demux only) and read its stream facts. Cached per file."""
    path = str(path)
    try:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _probe_cache:
        return _probe_cache[key]
    container = _open(path)
    try:
        if not container.streams.video:
            raise VideoError(f"'{os.path.basename(path)}' has no video stream")
        vs = container.streams.video[0]
        cc = vs.codec_context
        tb = vs.time_base
        pts = []
        try:
            for packet in container.demux(vs):
                if packet.size == 0:
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is not None:
                    pts.append(t)
        except av.FFmpegError as exc:
            log.warning("%s: demux stopped early (%s); using the %d frames before the damage", path, exc, len(pts))
        if not pts:
            raise VideoError(
                f"'{os.path.basename(path)}' contains no video frames (zero-frame or damaged file)"
            )
        pts.sort()
        times_abs = [float(p * tb) for p in pts]
        t0 = times_abs[0]
        times = tuple(t - t0 for t in times_abs)
        fps = vs.average_rate or vs.guessed_rate
        if not fps or fps <= 0:
            if len(times) > 1 and times[-1] > 0:
                fps = Fraction(len(times) - 1) / Fraction(times[-1]).limit_denominator(100000)
            else:
                fps = Fraction(25)
        fps = Fraction(fps).limit_denominator(100000)
        # VFR if frame intervals differ noticeably from the average rate
        vfr = False
        if len(times) > 2:
            d = np.diff(np.asarray(times))
            vfr = bool(np.max(np.abs(d - 1.0 / float(fps))) > 0.25 / float(fps))
        pix_fmt = cc.pix_fmt or "yuv420p"
        fmt = av.VideoFormat(pix_fmt)
        bit_depth = max((c.bits for c in fmt.components), default=8)
        has_alpha = any(getattr(c, "is_alpha", False) for c in fmt.components) or pix_fmt.startswith(("yuva", "rgba", "bgra", "argb", "abgr", "gbrap", "ya"))
        # rotation: decode one frame's display matrix when the stream carries one
        rotation = 0
        color_range = "tv"
        matrix = primaries = transfer = ""
        container.seek(0)
        try:
            for frame in container.decode(vs):
                rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                color_range = "pc" if int(frame.color_range or 0) == 2 else "tv"
                matrix = yuv.MATRIX_NAMES.get(int(frame.colorspace or 0), "")
                primaries = yuv.PRIMARIES_NAMES.get(int(frame.color_primaries or 0), "")
                transfer = yuv.TRC_NAMES.get(int(frame.color_trc or 0), "")
                break
        except av.FFmpegError:
            pass
        if pix_fmt.startswith("yuvj"):
            color_range = "pc"
        guessed = not matrix
        if guessed:
            matrix = yuv.guess_matrix(vs.width, vs.height)
        primaries = primaries or yuv.primaries_for(matrix)
        transfer = transfer or ("bt709" if primaries != "bt2020" else "bt2020-10")
        if pix_fmt.startswith(_RGB_PREFIXES):
            color_range = "pc"
            guessed = False
        metadata = tuple((str(k), str(v)) for k, v in (container.metadata or {}).items())
        audio = None
        if container.streams.audio:
            a = container.streams.audio[0]
            a_start = float(a.start_time * a.time_base) if a.start_time is not None else 0.0
            audio = AudioRef(
                path=os.path.abspath(path),
                stream_index=a.index,
                start=t0,  # container time where frame 0 is shown
                duration=None,
                offset=0.0,
                sample_rate=int(a.rate or 0),
                channels=int(a.channels or 0),
                codec=a.codec_context.name,
            )
            _ = a_start
        result = Probe(
            path=os.path.abspath(path),
            width=int(vs.width),
            height=int(vs.height),
            rotation=rotation,
            fps=fps,
            times=times,
            t0=t0,
            pix_fmt=pix_fmt,
            bit_depth=int(bit_depth),
            has_alpha=bool(has_alpha),
            color_range=color_range,
            color_matrix=matrix,
            audio=audio,
            vfr=vfr,
            color_primaries=primaries,
            transfer=transfer,
            matrix_guessed=guessed,
            metadata=metadata,
        )
    finally:
        container.close()
    if key is not None:
        _probe_cache[key] = result
    return result


def embedded(p: Probe) -> dict:
    """What a saved video says about how it was made: ``prompt``, ``workflow`` and ``remaster``
    container tags (JSON) as Save Video (ours, ComfyUI core's, VHS's) writes them."""
    out = {}
    for k, v in p.metadata:
        if k.lower() in ("prompt", "workflow", "remaster", "comment"):
            try:
                out[k.lower()] = json.loads(v)
            except ValueError:
                if k.lower() != "comment":
                    out[k.lower()] = v
    return out


def made_by(p: Probe) -> str:
    """One line for Load Video's facts: the workflow embedded in the file, if any."""
    e = embedded(p)
    parts = []
    if "workflow" in e or "prompt" in e:
        g = e.get("prompt") if isinstance(e.get("prompt"), dict) else {}
        parts.append(("ComfyUI workflow" if "workflow" in e else "ComfyUI prompt") + " embedded"
                     + (f" ({len(g)} nodes)" if g else ""))
    r = e.get("remaster")
    if isinstance(r, dict):
        parts.append(f"Remaster chain {r.get('fingerprint', '?')} from {r.get('source') or '?'}")
    return "; ".join(parts)


def even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def output_size(w: int, h: int, max_side: int = 0, width: int = 0, height: int = 0) -> tuple[int, int]:
    """Target size keeping the aspect ratio, with even sides (encoders need them)."""
    if width and height:
        return even(width), even(height)
    if width:
        return even(width), even(h * width / w)
    if height:
        return even(w * height / h), even(height)
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        return even(w * s), even(h * s)
    return w, h


def frame_plan(p: Probe, start: float, end: float, fps: Fraction, every_nth: int) -> list[int]:
    """For each output frame, the index of the source frame (in presentation order) it shows."""
    if start < 0:
        raise VideoError(f"start_time must be ≥ 0, got {start}")
    dur = p.duration
    stop = dur if (not end or end <= 0) else min(end, dur)
    if start >= stop:
        raise VideoError(
            f"start_time {start:.3f}s is at or after the end ({stop:.3f}s); the video is {dur:.3f}s long"
        )
    n = int(math.floor((stop - start) * fps + 1e-6))
    n = max(1, n)
    times = p.times
    plan = []
    step = 1.0 / float(fps)
    for i in range(0, n, max(1, every_nth)):
        t = start + i * step
        k = bisect.bisect_left(times, t)
        if k >= len(times):
            k = len(times) - 1
        elif k > 0 and (t - times[k - 1]) <= (times[k] - t) + 1e-9:
            k -= 1
        plan.append(k)
    return plan


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


_POOL: Optional[ThreadPoolExecutor] = None


def _workers() -> ThreadPoolExecutor:
    """Threads that convert the frames of a chunk in parallel (OpenCV and swscale release the GIL)."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="remaster-yuv")
    return _POOL


def _planar_equivalent(pix_fmt: str, bits: int) -> Optional[str]:
    """The planar YUV format we convert from for semi-planar/packed YUV (NV12, P010, YUYV...)."""
    if pix_fmt.startswith(_RGB_PREFIXES) or yuv.layout_of(pix_fmt) is not None:
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
        buf = self.pool.get((len(frames), self.out_h, self.out_w, 3))
        o = buf.numpy()
        list(_workers().map(lambda i: self._one(frames[i], o[i]), range(len(frames))))
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


def open_video(
    path: str | os.PathLike,
    start_time: float = 0.0,
    end_time: float = 0.0,
    every_nth: int = 1,
    max_side: int = 0,
    width: int = 0,
    height: int = 0,
    force_fps: float | Fraction = 0,
    alpha: str = "drop",
    auto_rotate: bool = True,
    chunk_size: int = 0,
    hdr: str = "tonemap",
) -> FrameStream:
    """A lazy stream of a video file's frames (see the module docstring).

    ``hdr``: for PQ/HLG sources, "tonemap" gives SDR BT.709 frames (see :mod:`.hdr`), "keep"
    gives the HDR signal itself (non-linear BT.2020 R'G'B'; the stream info says which)."""
    path = str(path)
    if hdr not in ("tonemap", "keep"):
        raise VideoError(f"hdr must be 'tonemap' or 'keep', got '{hdr}'")
    if every_nth < 1:
        raise VideoError(f"every_nth must be ≥ 1, got {every_nth}")
    if alpha not in ("drop", "mask"):
        raise VideoError(f"alpha must be 'drop' or 'mask', got '{alpha}'")
    p = probe(path)
    rotation = p.rotation if auto_rotate else 0
    src_fps = p.fps
    fps = Fraction(force_fps).limit_denominator(100000) if force_fps else src_fps
    if fps <= 0:
        raise VideoError(f"force_fps must be > 0, got {force_fps}")
    plan = frame_plan(p, float(start_time), float(end_time), fps, every_nth)
    out_fps = fps / every_nth
    dw, dh = (p.height, p.width) if rotation % 180 else (p.width, p.height)
    ow, oh = output_size(dw, dh, max_side, width, height)
    # decode size before rotation
    dec_size = (oh, ow) if rotation % 180 else (ow, oh)
    keep_alpha = alpha == "mask" and p.has_alpha
    n_out = len(plan)
    duration = n_out / out_fps
    audio = None
    if p.audio is not None:
        audio = AudioRef(
            path=p.audio.path,
            stream_index=p.audio.stream_index,
            start=p.t0 + float(start_time),
            duration=float(duration),
            offset=0.0,
            sample_rate=p.audio.sample_rate,
            channels=p.audio.channels,
            codec=p.audio.codec,
        )
    tonemap = p.hdr and hdr == "tonemap"
    info = StreamInfo(
        fps=out_fps,
        frame_count=n_out,
        width=ow,
        height=oh,
        source=p.path,
        color_range=p.color_range,
        color_matrix="bt709" if tonemap else p.color_matrix,
        bit_depth=p.bit_depth,
        has_mask=keep_alpha,
        audio=audio,
        chunk_size=int(chunk_size or 0),
        transfer="bt709" if tonemap else p.transfer,
    )
    info = info.set_extra("color_primaries", "bt709" if tonemap else p.color_primaries)
    note = p.colour_note + ("; tone-mapped to SDR BT.709 (BT.2390)" if tonemap else "")
    info = info.set_extra("colour", note)
    if p.matrix_guessed:
        log.info("%s: %s", os.path.basename(path), note)
    st = os.stat(path)
    params = dict(
        start=float(start_time), end=float(end_time), nth=every_nth, size=(ow, oh), fps=str(fps),
        alpha=alpha, rot=rotation, hdr=hdr if p.hdr else "",
    )
    fp = fingerprint_of("video", p.path, st.st_size, st.st_mtime_ns, params)

    def producer(_self: FrameStream, size: int) -> Iterator[Chunk]:
        conv = _Converter(p, dec_size, rotation, tonemap)
        yield from _prefetched(lambda: _decode_chunks(p, plan, conv, keep_alpha, size))

    def seek(size: int, a: int, b: int) -> Iterator[Chunk]:  # a range: seek, decode only that
        conv = _Converter(p, dec_size, rotation, tonemap)
        for ch in _prefetched(lambda: _decode_chunks(p, plan[a:b], conv, keep_alpha, size)):
            yield ch.with_(start=ch.start + a)

    return FrameStream(info, producer, fp, label=f"load:{os.path.basename(path)}", seek=seek)


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _prefetched(make: "callable", depth: int = 1) -> Iterator[Chunk]:
    """Run a chunk generator in a background thread, at most ``depth`` chunks ahead. PyAV decodes
    and converts without holding the GIL, so decoding overlaps with whatever the consumer (the
    stages, the encoder) does with the previous chunk. Stopping early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        gen = None
        try:
            gen = make()
            for chunk in gen:
                if not put(chunk):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, raised there (a failure to start too)
            put(_Failed(exc))
        finally:
            if gen is not None:
                gen.close()

    thread = threading.Thread(target=work, name="remaster-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


def _decode_chunks(p: Probe, plan: list, conv: _Converter, keep_alpha: bool, size: int) -> Iterator[Chunk]:
    """Decode the planned frames into chunks of :class:`NativeFrames` (converted lazily)."""
    if not plan:
        return
    name = os.path.basename(p.path)
    container = _open(p.path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        tb = vs.time_base
        first_needed = p.times[plan[0]]
        if first_needed > 0:
            target = int((first_needed + p.t0) / tb)
            container.seek(target, stream=vs, backward=True, any_frame=False)
        total = len(plan)
        batch: list = []
        chunk_start = 0
        cur_idx = -1
        cur = None
        decoded = container.decode(vs)
        exhausted = False
        for k in plan:
            while cur_idx < k and not exhausted:
                try:
                    fr = next(decoded)
                except StopIteration:
                    exhausted = True
                    break
                except av.FFmpegError as exc:
                    log.warning("%s: decoding stopped early (%s); holding the last frame", name, exc)
                    exhausted = True
                    break
                if fr.pts is not None:
                    t = float(fr.pts * tb) - p.t0
                    idx = min(bisect.bisect_left(p.times, t - 1e-6), len(p.times) - 1)
                else:
                    idx = cur_idx + 1
                cur, cur_idx = fr, idx
            if cur is None:
                raise VideoError(f"'{name}': no frame could be decoded (damaged or truncated file); re-export or re-copy it")
            batch.append(cur)
            if len(batch) == min(size, total - chunk_start):
                native = NativeFrames(batch, conv)
                mask = conv.alpha(batch) if keep_alpha else None
                chunk = Chunk(chunk_start, None, mask, native=native)
                chunk_start += len(batch)
                batch = []
                yield chunk
    finally:
        container.close()
