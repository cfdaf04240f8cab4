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
import threading
from fractions import Fraction
from typing import Iterator, Optional

import av

from .. import host
from ..stream import AudioRef, Chunk, FrameStream, StreamInfo, fingerprint_of
from .frames import NativeFrames, _Converter
from .probe import Probe, VideoError, embedded, made_by, open_container, probe  # noqa: F401  (decode.probe etc. are public)

log = logging.getLogger("remaster.media")


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
        yield from _prefetched(lambda stop: _decode_chunks(p, plan, conv, keep_alpha, size, stop))

    def seek(size: int, a: int, b: int) -> Iterator[Chunk]:  # a range: seek, decode only that
        conv = _Converter(p, dec_size, rotation, tonemap)
        for ch in _prefetched(lambda stop: _decode_chunks(p, plan[a:b], conv, keep_alpha, size, stop)):
            yield ch.with_(start=ch.start + a)

    return FrameStream(info, producer, fp, label=f"load:{os.path.basename(path)}", seek=seek)


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _prefetched(make: "callable", depth: int = 1) -> Iterator[Chunk]:
    """Run a chunk generator in a background thread, at most ``depth`` chunks ahead. PyAV decodes
    and converts without holding the GIL, so decoding overlaps with whatever the consumer (the
    stages, the encoder) does with the previous chunk. ``make(stop)`` gets the event that stops
    it: the generator checks it between frames, so stopping early (an interrupt, an error, a
    range that ends) waits for at most one frame's decoding, never a chunk's; while the consumer
    waits for a chunk it checks interrupt."""
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
            gen = make(stop)
            for chunk in gen:
                if not put(chunk) or stop.is_set():
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
            try:
                item = q.get(timeout=0.05)
            except queue.Empty:  # the decoder is still on its chunk: a stop need not wait for it
                host.check_interrupt()
                continue
            if item is done:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        try:  # free the slot a waiting put may be blocked on
            q.get_nowait()
        except queue.Empty:
            pass
        thread.join(timeout=10)


def _decode_chunks(p: Probe, plan: list, conv: _Converter, keep_alpha: bool, size: int,
                   stop: Optional[threading.Event] = None) -> Iterator[Chunk]:
    """Decode the planned frames into chunks of :class:`NativeFrames` (converted lazily); ends
    early, between two frames, once ``stop`` is set."""
    if not plan:
        return
    name = os.path.basename(p.path)
    container = open_container(p.path)
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
            if stop is not None and stop.is_set():
                return
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
