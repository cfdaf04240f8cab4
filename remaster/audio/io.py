"""Block-wise audio in and out (PyAV), and the lazy processed-audio reference.

* :func:`read_blocks` decodes an :class:`AudioRef`'s range as float32 ``[C, n]`` blocks (1 s) at a chosen
  rate and channel count, exactly ``round(duration * rate)`` samples in all (zero-padded if the
  source ends early), never holding more than one block.
* :class:`FlacWriter` writes blocks to FLAC (24-bit), resampling to the output rate on the way,
  under a temp name renamed when complete, with exactly the expected number of samples.
* :func:`process` turns a ref plus a stage into a :class:`PendingAudioRef`: a ref whose file is
  rendered the first time its ``path`` is read, then reused (the name is the chain's key).
"""
from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Optional

import av
import numpy as np

from ..stream import AudioRef, fingerprint_of

LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
BLOCK_SECONDS = 1.0

_pending: dict[str, Callable[[], None]] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def layout_for(channels: int) -> str:
    if channels not in LAYOUTS:
        raise ValueError(f"audio with {channels} channels has no standard layout; use 1, 2, 6 or 8")
    return LAYOUTS[channels]


def ref_format(ref: AudioRef) -> tuple[int, int]:
    """(sample rate, channels) of a ref, from the ref or, if it does not say, from its file."""
    if ref.sample_rate and ref.channels:
        return int(ref.sample_rate), int(ref.channels)
    with av.open(ref.path) as c:
        a = c.streams[ref.stream_index]
        return int(ref.sample_rate or a.rate), int(ref.channels or a.channels)


def total_samples(duration: float, rate: int) -> int:
    return int(round(duration * rate))


def read_blocks(ref: AudioRef, rate: Optional[int] = None, channels: Optional[int] = None,
                block_seconds: float = BLOCK_SECONDS, duration: Optional[float] = None) -> Iterator[np.ndarray]:
    """The ref's range as float32 ``[C, n]`` blocks (all but the last exactly ``block_seconds``)."""
    src_rate, src_ch = ref_format(ref)
    rate = int(rate or src_rate)
    channels = int(channels or src_ch)
    dur = ref.duration if ref.duration is not None else duration
    if dur is None:
        raise ValueError("the audio's duration is unknown; pass the stream's duration")
    need = total_samples(dur, rate)
    step = max(1, int(round(block_seconds * rate)))
    buf: list[np.ndarray] = []
    have = 0
    emitted = 0
    for x in _decode(ref, rate, channels):
        x = x[:, : need - emitted - have]
        if x.shape[1] == 0:
            break
        buf.append(x)
        have += x.shape[1]
        while have >= step:
            cat = np.concatenate(buf, axis=1)
            yield cat[:, :step]
            emitted += step
            rest = cat[:, step:]
            buf, have = ([rest] if rest.shape[1] else []), rest.shape[1]
        if emitted + have >= need:
            break
    if have:
        yield np.concatenate(buf, axis=1)
        emitted += have
    while emitted < need:  # the source ended early: silence to the exact length
        n = min(step, need - emitted)
        yield np.zeros((channels, n), np.float32)
        emitted += n


def _decode(ref: AudioRef, rate: int, channels: int) -> Iterator[np.ndarray]:
    """Samples from ``ref.start`` on, as float32 [C, n] at ``rate`` (continuous, no trimming at the end)."""
    with av.open(ref.path) as c:
        a = c.streams[ref.stream_index]
        resampler = av.AudioResampler(format="fltp", layout=layout_for(channels), rate=rate)
        if ref.start > 0:
            c.seek(int(max(0.0, ref.start - 1.0) / a.time_base), stream=a, backward=True)
        pos: Optional[float] = None  # source time of the next output sample
        frames = c.decode(a)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                frame = None
            except av.FFmpegError:
                frame = None
            if frame is not None and pos is None:
                pos = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
            for rf in resampler.resample(frame):
                x = rf.to_ndarray().astype(np.float32, copy=False)
                n = x.shape[1]
                t0 = pos if pos is not None else 0.0
                pos = t0 + n / rate
                if t0 + n / rate <= ref.start:
                    continue
                if t0 < ref.start:
                    x = x[:, int(round((ref.start - t0) * rate)):]
                yield x
            if frame is None:
                return


def pcm_frame(x: np.ndarray, rate: int, layout: str, pts: int, fmt: str = "fltp") -> av.AudioFrame:
    """A PyAV audio frame from ``[C, n]`` samples: float32 planar (``fltp``) or packed integers
    (``s16``, ``s32``; ``x`` already of that integer type)."""
    data = np.ascontiguousarray(x, np.float32) if fmt == "fltp" else np.ascontiguousarray(x.T.reshape(1, -1))
    f = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    f.sample_rate = rate
    f.pts = pts
    f.time_base = Fraction(1, rate)
    return f


