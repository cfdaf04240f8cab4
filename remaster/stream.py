"""The frame stream: the one frame-batch type every Remaster stage shares.

A :class:`FrameStream` is a lazy, re-iterable source of :class:`Chunk` objects. Each chunk holds
``frames`` ``[n, H, W, 3]`` float32 in 0..1 (ComfyUI's IMAGE convention) and an optional ``mask``
``[n, H, W]`` float32 in 0..1 (1 = foreground). Nothing is decoded or computed until a consumer
iterates; each iteration starts a fresh pass, so stage state never leaks between passes and a
stream can be previewed, then saved, then read again for a comparison video.

Memory is bounded by the chunk size (and by the window a stage declares), never by video length.

A stage is written as a *producer*: ``producer(upstream, chunk_size) -> Iterator[Chunk]``. It may
keep state across chunks (previous frame, recurrent state, running statistics), look ahead, or
iterate ``upstream`` more than once (an analysis pass first, then the real pass). For the common
case of a frame-wise function with optional state, use :meth:`FrameStream.map`.

This module imports no ComfyUI module.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Callable, Iterator, Optional

import torch

__all__ = [
    "AudioRef",
    "StreamInfo",
    "Chunk",
    "FrameStream",
    "default_chunk_size",
    "fingerprint_of",
    "from_tensor",
]


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


Producer = Callable[["FrameStream", int], Iterator[Chunk]]


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


class FrameStream:
    """A lazy, re-iterable stream of chunks with metadata and a chain fingerprint."""

    def __init__(
        self,
        info: StreamInfo,
        producer: Producer,
        fingerprint: str,
        upstream: Optional["FrameStream"] = None,
        label: str = "",
    ) -> None:
        self.info = info
        self._producer = producer
        self.fingerprint = fingerprint
        self.upstream = upstream
        self.label = label
        # the stream whose frames (not masks) this one passes on unchanged: frame analyses such
        # as scene cuts are done once there and shared by every mask-only stage after it
        self.frames_source: "FrameStream" = self

    # ---- iteration ---------------------------------------------------------------------------
    @property
    def chunk_size(self) -> int:
        return self.info.chunk_size or default_chunk_size(self.info.width, self.info.height)

    def chunks(self, chunk_size: Optional[int] = None) -> Iterator[Chunk]:
        """Start a fresh pass and yield chunks of at most ``chunk_size`` frames."""
        size = int(chunk_size or self.chunk_size)
        expected = 0
        for chunk in self._producer(self.upstream if self.upstream is not None else self, size):
            if len(chunk) == 0:
                continue
            if chunk.start != expected:
                raise RuntimeError(
                    f"stage '{self.label}' produced a chunk starting at frame {chunk.start}, "
                    f"expected {expected}"
                )
            expected = chunk.stop
            yield chunk

    def __iter__(self) -> Iterator[Chunk]:
        return self.chunks()

    def frames(self, chunk_size: Optional[int] = None) -> Iterator[tuple]:
        """Yield ``(index, frame[H,W,3], mask[H,W] or None)`` one at a time."""
        for chunk in self.chunks(chunk_size):
            for i in range(len(chunk)):
                yield chunk.start + i, chunk.frames[i], None if chunk.mask is None else chunk.mask[i]

    def read(self, start: int = 0, stop: Optional[int] = None, max_frames: int = 10_000) -> Chunk:
        """Collect frames ``start..stop`` into one chunk (for previews and short clips)."""
        stop = self.info.frame_count if stop is None else min(stop, self.info.frame_count)
        if stop - start > max_frames:
            raise ValueError(
                f"asked for {stop - start} frames in memory; the cap is {max_frames}. "
                "Trim the range or raise the cap."
            )
        frames, masks = [], []
        for chunk in self.chunks():
            if chunk.stop <= start:
                continue
            if chunk.start >= stop:
                break
            a, b = max(start, chunk.start) - chunk.start, min(stop, chunk.stop) - chunk.start
            frames.append(chunk.frames[a:b])
            if chunk.mask is not None:
                masks.append(chunk.mask[a:b])
        if not frames:
            h, w = self.info.height, self.info.width
            return Chunk(start, torch.zeros(0, h, w, 3), None)
        mask = torch.cat(masks) if masks and len(masks) == len(frames) else None
        return Chunk(start, torch.cat(frames), mask)

    # ---- building chains ---------------------------------------------------------------------
    def derive(
        self,
        name: str,
        params: dict,
        producer: Producer,
        info: Optional[StreamInfo] = None,
        frames_unchanged: bool = False,
    ) -> "FrameStream":
        """A new stream whose chunks come from ``producer(self, chunk_size)``.
        ``frames_unchanged``: the stage changes only masks/metadata, never frames or their count."""
        fp = fingerprint_of(self.fingerprint, name, params)
        out = FrameStream(info or self.info, producer, fp, upstream=self, label=name)
        if frames_unchanged:
            out.frames_source = self.frames_source
        return out

    def map(
        self,
        name: str,
        params: dict,
        make_fn: Callable[[], Callable[[Chunk], Chunk]],
        info: Optional[StreamInfo] = None,
        frames_unchanged: bool = False,
    ) -> "FrameStream":
        """A new stream applying ``make_fn()`` (a fresh, possibly stateful callable per pass)
        to every chunk. The callable must return a chunk with the same start and length."""

        def producer(upstream: FrameStream, chunk_size: int) -> Iterator[Chunk]:
            fn = make_fn()
            for chunk in upstream.chunks(chunk_size):
                out = fn(chunk)
                if out.start != chunk.start or len(out) != len(chunk):
                    raise RuntimeError(f"stage '{name}' changed the frame count of a chunk")
                yield out

        return self.derive(name, params, producer, info, frames_unchanged)

    def with_info(self, **changes: Any) -> "FrameStream":
        """Same frames, different metadata (fingerprint includes the change)."""
        info = self.info.with_(**changes)
        params = {k: v for k, v in changes.items()}
        out = self.derive("with_info", params, lambda up, n: up.chunks(n), info)
        if "fps" not in changes and "frame_count" not in changes:
            out.frames_source = self.frames_source
        return out

    def rechunked(self, chunk_size: int) -> "FrameStream":
        return FrameStream(
            self.info.with_(chunk_size=int(chunk_size)),
            lambda up, n: up.chunks(n),
            self.fingerprint,
            upstream=self,
            label="rechunk",
        )

    def __repr__(self) -> str:  # shown in ComfyUI's debug output
        i = self.info
        return (
            f"<FrameStream {self.label or 'source'} {i.width}x{i.height} {i.frame_count} frames "
            f"@ {i.fps} fps fp={self.fingerprint}>"
        )


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


def from_tensor(
    frames: torch.Tensor,
    fps: Fraction | float | int = 24,
    mask: Optional[torch.Tensor] = None,
    audio: Optional[AudioRef] = None,
    source: str = "tensor",
) -> FrameStream:
    """A stream over frames already in memory (ComfyUI IMAGE interop, tests)."""
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [n,H,W,3] RGB, got {tuple(frames.shape)}")
    frames = frames.float().cpu()
    if mask is not None:
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        mask = mask.float().cpu()
        if mask.shape[0] == 1 and frames.shape[0] > 1:
            mask = mask.expand(frames.shape[0], -1, -1)
        if tuple(mask.shape) != tuple(frames.shape[:3]):
            raise ValueError(
                f"mask {tuple(mask.shape)} does not match frames {tuple(frames.shape[:3])}"
            )
    n, h, w, _ = frames.shape
    info = StreamInfo(
        fps=Fraction(fps).limit_denominator(1_000_000),
        frame_count=n,
        width=w,
        height=h,
        source=source,
        has_mask=mask is not None,
        audio=audio,
    )

    def producer(_self: FrameStream, size: int) -> Iterator[Chunk]:
        for s in range(0, n, size):
            yield Chunk(s, frames[s : s + size], None if mask is None else mask[s : s + size])

    fp = fingerprint_of("tensor", frames, mask, str(info.fps))
    return FrameStream(info, producer, fp, label="tensor")
