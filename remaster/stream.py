"""The frame stream: the one frame-batch type every Remaster stage shares.

A :class:`FrameStream` is a lazy, re-iterable source of :class:`Chunk` objects. Each chunk holds
``frames`` ``[n, H, W, 3]`` float32 in 0..1 (ComfyUI's IMAGE convention) and an optional ``mask``
``[n, H, W]`` float32 in 0..1 (1 = foreground). Nothing is decoded or computed until a consumer
iterates; each iteration starts a fresh pass, so stage state never leaks between passes and a
stream can be previewed, then saved, then read again for a comparison video.

Memory is bounded by the chunk size (and by the window a stage declares), never by video length.

A stage is written as a *producer*: ``producer(upstream, chunk_size) -> Iterator[Chunk]``. It may
keep state across chunks (previous frame, recurrent state, running statistics) and look ahead
within a bounded window, but it iterates ``upstream`` exactly once: a second pass would re-run
every model above it. A stage declares its temporal context with :class:`Temporal` (look-behind,
look-ahead, recurrent warm-up, whole shot); the stream uses it to render any frame range on its
own (:meth:`FrameStream.chunks` with ``start``/``stop``, :meth:`FrameStream.range`). Centred
windows and per-shot statistics served in one pass live in :mod:`remaster.temporal`
(:meth:`FrameStream.window`, :meth:`FrameStream.lookahead`). For a frame-wise function use
:meth:`FrameStream.map`.

This module imports no ComfyUI module.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Callable, Iterator, Optional

import torch

from .streamtypes import (  # noqa: F401  (re-exported: the stream's data types live there)
    FRAMEWISE,
    AudioRef,
    Chunk,
    StreamInfo,
    Temporal,
    default_chunk_size,
    RangeView,
    audio_range,
    fingerprint_of,
    iter_frames,
    rebatch,
    source_span,
)

__all__ = [
    "AudioRef",
    "StreamInfo",
    "Chunk",
    "FrameStream",
    "Temporal",
    "FRAMEWISE",
    "default_chunk_size",
    "source_span",
    "fingerprint_of",
    "from_tensor",
]


Producer = Callable[["FrameStream", int], Iterator[Chunk]]


class FrameStream:
    """A lazy, re-iterable stream of chunks with metadata and a chain fingerprint."""

    def __init__(
        self,
        info: StreamInfo,
        producer: Producer,
        fingerprint: str,
        upstream: Optional["FrameStream"] = None,
        label: str = "",
        temporal: Optional[Temporal] = None,
        seek: Optional[Callable[[int, int, int], Iterator[Chunk]]] = None,
        replayable: Optional[bool] = None,
    ) -> None:
        self.info = info
        self._producer = producer
        self.fingerprint = fingerprint
        self.upstream = upstream
        self.label = label
        # sources render any range themselves (``seek(chunk_size, start, stop)``) or from frame 0
        self.temporal = temporal if temporal is not None or upstream is not None else FRAMEWISE
        self._seek = seek
        # the stream whose frames (not masks) this one passes on unchanged: frame analyses such
        # as scene cuts are done once there and shared by every mask-only stage after it
        self.frames_source: "FrameStream" = self
        # the nearest upstream point with the same timeline (same frame indices, same shots):
        # scene cuts are found there, once per chain (usually on the decoder's output)
        self.cuts_source: "FrameStream" = self
        # a stage that retimes the stream may know its cuts from its input's: () -> list[int]
        self.cut_provider: Optional[Callable[[], list]] = None
        # True when iterating again costs only decoding (a source, metadata changes): analyses
        # may read it a second time instead of keeping frames
        self.replayable = (upstream is None) if replayable is None else bool(replayable)
        # the ComfyUI node that built this stage: its progress bar follows this stage's work
        self.node_id: Optional[str] = _host().executing_node_id()
        self._keep = self._keeping = False

    # ---- iteration ---------------------------------------------------------------------------
    @property
    def chunk_size(self) -> int:
        return self.info.chunk_size or default_chunk_size(self.info.width, self.info.height)

    @property
    def span(self) -> tuple:
        """The frames a pass over this object covers (a whole stream: all of them)."""
        return 0, self.info.frame_count

    def chunks(self, chunk_size: Optional[int] = None, start: int = 0,
               stop: Optional[int] = None) -> Iterator[Chunk]:
        """Start a fresh pass and yield chunks of at most ``chunk_size`` frames, covering frames
        ``start .. stop`` (default: all). Chunk ``start`` values are indices in this stream.

        A range pass asks each stage upstream only for the frames its :class:`Temporal` declares
        (window, warm-up, shot); it equals the slice of a full pass (see :class:`Temporal`)."""
        size = int(chunk_size or self.chunk_size)
        n = self.info.frame_count
        a = max(0, int(start))
        b = n if stop is None else max(a, min(int(stop), n))
        full = a == 0 and b >= n
        if full and self._keep and not self._keeping:
            yield from self._kept(size)
            return
        if self.upstream is None:
            if full or self._seek is None:
                gen = self._producer(self, size)
            else:
                gen = self._seek(size, a, b)
        elif full:
            gen = self._producer(self.upstream, size)
        else:
            if a >= b:
                return
            lo, hi = self.input_span(a, b)
            gen = self._producer(RangeView(self.upstream, lo, hi), size)
        yield from self._drive(gen, a, b, size, full)

    def _drive(self, gen: Iterator[Chunk], a: int, b: int, size: int, full: bool) -> Iterator[Chunk]:
        """Run a producer: node context for progress, interrupt checks, order checks, trimming."""
        host = _host()
        bar = host.StageBar(self.node_id, b - a) if self.node_id is not None else None
        expected = None
        try:
            while True:
                prev = host.enter_stage(self.node_id)
                try:
                    chunk = next(gen, None)
                finally:
                    host.leave_stage(prev)
                if chunk is None:
                    break
                host.check_interrupt()
                if len(chunk) == 0:
                    continue
                if expected is None:
                    expected = 0 if full else min(chunk.start, a)
                if chunk.start != expected:
                    raise RuntimeError(
                        f"stage '{self.label}' produced a chunk starting at frame {chunk.start}, "
                        f"expected {expected}"
                    )
                expected = chunk.stop
                if not full:
                    if chunk.stop <= a:
                        continue
                    if chunk.start >= b:
                        break
                    if chunk.start < a or chunk.stop > b:
                        i, j = max(a, chunk.start) - chunk.start, min(b, chunk.stop) - chunk.start
                        chunk = Chunk(chunk.start + i, chunk.frames[i:j], None if chunk.mask is None else chunk.mask[i:j])
                if bar is not None:
                    bar.update(len(chunk))
                yield chunk
                if not full and chunk.stop >= b:
                    break
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()

    def keep(self) -> "FrameStream":
        """Several consumers will pull this stream: render it once, on its first full pass, to the
        lossless cache in the temp folder (:mod:`remaster.media.cache`, error < 1e-4) and serve
        every full pass from there, so nothing upstream runs again."""
        self._keep = True
        return self

    def _kept(self, size: int) -> Iterator[Chunk]:
        from .media import cache

        self._keeping = True
        try:
            stored = cache.cached(self, label=f"{self.label}: kept for several consumers")
        finally:
            self._keeping = False
        yield from stored.chunks(size)

    def input_span(self, start: int, stop: int) -> tuple:
        """The upstream frames this stage reads to produce its frames ``start .. stop``."""
        up = self.upstream
        n_up = up.info.frame_count if up is not None else self.info.frame_count
        t = self.temporal
        if up is None:
            return start, stop
        if t is None:
            return 0, n_up
        if t.span is not None:
            lo, hi = t.span(start, stop)
            return max(0, int(lo)), min(n_up, int(hi))
        if self.info.frame_count != n_up:
            return 0, n_up
        lo, hi = start - t.behind, stop + t.ahead
        if t.whole_shot or (t.cut_aware and (t.behind or t.ahead)):
            from .analysis import scenes  # the stages package builds on this module

            cuts = scenes.scene_cuts(up)
            s0, _ = scenes.shot_bounds(cuts, start, n_up)
            _, e1 = scenes.shot_bounds(cuts, max(start, stop - 1), n_up)
            if t.whole_shot:
                lo, hi = min(lo, s0), max(hi, e1)
            if t.cut_aware:
                lo, hi = max(lo, s0), min(hi, e1)
        return max(0, lo), min(n_up, hi)

    def __iter__(self) -> Iterator[Chunk]:
        return self.chunks()

    def frames(self, chunk_size: Optional[int] = None) -> Iterator[tuple]:
        """Yield ``(index, frame[H,W,3], mask[H,W] or None)`` one at a time."""
        return iter_frames(self.chunks(chunk_size))

    def read(self, start: int = 0, stop: Optional[int] = None, max_frames: int = 10_000) -> Chunk:
        """Collect frames ``start..stop`` into one chunk (for previews and short clips). Only the
        frames the range needs are computed (see :meth:`chunks`)."""
        stop = self.info.frame_count if stop is None else min(stop, self.info.frame_count)
        if stop - start > max_frames:
            raise ValueError(
                f"asked for {stop - start} frames in memory; the cap is {max_frames}. "
                "Trim the range or raise the cap."
            )
        frames, masks = [], []
        if stop > start:
            for chunk in self.chunks(None, start, stop):
                frames.append(chunk.frames)
                if chunk.mask is not None:
                    masks.append(chunk.mask)
        if not frames:
            h, w = self.info.height, self.info.width
            return Chunk(start, torch.zeros(0, h, w, 3), None)
        mask = torch.cat(masks) if masks and len(masks) == len(frames) else None
        return Chunk(start, torch.cat(frames), mask)

    def range(self, start: int, stop: int) -> "FrameStream":
        """Frames ``start .. stop`` as a stream of their own (indices from 0, audio and scene cuts
        shifted with them) that renders only what the range needs: for previews, batch segments
        and scale-out. Equals the slice of the full render (exactly for frame-wise and windowed
        stages, within the declared warm-up for recurrent ones)."""
        n = self.info.frame_count
        a, b = max(0, int(start)), min(n, int(stop))
        if b <= a:
            raise ValueError(f"range {start}..{stop} is empty for a stream of {n} frames")
        fps = self.info.fps
        cuts = None
        if self.info.scene_cuts is not None:
            cuts = tuple(c - a for c in self.info.scene_cuts if a < c < b)
        audio = audio_range(self.info.audio, a / fps if fps else 0.0, (b - a) / fps if fps else None)
        info = self.info.with_(frame_count=b - a, scene_cuts=cuts, audio=audio)

        def producer(up, size: int) -> Iterator[Chunk]:
            lo, hi = up.span if isinstance(up, RangeView) else (a, b)
            for ch in up._stream.chunks(size, lo, hi) if isinstance(up, RangeView) else self.chunks(size, a, b):
                yield ch.with_(start=ch.start - a)

        out = FrameStream(info, producer, fingerprint_of(self.fingerprint, "range", a, b), upstream=self,
                          label=f"range {a}..{b}", temporal=Temporal(span=lambda x, y: (x + a, y + a)))
        out.node_id = self.node_id
        return out

    # ---- building chains ---------------------------------------------------------------------
    def derive(
        self,
        name: str,
        params: dict,
        producer: Producer,
        info: Optional[StreamInfo] = None,
        frames_unchanged: bool = False,
        temporal: Optional[Temporal] = None,
        cheap: bool = False,
    ) -> "FrameStream":
        """A new stream whose chunks come from ``producer(self, chunk_size)``.
        ``frames_unchanged``: the stage changes only masks/metadata, never frames or their count.
        ``temporal``: the context the stage needs (None: undeclared, ranges render from frame 0).
        ``cheap``: costs next to nothing beside decoding (a drawn mask, a metadata change), so a
        stream of it over a decoder may be read again (``replayable``)."""
        fp = fingerprint_of(self.fingerprint, name, params)
        info = info or self.info
        out = FrameStream(info, producer, fp, upstream=self, label=name, temporal=temporal,
                          replayable=cheap and self.replayable)
        if frames_unchanged:
            out.frames_source = self.frames_source
        if info.frame_count == self.info.frame_count and info.fps == self.info.fps:
            out.cuts_source = self.cuts_source
        return out

    def map(
        self,
        name: str,
        params: dict,
        make_fn: Callable[[], Callable[[Chunk], Chunk]],
        info: Optional[StreamInfo] = None,
        frames_unchanged: bool = False,
        temporal: Optional[Temporal] = FRAMEWISE,
        cheap: bool = False,
    ) -> "FrameStream":
        """A new stream applying ``make_fn()`` (a fresh callable per pass) to every chunk. The
        callable must return a chunk with the same start and length. It is taken to be frame-wise;
        a callable that carries state from frame to frame must declare it (``temporal=Temporal(
        behind=warm_up, recurrent=True)``) so that range renders warm it up."""

        def producer(upstream: FrameStream, chunk_size: int) -> Iterator[Chunk]:
            fn = make_fn()
            for chunk in upstream.chunks(chunk_size):
                out = fn(chunk)
                if out.start != chunk.start or len(out) != len(chunk):
                    raise RuntimeError(f"stage '{name}' changed the frame count of a chunk")
                yield out

        return self.derive(name, params, producer, info, frames_unchanged, temporal, cheap)

    def window(self, name: str, params: dict, make_fn: Callable, radius: int, **kw: Any) -> "FrameStream":
        """A centred window of ``2 * radius + 1`` frames per output frame, in one pass (see
        :func:`remaster.temporal.window`)."""
        from . import temporal

        return temporal.window(self, name, params, make_fn, radius, **kw)

    def lookahead(self, name: str, params: dict, make_stage: Callable, ahead: int, **kw: Any) -> "FrameStream":
        """Frames held until a stage's look-ahead statistics are final, in one pass (see
        :func:`remaster.temporal.lookahead`)."""
        from . import temporal

        return temporal.lookahead(self, name, params, make_stage, ahead, **kw)

    def with_info(self, **changes: Any) -> "FrameStream":
        """Same frames, different metadata (fingerprint includes the change)."""
        info = self.info.with_(**changes)
        params = {k: v for k, v in changes.items()}
        retimed = "fps" in changes or "frame_count" in changes
        out = self.derive("with_info", params, lambda up, n: up.chunks(n), info,
                          temporal=None if retimed else FRAMEWISE, cheap=True)
        if not retimed:
            out.frames_source = self.frames_source
        return out

    def rechunked(self, chunk_size: int) -> "FrameStream":
        out = FrameStream(
            self.info.with_(chunk_size=int(chunk_size)),
            lambda up, n: up.chunks(n),
            self.fingerprint,
            upstream=self,
            label="rechunk",
            temporal=FRAMEWISE,
            replayable=self.replayable,
        )
        out.frames_source, out.cuts_source = self.frames_source, self.cuts_source
        return out

    def __repr__(self) -> str:  # shown in ComfyUI's debug output
        i = self.info
        return (
            f"<FrameStream {self.label or 'source'} {i.width}x{i.height} {i.frame_count} frames "
            f"@ {i.fps} fps fp={self.fingerprint}>"
        )


def _host():
    from . import host  # host imports nothing from here; imported late to keep this module light

    return host


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

    def seek(size: int, a: int, b: int) -> Iterator[Chunk]:
        for s in range(a, b, size):
            e = min(b, s + size)
            yield Chunk(s, frames[s:e], None if mask is None else mask[s:e])

    fp = fingerprint_of("tensor", frames, mask, str(info.fps))
    return FrameStream(info, producer, fp, label="tensor", seek=seek)
