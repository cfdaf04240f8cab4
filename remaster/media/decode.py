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
import logging
import math
import os
import queue
import sys
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import av
from av.video.reformatter import Interpolation
import numpy as np
import torch

from ..stream import AudioRef, Chunk, FrameStream, StreamInfo, fingerprint_of

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

_MATRIX_NAMES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc", 10: "bt2020c", 7: "smpte240m"}


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
        matrix = ""
        container.seek(0)
        try:
            for frame in container.decode(vs):
                rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                color_range = "pc" if int(frame.color_range or 0) == 2 else "tv"
                matrix = _MATRIX_NAMES.get(int(frame.colorspace or 0), "")
                break
        except av.FFmpegError:
            pass
        if not matrix:
            matrix = "bt709" if vs.height >= 720 else "smpte170m"
        if pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "pal", "gray")):
            color_range = "pc"
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
        )
    finally:
        container.close()
    if key is not None:
        _probe_cache[key] = result
    return result


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


def _to_rgb(frame: "av.VideoFrame", p: Probe, size: tuple[int, int], keep_alpha: bool) -> np.ndarray:
    """Convert a decoded frame to integer RGB (or RGBA) ``[H,W,C]`` at ``size`` (unrotated):
    uint8 for 8-bit sources, uint16 for deeper ones. BT.601/709/2020 matrix and range from the
    file, accurate rounding (the fast path drifts ≈1 level darker)."""
    w, h = size
    deep = p.bit_depth > 8
    if keep_alpha and p.has_alpha:
        fmt = "rgba64le" if deep else "rgba"
    else:
        fmt = "rgb48le" if deep else "rgb24"
    kwargs = {}
    if not p.pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "pal", "gray")):
        kwargs = dict(
            src_colorspace={"bt709": "ITU709", "bt2020nc": "BT2020", "bt2020c": "BT2020", "smpte240m": "SMPTE240M"}.get(p.color_matrix, "ITU601"),
            src_color_range="JPEG" if p.color_range == "pc" else "MPEG",
            dst_color_range="JPEG",
        )
    scaler = Interpolation.LANCZOS if (w, h) != (frame.width, frame.height) else Interpolation.BILINEAR
    flags = scaler | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    return frame.reformat(width=w, height=h, format=fmt, interpolation=flags, **kwargs).to_ndarray()


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


def _store(raw: np.ndarray, rotation: int, rgb_out: np.ndarray, alpha_out: Optional[np.ndarray]) -> None:
    """Scale integer pixels to 0..1 float32 straight into the chunk buffer (one pass, no temps)."""
    scale = np.float32(1.0 / (65535.0 if raw.dtype == np.uint16 else 255.0))
    k = (rotation // 90) % 4
    if k:
        raw = np.rot90(raw, k=k, axes=(0, 1))
    np.multiply(raw[..., :3], scale, out=rgb_out, casting="unsafe")
    if alpha_out is not None:
        np.multiply(raw[..., 3], scale, out=alpha_out, casting="unsafe")


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
) -> FrameStream:
    """A lazy stream of a video file's frames (see the module docstring)."""
    path = str(path)
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
    info = StreamInfo(
        fps=out_fps,
        frame_count=n_out,
        width=ow,
        height=oh,
        source=p.path,
        color_range=p.color_range,
        color_matrix=p.color_matrix,
        bit_depth=p.bit_depth,
        has_mask=keep_alpha,
        audio=audio,
        chunk_size=int(chunk_size or 0),
    )
    st = os.stat(path)
    params = dict(
        start=float(start_time), end=float(end_time), nth=every_nth, size=(ow, oh), fps=str(fps),
        alpha=alpha, rot=rotation,
    )
    fp = fingerprint_of("video", p.path, st.st_size, st.st_mtime_ns, params)

    def producer(_self: FrameStream, size: int) -> Iterator[Chunk]:
        yield from _prefetched(lambda: _decode_chunks(p, plan, dec_size, rotation, keep_alpha, size))

    def seek(size: int, a: int, b: int) -> Iterator[Chunk]:  # a range: seek, decode only that
        for ch in _prefetched(lambda: _decode_chunks(p, plan[a:b], dec_size, rotation, keep_alpha, size)):
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
        gen = make()
        try:
            for chunk in gen:
                if not put(chunk):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failed(exc))
        finally:
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


def _decode_chunks(p: Probe, plan: list, dec_size, rotation: int, keep_alpha: bool, size: int) -> Iterator[Chunk]:
    if not plan:
        return
    container = _open(p.path)
    try:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        tb = vs.time_base
        first_needed = p.times[plan[0]]
        if first_needed > 0:
            target = int((first_needed + p.t0) / tb)
            container.seek(target, stream=vs, backward=True, any_frame=False)
        out_h, out_w = (dec_size[0], dec_size[1]) if rotation % 180 else (dec_size[1], dec_size[0])
        total = len(plan)
        pool = _BufferPool()
        buf = alpha = None
        filled = 0
        chunk_start = 0
        cur_idx = -1
        cur_raw = None
        cur = None  # converted (rgb, alpha) of cur_raw, made only when an output needs it
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
                    log.warning("%s: decoding stopped early (%s); holding the last frame", p.path, exc)
                    exhausted = True
                    break
                if fr.pts is not None:
                    t = float(fr.pts * tb) - p.t0
                    idx = min(bisect.bisect_left(p.times, t - 1e-6), len(p.times) - 1)
                else:
                    idx = cur_idx + 1
                cur_raw, cur_idx, cur = fr, idx, None
            if cur_raw is None:
                raise VideoError(
                    f"'{os.path.basename(p.path)}': no frame could be decoded (damaged or truncated file)"
                )
            if cur is None:
                cur = _to_rgb(cur_raw, p, dec_size, keep_alpha)
            if buf is None:  # chunks are filled in place: no per-frame list, no stacking copy
                n = min(size, total - chunk_start)
                buf = pool.get((n, out_h, out_w, 3))
                alpha = torch.empty(n, out_h, out_w) if keep_alpha else None
            _store(cur, rotation, buf.numpy()[filled], alpha.numpy()[filled] if keep_alpha else None)
            filled += 1
            if filled == buf.shape[0]:
                chunk, buf, filled = Chunk(chunk_start, buf, alpha), None, 0
                chunk_start += chunk.frames.shape[0]
                yield chunk
    finally:
        container.close()