def encode_all(out, stream, x: np.ndarray, rate: int, layout: str, fmt: str = "fltp", step: int = 4800) -> None:
    """Encode all of ``[C, n]`` into an open container's audio stream and flush the encoder."""
    for i in range(0, x.shape[1], step):
        for p in stream.encode(pcm_frame(x[:, i:i + step], rate, layout, i, fmt)):
            out.mux(p)
    for p in stream.encode(None):
        out.mux(p)


def write_wav(path: str | Path, x: np.ndarray, rate: int, codec: str = "pcm_f32le") -> Path:
    """Write ``[C, n]`` (or ``[n]``) float samples to a WAV file: 32-bit float or 16-bit (``pcm_s16le``)."""
    x = np.atleast_2d(x)
    layout = layout_for(x.shape[0])
    if codec == "pcm_s16le":
        data, fmt = (np.clip(x, -1.0, 1.0) * 32767).round().astype(np.int16), "s16"
    else:
        data, fmt = x.astype(np.float32), "fltp"
    with av.open(str(path), "w", format="wav") as out:
        s = out.add_stream(codec, rate=rate)
        s.layout = layout
        encode_all(out, s, data, rate, layout, fmt)
    return Path(path)


class FlacWriter:
    """Write float32 ``[C, n]`` blocks at ``in_rate`` to a FLAC file at ``rate``; exactly ``total`` samples."""

    def __init__(self, path: Path, rate: int, channels: int, total: int, in_rate: Optional[int] = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:8]}.part.flac")
        self.rate, self.channels, self.total = int(rate), int(channels), int(total)
        self.layout = layout_for(channels)
        self.out = av.open(str(self.tmp), "w", format="flac")
        self.stream = self.out.add_stream("flac", rate=self.rate)
        self.stream.layout = self.layout
        self.stream.format = "s32"
        self.resampler = None
        self.in_rate = int(in_rate or rate)
        if self.in_rate != self.rate:
            self.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        self.written = 0

    def write(self, x: np.ndarray) -> None:
        if x.shape[0] != self.channels:
            raise ValueError(f"block has {x.shape[0]} channels, the writer {self.channels}")
        if self.resampler is None:
            self._encode(x)
            return
        for rf in self.resampler.resample(pcm_frame(x, self.in_rate, self.layout, None)):
            self._encode(rf.to_ndarray())

    def _encode(self, x: np.ndarray) -> None:
        x = x[:, : self.total - self.written]
        n = x.shape[1]
        if n == 0:
            return
        pcm = (np.clip(x, -1.0, 1.0 - 2.0**-31) * 2.0**31).astype(np.int32)
        for p in self.stream.encode(pcm_frame(pcm, self.rate, self.layout, self.written, "s32")):
            self.out.mux(p)
        self.written += n

    def close(self) -> Path:
        if self.resampler is not None:
            for rf in self.resampler.resample(None):
                self._encode(rf.to_ndarray())
        while self.written < self.total:
            self._encode(np.zeros((self.channels, min(48000, self.total - self.written)), np.float32))
        for p in self.stream.encode(None):
            self.out.mux(p)
        self.out.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.out.close()
        finally:
            self.tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# lazy processed audio
# ---------------------------------------------------------------------------------------------
class PendingAudioRef(AudioRef):
    """An :class:`AudioRef` whose file is rendered the first time ``path`` is read (then reused)."""

    def __getattribute__(self, name: str):
        if name == "path":
            p = object.__getattribute__(self, "path")
            ensure(p)
            return p
        return object.__getattribute__(self, name)

    def trimmed(self, start: float, duration: Optional[float]) -> "AudioRef":
        part = AudioRef.trimmed(AudioRef(**_fields(self)), start, duration)  # a plain copy: not rendered
        return ref_with(self, start=part.start, duration=part.duration)


def _fields(ref: AudioRef) -> dict:
    return {f.name: object.__getattribute__(ref, f.name) for f in dataclasses.fields(ref)}


def ref_with(ref: AudioRef, **changes) -> AudioRef:
    """``dataclasses.replace`` that does not render a pending ref."""
    return type(ref)(**{**_fields(ref), **changes})


def raw_path(ref: AudioRef) -> str:
    """The ref's path without rendering it (for keys and messages)."""
    return object.__getattribute__(ref, "path")


def is_rendered(ref: AudioRef) -> bool:
    return os.path.exists(raw_path(ref))


def ensure(path: str) -> None:
    """Render a pending audio file if it is not there yet (thread-safe, once)."""
    job = _pending.get(path)
    if job is None or os.path.exists(path):
        return
    with _guard:
        lock = _locks.setdefault(path, threading.Lock())
    with lock:
        if not os.path.exists(path):
            job()


def audio_key(ref: AudioRef) -> str:
    """What the content of a ref's range depends on: file identity, stream, start, duration."""
    p = raw_path(ref)
    ident: object = p
    if p not in _pending and os.path.exists(p):
        st = os.stat(p)
        ident = [os.path.abspath(p), st.st_size, int(st.st_mtime)]
    return fingerprint_of(ident, ref.stream_index, round(ref.start, 6), ref.duration)


