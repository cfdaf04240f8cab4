"""A bounded, centred, scene-cut-aware window over a stream, fed chunk by chunk, in one pass.

The film and tape restoration stages look at frames ``i-r .. i+r`` of the same shot to repair
frame ``i``. :class:`ShotWindow` buffers at most ``2r+1`` frames: ``push(chunk)`` returns the
windows that became complete, ``finish()`` the rest at the end of the stream. Scene cuts come
from the stream's metadata when a Scene Cuts node attached them, otherwise they are detected
incrementally while frames arrive (:class:`remaster.analysis.scenes.CutDetector`), so the upstream
is iterated exactly once. ``prepare(index, frame, first_of_shot)`` runs once per frame as it
arrives (a grey thumbnail for optical flow, a motion estimate against the previous frame...) and
its result travels with the frame as ``aux``.

:func:`windowed` turns a per-window function into a stream stage (one single-pass producer).
"""
from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import host
from ..stream import Chunk, FrameStream
from .scenes import CutDetector

__all__ = ["Companion", "Item", "ShotWindow", "Window", "check_companion", "windowed"]


@dataclass
class Item:
    index: int
    frame: torch.Tensor  # [H,W,3]
    mask: torch.Tensor | None
    aux: Any = None


@dataclass
class Window:
    """Frame ``index`` with its same-shot neighbours: ``items`` in time order, ``centre`` its position."""

    items: list
    centre: int
    first_of_shot: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def item(self) -> Item:
        return self.items[self.centre]

    @property
    def index(self) -> int:
        return self.item.index

    def neighbours(self, radius: int | None = None) -> list:
        """Other items within ``radius`` frames, nearest first (previous before next at equal distance)."""
        out = [(abs(k - self.centre), k < self.centre, it) for k, it in enumerate(self.items) if k != self.centre]
        if radius is not None:
            out = [o for o in out if o[0] <= radius]
        out.sort(key=lambda o: (o[0], not o[1]))
        return [o[2] for o in out]


class ShotWindow:
    def __init__(self, radius: int, cuts: list | None = None,
                 prepare: Callable[[int, torch.Tensor, bool], Any] | None = None) -> None:
        if radius < 0:
            raise ValueError(f"window radius must be ≥ 0, got {radius}")
        self.r = int(radius)
        self.fixed_cuts = cuts is not None
        self.cuts: list = sorted(int(c) for c in cuts) if cuts is not None else []
        self.detector = None if self.fixed_cuts else CutDetector()
        self.prepare = prepare
        self.buf: deque = deque()
        self.next = 0  # next index to emit
        self.seen = 0  # frames pushed

    def _shot(self, index: int) -> int:
        return bisect.bisect_right(self.cuts, index)

    def _window(self, index: int) -> Window:
        shot = self._shot(index)
        items = [it for it in self.buf if abs(it.index - index) <= self.r and self._shot(it.index) == shot]
        centre = next(k for k, it in enumerate(items) if it.index == index)
        first = index == 0 or (shot > 0 and self.cuts[shot - 1] == index)
        return Window(items, centre, first)

    def _drop_old(self) -> None:
        while self.buf and self.buf[0].index < self.next - self.r:
            self.buf.popleft()

    def push(self, chunk: Chunk) -> list:
        if self.detector is not None:
            small = chunk.frames
            if small.shape[1] > 144:  # the detector scores thumbnails; a smaller copy is cheaper
                small = torch.nn.functional.interpolate(small.permute(0, 3, 1, 2), size=(90, 160),
                                                        mode="area").permute(0, 2, 3, 1)
            self.detector.push(small)
            self.cuts = list(self.detector.cuts)
        out = []
        for k in range(len(chunk)):
            idx = chunk.start + k
            frame = chunk.frames[k]
            first = idx == 0 or idx in self.cuts
            aux = self.prepare(idx, frame, first) if self.prepare is not None else None
            self.buf.append(Item(idx, frame, None if chunk.mask is None else chunk.mask[k], aux))
            self.seen = idx + 1
            while self.next + self.r < self.seen:
                out.append(self._window(self.next))
                self.next += 1
                self._drop_old()
        return out

    def finish(self) -> list:
        out = []
        while self.next < self.seen:
            out.append(self._window(self.next))
            self.next += 1
            self._drop_old()
        return out


def windowed(stream: FrameStream, name: str, params: dict, radius: int,
             make: Callable[[FrameStream, int], tuple], info=None) -> FrameStream:
    """A stage over centred windows. ``make(upstream)`` is called once per pass and returns
    ``(prepare, process)`` (``make(upstream, chunk_size)``): ``prepare`` as for :class:`ShotWindow` (or None), ``process(window)``
    returning ``(frame [H,W,3], mask [H,W] or None)`` for the window's centre frame."""

    def producer(upstream: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        prepare, process = make(upstream, chunk_size)
        cuts = upstream.info.scene_cuts
        win = ShotWindow(radius, list(cuts) if cuts is not None else None, prepare)
        pending: list = []

        def flush():
            start = pending[0][0]
            frames = torch.stack([p[1] for p in pending])
            masks = [p[2] for p in pending]
            mask = torch.stack(masks) if all(m is not None for m in masks) else None
            pending.clear()
            return Chunk(start, frames, mask)

        for ch in upstream.chunks(chunk_size):
            host.check_interrupt()
            for w in win.push(ch):
                f, m = process(w)
                pending.append((w.index, f, m))
                if len(pending) >= chunk_size:
                    yield flush()
        for w in win.finish():
            f, m = process(w)
            pending.append((w.index, f, m))
            if len(pending) >= chunk_size:
                yield flush()
        if pending:
            yield flush()

    return stream.derive(name, dict(params, radius=int(radius)), producer, info)


def check_companion(stream: FrameStream, other: FrameStream | None, what: str) -> None:
    """A second stream read in step with ``stream`` (a mask, a reference clip) must have the same
    size and frame count; raise a one-line error naming the input before any work is done."""
    if other is None:
        return
    a, b = stream.info, other.info
    if (a.width, a.height) != (b.width, b.height):
        raise ValueError(f"{what} is {b.width}x{b.height} but the frames are {a.width}x{a.height}: "
                         f"load or resize it to the same size")
    if a.frame_count != b.frame_count:
        raise ValueError(f"{what} has {b.frame_count} frames but the frames have {a.frame_count}: "
                         f"use the same clip range (start, end, every_nth)")


class Companion:
    """Frames of a second stream handed out in step with the main one (a single pass over it)."""

    def __init__(self, other: FrameStream | None, chunk_size: int) -> None:
        self._it = other.frames(chunk_size) if other is not None else None

    def take(self, index: int):
        if self._it is None:
            return None, None
        i, f, m = next(self._it)
        if i != index:
            raise RuntimeError(f"companion stream out of step: got frame {i}, expected {index}")
        return f, m
