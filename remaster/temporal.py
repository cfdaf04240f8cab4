"""Temporal context served in one pass: centred windows and look-ahead buffers.

A stage that needs neighbouring frames or statistics over time must not iterate its upstream
twice (that re-runs every model above it). The two shapes here cover the temporal stages:

* :func:`window` — output frame ``i`` is a function of input frames ``i - r .. i + r`` of the same
  shot (temporal median, frame averaging). A buffer of ``2r + 1`` frames.
* :func:`lookahead` — a stage measures every chunk as it arrives and holds the frames back until
  the numbers it needs to correct them are final (smoothing over a window of statistics, a
  whole-shot statistic). Held frames beyond a memory budget are spilled, exactly, to files in
  the temp folder, removed at the end of the pass; memory stays bounded by the budget and disk
  by the look-ahead.

Both declare their context (:class:`remaster.stream.Temporal`), so a range of frames renders on
its own and equals the slice of the full render.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections import deque
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from . import host
from .stream import Chunk, FrameStream, Temporal, source_span

__all__ = ["iter_windows", "window", "lookahead", "SpillBuffer", "LookaheadStage"]


def _cuts_for(up: Any, cut_aware: bool) -> list:
    if not cut_aware:
        return []
    from .stages import scenes

    return scenes.scene_cuts(up)


def iter_windows(upstream: Any, chunk_size: int, radius: int, cuts: Optional[list] = None) -> Iterator[tuple]:
    """One pass over ``upstream``: ``(index, frames, masks, centre)`` for every frame, where
    ``frames`` is the list of frames ``index - radius .. index + radius`` that exist and belong to
    the same shot (``cuts``), ``centre`` the position of frame ``index`` in it. Holds at most
    ``2 * radius + 1`` frames."""
    import bisect

    cs = sorted(int(c) for c in (cuts or ()))
    r = int(radius)
    buf: deque = deque()  # (index, frame, mask, shot)
    pending = None

    def emit(idx: int) -> tuple:
        shot = next(b[3] for b in buf if b[0] == idx)
        sel = [b for b in buf if abs(b[0] - idx) <= r and b[3] == shot]
        centre = [b[0] for b in sel].index(idx)
        masks = [b[2] for b in sel]
        return idx, [b[1] for b in sel], None if masks[0] is None else masks, centre

    for chunk in upstream.chunks(chunk_size):
        for i in range(len(chunk)):
            idx = chunk.start + i
            if pending is None:
                pending = idx
            buf.append((idx, chunk.frames[i], None if chunk.mask is None else chunk.mask[i], bisect.bisect_right(cs, idx)))
            while buf and buf[-1][0] - pending >= r:
                yield emit(pending)
                pending += 1
                while buf and buf[0][0] < pending - r:
                    buf.popleft()
    while buf and pending is not None and pending <= buf[-1][0]:
        yield emit(pending)
        pending += 1
        while buf and buf[0][0] < pending - r:
            buf.popleft()


def window(stream: FrameStream, name: str, params: dict, make_fn: Callable[[], Callable], radius: int,
           cut_aware: bool = True, info=None, frames_unchanged: bool = False) -> FrameStream:
    """A stage computing each frame from a centred window: ``make_fn()`` returns (per pass)
    ``fn(index, frames, masks, centre) -> (frame, mask)`` with ``frames`` as in
    :func:`iter_windows`. Chunks of the output follow the pass's chunk size."""
    r = int(radius)

    def producer(up: Any, chunk_size: int) -> Iterator[Chunk]:
        fn = make_fn()
        items: list = []
        for idx, frames, masks, centre in iter_windows(up, chunk_size, r, _cuts_for(up, cut_aware)):
            items.append((idx,) + tuple(fn(idx, frames, masks, centre)))
            if len(items) == chunk_size:
                yield _stack(items)
                items = []
        if items:
            yield _stack(items)

    t = Temporal(behind=r, ahead=r, cut_aware=cut_aware)
    return stream.derive(name, params, producer, info, frames_unchanged, temporal=t)


def _stack(items: list) -> Chunk:
    frames = torch.stack([it[1] for it in items])
    mask = torch.stack([it[2] for it in items]) if items[0][2] is not None else None
    return Chunk(items[0][0], frames, mask)


