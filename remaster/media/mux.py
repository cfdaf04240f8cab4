"""Audio into an output file in step with the video: the source range is decoded, trimmed to the
sample, resampled and re-encoded on demand up to the video's current time, so audio and video
packets interleave (players and muxers want them close together)."""
from __future__ import annotations

import queue
import threading
from fractions import Fraction
from typing import Optional

import av
import numpy as np

from ..stream import AudioRef


class AudioPump:
    """Decodes, trims and re-encodes an :class:`AudioRef` into an output stream, on demand up to a
    given output time, so audio and video packets interleave."""

    def __init__(self, out: "av.container.OutputContainer", ref: AudioRef, spec: dict) -> None:
        self.ref = ref
        self.src = av.open(ref.path)
        self.ain = self.src.streams[ref.stream_index]
        channels = min(int(ref.channels or self.ain.channels or 2), int(spec.get("max_channels", 8)))
        layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(channels, "stereo")
        if layout == "stereo":
            channels = 2
        rate = int(spec.get("sample_rate") or ref.sample_rate or self.ain.rate or 48000)
        codec = av.codec.Codec(spec["codec"], "w")
        if codec.audio_rates and rate not in codec.audio_rates:
            rate = min(codec.audio_rates, key=lambda r: abs(r - rate))
        self.rate = rate
        self.ostream = out.add_stream(spec["codec"], rate=rate)
        self.ostream.layout = layout
        if spec.get("bit_rate"):
            self.ostream.bit_rate = int(spec["bit_rate"])
        fmt = codec.audio_formats[0].name if codec.audio_formats else "s16"
        self.ostream.format = fmt
        self.resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        self.start = float(ref.start)
        self.total = None if ref.duration is None else int(round(ref.duration * rate))
        self.offset_samples = int(round(ref.offset * rate))
        self.written = 0  # samples written to the output
        self.frames = None
        self.done = False
        self.flushed = False
        if self.start > 0:
            self.src.seek(int(max(0.0, self.start - 1.0) / self.ain.time_base), stream=self.ain, backward=True)
        self.frames = self.src.decode(self.ain)
        self.src_pos = 0.0  # source time (seconds) of the next decoded sample

    def _emit(self, arr: np.ndarray, n: int, fmt: str, layout: str) -> list:
        if n <= 0:
            return []
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=layout)
        f.sample_rate = self.rate
        f.pts = self.offset_samples + self.written
        f.time_base = Fraction(1, self.rate)
        self.written += n
        return list(self.ostream.encode(f))

    def pump(self, out, until_seconds: Optional[float]) -> None:
        """Encode audio up to output time ``until_seconds`` (None = to the end)."""
        while not self.done:
            if until_seconds is not None and self.written / self.rate >= until_seconds:
                return
            try:
                frame = next(self.frames)
            except (StopIteration, av.FFmpegError):
                self.done = True
                break
            t = float(frame.pts * frame.time_base) if frame.pts is not None else None
            for rf in self.resampler.resample(frame):
                self._write(out, rf, t)
                t = None
        if self.done and not self.flushed:
            self.flushed = True
            for rf in self.resampler.resample(None):
                self._write(out, rf, None)
            for packet in self.ostream.encode(None):
                out.mux(packet)

    def _write(self, out, rf: "av.AudioFrame", t: Optional[float]) -> None:
        """Write one resampled frame; ``t`` is its source time when known (else continues on)."""
        if self.total is not None and self.written >= self.total:
            self.done = True
            return
        arr = rf.to_ndarray()
        fmt, layout = rf.format.name, rf.layout.name
        planar = rf.format.is_planar
        nch = len(rf.layout.channels)
        n = arr.shape[-1] if planar else arr.shape[-1] // nch
        if t is None:
            t = self.src_pos
        self.src_pos = t + n / self.rate
        if not planar:
            arr = arr.reshape(n, nch).T  # work planar-shaped, restore below
        if t < self.start:
            cut = min(n, int(round((self.start - t) * self.rate)))
            arr = arr[:, cut:]
            n -= cut
        if self.total is not None:
            left = self.total - self.written
            if n > left:
                arr = arr[:, :left]
                n = left
        if n <= 0:
            return
        if not planar:
            arr = arr.T.reshape(1, -1)
        for packet in self._emit(arr, n, fmt, layout):
            out.mux(packet)

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=30)
        self.src.close()

    # ---- in the background: audio is encoded in its own thread (as the ffmpeg CLI does) and
    # its packets are muxed by the video thread, which alone touches the output container
    _thread = None

    def run_in_background(self) -> None:
        """Encode all the audio in a background thread; :meth:`drain` muxes what is ready."""
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._finished = False

        class _Sink:
            def mux(_self, packet) -> None:
                if self._stop.is_set():
                    raise InterruptedError
                self._q.put(packet)

        def run() -> None:
            try:
                self.pump(_Sink(), None)
            except InterruptedError:
                pass
            except BaseException as exc:  # re-raised by drain in the video thread
                self._error = exc
            finally:
                self._q.put(None)

        self._thread = threading.Thread(target=run, name="remaster-audio", daemon=True)
        self._thread.start()

    def drain(self, out, wait: bool = False) -> None:
        """Mux the audio packets encoded so far (all of them, waiting, when ``wait``)."""
        while not self._finished:
            try:
                packet = self._q.get(block=wait)
            except queue.Empty:
                return
            if packet is None:
                self._finished = True
                if self._error is not None:
                    raise self._error
                return
            out.mux(packet)