def cache_folder() -> Path:
    from ..media.cache import cache_dir

    return cache_dir()


def process(ref: AudioRef, name: str, params: dict, make_stage: Callable[[int, int], "object"], *,
            duration: Optional[float] = None, work_rate: Optional[int] = None,
            work_channels: Optional[int] = None, out_channels: Optional[int] = None,
            out_rate: Optional[int] = None) -> PendingAudioRef:
    """A lazy ref to ``ref`` processed by a stage (rendered once, on first read of its path).

    ``make_stage(rate, channels)`` builds the stage for one render: an object with
    ``process(x [C, n]) -> [C', m]``, an integer ``latency`` (samples its output lags its input,
    compensated here), optionally ``flush_samples`` (zeros to feed at the end so buffered input
    comes out) and ``analyse(read)`` (``read()`` starts a pass over the audio only, before the real one).
    """
    src_rate, src_ch = ref_format(ref)
    dur = ref.duration if ref.duration is not None else duration
    if dur is None:
        raise ValueError("the audio's duration is unknown; pass the stream's duration")
    rate = int(work_rate or src_rate)
    ch_in = int(work_channels or src_ch)
    ch_out = int(out_channels or ch_in)
    o_rate = int(out_rate or src_rate)
    key = fingerprint_of(audio_key(ref), dur, name, params, rate, ch_in, ch_out, o_rate)
    path = str(cache_folder() / f"audio_{name}_{key}.flac")
    src = ref_with(ref, duration=dur) if ref.duration is None else ref

    def render() -> None:
        from .. import host

        stage = make_stage(rate, ch_in)
        if hasattr(stage, "analyse"):
            stage.analyse(lambda: read_blocks(src, rate, ch_in))
        blocks_total = -(-total_samples(dur, rate) // max(1, int(round(BLOCK_SECONDS * rate))))
        progress = host.Progress(blocks_total, label=f"Audio: {name}")
        writer = FlacWriter(Path(path), o_rate, ch_out, total_samples(dur, o_rate), in_rate=rate)
        try:
            skip = int(getattr(stage, "latency", 0))
            blocks = read_blocks(src, rate, ch_in)
            extra = skip + int(getattr(stage, "flush_samples", 0))
            tail = [np.zeros((ch_in, extra), np.float32)] if extra else []
            for x in _chain(blocks, tail):
                y = stage.process(x)
                if skip:
                    cut = min(skip, y.shape[1])
                    y, skip = y[:, cut:], skip - cut
                if y.shape[1]:
                    writer.write(y)
                if progress.done < blocks_total:
                    progress.update(1)  # also where an interrupt stops the render
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            progress.close()

    _pending[path] = render
    return PendingAudioRef(path=path, stream_index=0, start=0.0, duration=dur, offset=ref.offset,
                           sample_rate=o_rate, channels=ch_out, codec="flac")


def _chain(*its):
    for it in its:
        yield from it


def read_all(ref: AudioRef, rate: Optional[int] = None, channels: Optional[int] = None,
             duration: Optional[float] = None) -> np.ndarray:
    """The whole range in memory (tests, short clips)."""
    parts = list(read_blocks(ref, rate, channels, duration=duration))
    _, ch = ref_format(ref)
    return np.concatenate(parts, axis=1) if parts else np.zeros((channels or ch, 0), np.float32)


def file_ref(path: str | Path) -> AudioRef:
    """A ref to the first audio stream of a media file (music, a separate soundtrack)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"audio file '{path}' does not exist; give a path or a file name in the input folder")
    try:
        with av.open(str(p)) as c:
            if not c.streams.audio:
                raise ValueError(f"'{p.name}' has no audio stream; pick a file with sound")
            a = c.streams.audio[0]
            if a.duration is not None:
                dur = float(a.duration * a.time_base)
            elif c.duration is not None:
                dur = c.duration / 1_000_000
            else:
                dur = None
            return AudioRef(path=str(p), stream_index=a.index, start=0.0, duration=dur,
                            sample_rate=int(a.rate), channels=int(a.channels), codec=a.codec_context.name)
    except av.FFmpegError as exc:
        raise ValueError(f"cannot read '{p.name}' as audio: {exc}") from exc


class LazyAudio(dict):
    """ComfyUI's AUDIO dict (``waveform [1, C, T]``, ``sample_rate``) decoded on first use."""

    def __init__(self, ref: AudioRef):
        super().__init__()
        self._ref = ref

    def _load(self) -> None:
        if not dict.__len__(self):
            from ..media.audio import read_audio

            dict.update(self, read_audio(self._ref))


def _after_load(name: str):
    def method(self, *args):
        self._load()
        return getattr(dict, name)(self, *args)

    method.__name__ = name
    return method


for _name in ("__getitem__", "get", "__contains__", "__iter__", "__len__", "keys", "items", "values"):
    setattr(LazyAudio, _name, _after_load(_name))
