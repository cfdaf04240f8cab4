"""The data types the frame stream carries: chunks of frames, stream metadata, audio references,
and the helpers to size chunks and fingerprint chains. Re-exported by :mod:`remaster.stream`."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Callable, Iterator, Optional

import torch

@dataclass(frozen=True)
class AudioRef:
    """A reference to audio in a file: ``duration`` seconds starting at ``start`` (source time).

    ``offset`` is where, in the output's timeline, that audio starts (seconds). Audio is never
    decoded until an encoder muxes it.
    """

    path: str
    stream_index: int = 0
    start: float = 0.0
    duration: Optional[float] = None
    offset: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    codec: str = ""

    def trimmed(self, start: float, duration: Optional[float]) -> "AudioRef":
        """The part of this audio from ``start`` seconds (relative to this ref) for ``duration``."""
        new_start = self.start + max(0.0, start)
        if self.duration is not None:
            remaining = max(0.0, self.duration - max(0.0, start))
            duration = remaining if duration is None else min(duration, remaining)
        return replace(self, start=new_start, duration=duration)


@dataclass(frozen=True)
class StreamInfo:
    """Metadata carried with a stream. ``fps`` is exact; frame ``i`` is shown at ``i / fps``."""

    fps: Fraction
    frame_count: int
    width: int
    height: int
    source: str = ""
    color_range: str = "tv"  # "tv" (limited) or "pc" (full) of the *source*; frames are always full-range RGB
    color_matrix: str = "bt709"  # matrix the source was decoded with
    bit_depth: int = 8
    has_mask: bool = False
    audio: Optional[AudioRef] = None
    scene_cuts: Optional[tuple] = None  # frame indices where a new shot starts (None = not analysed)
    chunk_size: int = 0  # 0 = automatic
    extra: tuple = ()  # free-form (key, value) pairs for stages that need to pass facts along
    transfer: str = "bt709"  # transfer of the frames' values: bt709 (SDR), smpte2084 (PQ) or arib-std-b67 (HLG)

    @property
    def duration(self) -> float:
        return float(self.frame_count / self.fps) if self.fps else 0.0

    def with_(self, **changes: Any) -> "StreamInfo":
        if "fps" in changes and changes["fps"] is not None:
            changes["fps"] = Fraction(changes["fps"])
        return replace(self, **changes)

    def get_extra(self, key: str, default: Any = None) -> Any:
        for k, v in self.extra:
            if k == key:
                return v
        return default

    def set_extra(self, key: str, value: Any) -> "StreamInfo":
        items = tuple((k, v) for k, v in self.extra if k != key) + ((key, value),)
        return replace(self, extra=items)

    def describe(self) -> dict:
        return {
            "fps": str(self.fps),
            "frame_count": self.frame_count,
            "width": self.width,
            "height": self.height,
            "duration": round(self.duration, 6),
            "source": self.source,
            "audio": bool(self.audio),
            "mask": self.has_mask,
        }


@dataclass
class Chunk:
    """A run of consecutive frames. ``start`` is the index of the first frame in its stream.

    ``native`` (optional) holds the same frames still in the decoder's form (e.g. YUV planes);
    ``frames`` is then made from it only when first read. An encoder may write ``native`` as it
    is while ``native_intact`` (nobody has read, and so possibly changed, ``frames``)."""

    start: int
    frames: torch.Tensor
    mask: Optional[torch.Tensor] = None
    native: Optional[Any] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._frames is None:
            if self.native is None:
                raise ValueError("a chunk needs frames or native frames")
            shape = tuple(self.native.shape)  # (n, H, W)
        else:
            if self._frames.ndim != 4 or self._frames.shape[-1] != 3:
                raise ValueError(f"chunk frames must be [n,H,W,3], got {tuple(self._frames.shape)}")
            shape = tuple(self._frames.shape[:3])
        if self.mask is not None and tuple(self.mask.shape) != shape:
            raise ValueError(f"chunk mask {tuple(self.mask.shape)} does not match frames {shape}")

    @property
    def native_intact(self) -> bool:
        return self.native is not None and self._frames is None

    def __len__(self) -> int:
        return int(self._frames.shape[0]) if self._frames is not None else int(self.native.shape[0])

    @property
    def stop(self) -> int:
        return self.start + len(self)

    def with_(self, **changes: Any) -> "Chunk":
        kw = dict(start=self.start, frames=self._frames, mask=self.mask, native=self.native)
        if "frames" in changes:
            kw["native"] = None
        kw.update(changes)
        return Chunk(**kw)


def _get_frames(self: Chunk) -> torch.Tensor:
    if self._frames is None:
        self._frames = self.native.to_rgb()
    return self._frames


def _set_frames(self: Chunk, value: Optional[torch.Tensor]) -> None:
    self._frames = value


Chunk.frames = property(_get_frames, _set_frames)  # type: ignore[assignment]  # lazy when native


def default_chunk_size(width: int, height: int, budget_bytes: Optional[int] = None) -> int:
    """Frames per chunk so that one chunk of float32 RGB (+mask) stays within a memory budget.

    The budget is ``REMASTER_CHUNK_MB`` megabytes if set, else 1/16 of available memory capped at
    256 MB. Several chunks are alive at once across a chain of stages, so the budget is a fraction.
    """
    env = os.environ.get("REMASTER_CHUNK_FRAMES")
    if env:
        return max(1, int(env))
    if budget_bytes is None:
        mb = os.environ.get("REMASTER_CHUNK_MB")
        if mb:
            budget_bytes = int(float(mb) * 2**20)
        else:
            budget_bytes = min(256 * 2**20, _available_memory() // 16)
    per_frame = max(1, width * height * 4 * 4)
    return int(max(1, min(64, budget_bytes // per_frame)))


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dependency, this is belt and braces
        return 4 * 2**30


def fingerprint_of(*parts: Any) -> str:
    """A stable short hash of JSON-able parts (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _json_default(o: Any) -> Any:
    if isinstance(o, Fraction):
        return str(o)
    if isinstance(o, torch.Tensor):
        t = o.detach().cpu().contiguous()
        return {"tensor": hashlib.sha256(t.numpy().tobytes()).hexdigest(), "shape": list(t.shape)}
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if hasattr(o, "fingerprint") and isinstance(getattr(o, "fingerprint"), str):
        return o.fingerprint
    return repr(o)


@dataclass(frozen=True)
class Temporal:
    """The temporal context a stage needs to produce output frame ``i``.

    * ``behind`` / ``ahead``: input frames ``i - behind .. i + ahead`` (a centred window, a
      smoothing radius). For a ``recurrent`` stage (state carried from frame to frame) ``behind``
      is the warm-up after which the state no longer depends on where the pass started.
    * ``cut_aware``: the window / state never crosses a scene cut (warm-up stops at the shot's
      first frame, which makes recurrent warm-up exact there).
    * ``whole_shot``: output frames need statistics of their entire shot.
    * ``span``: for stages that change the timeline (frame-rate conversion): a function mapping an
      output range ``(a, b)`` to the input range it needs.

    A stage without a declaration (``temporal=None``) is rendered from frame 0 for any range:
    always exact, never fast.
    """

    behind: int = 0
    ahead: int = 0
    recurrent: bool = False
    cut_aware: bool = False
    whole_shot: bool = False
    span: Optional[Callable[[int, int], tuple]] = None

    @property
    def exact(self) -> bool:
        """Range renders equal the full render bit for bit (else within the warm-up tolerance)."""
        return not self.recurrent


FRAMEWISE = Temporal()


def source_span(stream: Any) -> tuple:
    """The frame range a producer's ``upstream`` argument covers in this pass."""
    return getattr(stream, "span", (0, stream.info.frame_count))


def rebatch(chunks: Iterator[Chunk], size: int) -> Iterator[Chunk]:
    """Re-cut a chunk iterator into chunks of exactly ``size`` frames (the last may be shorter)."""
    buf_f: list = []
    buf_m: list = []
    start = None
    count = 0
    has_mask = None
    for ch in chunks:
        if start is None:
            start = ch.start
        if has_mask is None:
            has_mask = ch.mask is not None
        buf_f.append(ch.frames)
        buf_m.append(ch.mask)
        count += len(ch)
        while count >= size:
            frames = torch.cat(buf_f)
            masks = torch.cat(buf_m) if has_mask else None
            yield Chunk(start, frames[:size], None if masks is None else masks[:size])
            start += size
            count -= size
            buf_f = [frames[size:]] if count else []
            buf_m = [masks[size:] if masks is not None else None] if count else []
    if count:
        frames = torch.cat(buf_f)
        masks = torch.cat(buf_m) if has_mask else None
        yield Chunk(start, frames, masks)


def pieces(chunk: Chunk, size: int = 1) -> Iterator[Chunk]:
    """``chunk`` in runs of at most ``size`` frames (its frames converted once, then sliced).
    Analyses step through a chunk this way and check interrupt between the runs, so a stop waits
    for one frame's work, never a whole chunk's."""
    n = len(chunk)
    if n <= size:
        yield chunk
        return
    frames, mask = chunk.frames, chunk.mask
    for i in range(0, n, size):
        j = min(n, i + size)
        yield Chunk(chunk.start + i, frames[i:j], None if mask is None else mask[i:j])


def iter_frames(chunks: Iterator[Chunk]) -> Iterator[tuple]:
    """``(index, frame[H,W,3], mask[H,W] or None)`` one at a time from a chunk iterator."""
    for chunk in chunks:
        for i in range(len(chunk)):
            yield chunk.start + i, chunk.frames[i], None if chunk.mask is None else chunk.mask[i]


class RangeView:
    """What a stage's producer sees as its upstream during a range pass: the upstream stream,
    whose passes cover only ``span``."""

    def __init__(self, stream: "FrameStream", lo: int, hi: int) -> None:  # noqa: F821  (remaster.stream)
        self._stream = stream
        self.span = (int(lo), int(hi))

    def chunks(self, chunk_size: Optional[int] = None, start: int = 0, stop: Optional[int] = None) -> Iterator[Chunk]:
        lo, hi = self.span
        a, b = max(lo, start), hi if stop is None else min(hi, stop)
        return self._stream.chunks(chunk_size, a, b)

    def __iter__(self) -> Iterator[Chunk]:
        return self.chunks()

    def frames(self, chunk_size: Optional[int] = None) -> Iterator[tuple]:
        return iter_frames(self.chunks(chunk_size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def audio_range(audio: Optional[AudioRef], t0: float, duration: Optional[float]) -> Optional[AudioRef]:
    """The audio heard during output seconds ``t0 .. t0 + duration``, re-based to start at 0."""
    if audio is None:
        return None
    if audio.offset >= t0:
        dur = None if duration is None else max(0.0, duration - (audio.offset - t0))
        return replace(audio.trimmed(0.0, dur), offset=audio.offset - t0)
    return replace(audio.trimmed(t0 - audio.offset, duration), offset=0.0)