# ---------------------------------------------------------------------------------------------
# look-ahead
# ---------------------------------------------------------------------------------------------
def _budget_bytes() -> int:
    mb = os.environ.get("REMASTER_LOOKAHEAD_MB")
    if mb:
        return int(float(mb) * 2**20)
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover
        avail = 4 * 2**30
    return int(min(1024 * 2**20, avail // 8))


class SpillBuffer:
    """A FIFO of chunks kept in memory up to ``budget`` bytes; later chunks go, bit-exact, to raw
    files in the temp folder (removed by :meth:`close`)."""

    def __init__(self, budget: Optional[int] = None) -> None:
        self.budget = _budget_bytes() if budget is None else int(budget)
        self.items: deque = deque()
        self.in_memory = 0
        self.spilled = 0  # chunks written to disk in this pass (for tests and benches)
        self._dir = None

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _bytes(ch: Chunk) -> int:
        return ch.frames.numel() * 4 + (ch.mask.numel() * 4 if ch.mask is not None else 0)

    def put(self, ch: Chunk) -> None:
        size = self._bytes(ch)
        if self.items and self.in_memory + size > self.budget:
            if self._dir is None:
                self._dir = host.temp_dir() / "remaster_spill" / uuid.uuid4().hex[:12]
                self._dir.mkdir(parents=True, exist_ok=True)
            base = self._dir / f"{ch.start}"
            ch.frames.float().contiguous().numpy().tofile(f"{base}.f32")
            if ch.mask is not None:
                ch.mask.float().contiguous().numpy().tofile(f"{base}.m32")
            self.items.append(("disk", ch.start, tuple(ch.frames.shape), ch.mask is not None, base))
            self.spilled += 1
        else:
            self.items.append(("mem", ch))
            self.in_memory += size

    def head_start(self) -> Optional[int]:
        if not self.items:
            return None
        it = self.items[0]
        return it[1].start if it[0] == "mem" else it[1]

    def pop(self) -> Chunk:
        it = self.items.popleft()
        if it[0] == "mem":
            self.in_memory -= self._bytes(it[1])
            return it[1]
        _, start, shape, has_mask, base = it
        frames = torch.from_numpy(np.fromfile(f"{base}.f32", dtype=np.float32).reshape(shape))
        mask = torch.from_numpy(np.fromfile(f"{base}.m32", dtype=np.float32).reshape(shape[:3])) if has_mask else None
        for ext in (".f32", ".m32"):
            try:
                os.remove(f"{base}{ext}")
            except FileNotFoundError:
                pass
        return Chunk(start, frames, mask)

    def push_front(self, ch: Chunk) -> None:
        self.items.appendleft(("mem", ch))
        self.in_memory += self._bytes(ch)

    def close(self) -> None:
        self.items.clear()
        self.in_memory = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class LookaheadStage:
    """What :func:`lookahead` drives, one instance per pass (subclass or duck-type it).

    ``push(chunk)`` sees every upstream chunk once, in order; ``ready()`` says up to which frame
    (exclusive) the output can be produced now; ``finish()`` is called at the end of the
    upstream; ``emit(chunk)`` returns the output chunk for held input frames below ``ready()``.
    """

    def push(self, chunk: Chunk) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def ready(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> None:
        pass

    def emit(self, chunk: Chunk) -> Chunk:  # pragma: no cover - interface
        raise NotImplementedError


def lookahead(stream: FrameStream, name: str, params: dict, make_stage: Callable[[Any], LookaheadStage],
              ahead: int, behind: Optional[int] = None, whole_shot: bool = False, cut_aware: bool = True,
              info=None, frames_unchanged: bool = False, budget: Optional[int] = None) -> FrameStream:
    """A stage that holds frames back until its statistics are final: ``make_stage(upstream)``
    (per pass; ``upstream`` tells the pass's span and cuts) returns a :class:`LookaheadStage`.
    ``ahead``/``behind`` (default ``ahead``) are the frames of context one output frame depends
    on; ``whole_shot`` when it depends on its whole shot. Frames beyond ``budget`` bytes (default
    ``REMASTER_LOOKAHEAD_MB`` or 1/8 of free memory, at most 1 GiB) are spilled to temp files."""

    def producer(up: Any, chunk_size: int) -> Iterator[Chunk]:
        st = make_stage(up)
        buf = SpillBuffer(budget)

        def drain(limit: int) -> Iterator[Chunk]:
            while buf.items and buf.head_start() < limit:
                ch = buf.pop()
                if ch.stop > limit:
                    k = limit - ch.start
                    rest = Chunk(limit, ch.frames[k:], None if ch.mask is None else ch.mask[k:])
                    buf.push_front(rest)
                    ch = Chunk(ch.start, ch.frames[:k], None if ch.mask is None else ch.mask[:k])
                out = st.emit(ch)
                if out.start != ch.start or len(out) != len(ch):
                    raise RuntimeError(f"stage '{name}' changed the frame count of a chunk")
                yield out

        try:
            for ch in up.chunks(chunk_size):
                st.push(ch)
                buf.put(ch)
                yield from drain(st.ready())
            st.finish()
            yield from drain(source_span(up)[1] + 1)
        finally:
            buf.close()

    t = Temporal(behind=int(ahead if behind is None else behind), ahead=int(ahead), whole_shot=whole_shot,
                 cut_aware=cut_aware)
    return stream.derive(name, params, producer, info, frames_unchanged, temporal=t)
